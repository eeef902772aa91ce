"""The job spec validator: every problem at once, each with its JSON path."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nncore.datasets import DATASET_NAMES
from nncore.spec import DEFAULT_LIMITS, SpecError, load_spec, parse_spec_text, validate_spec

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.json"))

MINIMAL = {"model": {"layers": [{"units": 10, "activation": "softmax"}]}, "loss": "categorical_cross_entropy",
           "data": {"dataset": "digits"}}


def problems(doc, **kw):
    with pytest.raises(SpecError) as info:
        validate_spec(doc, **kw)
    return {p.path: p.message for p in info.value.problems}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_spec_is_valid(path):
    spec = load_spec(path)
    assert validate_spec(spec) == spec  # normalising twice changes nothing


def test_defaults_are_filled_in():
    spec = validate_spec(MINIMAL)
    assert spec["batch_size"] == 32 and spec["epochs"] == 10 and spec["seed"] == 0
    assert spec["optimizer"]["name"] == "sgd" and spec["optimizer"]["lr"] == 0.01
    assert spec["model"]["layers"][0]["activation"] == {"name": "softmax"}
    assert spec["data"]["validation_split"] == 0.2 and spec["data"]["shuffle"] is True
    assert spec["distributed"] == {"world_size": 1} and spec["gradient"] == "backprop"
    assert validate_spec({**MINIMAL, "batch_size": "full"})["batch_size"] is None


def test_every_problem_is_reported_at_once_with_its_path():
    doc = {"model": {"layers": [{"units": 0, "activation": "relux"},
                                {"units": 3, "activation": {"name": "prelu", "alpha": "x"}}]},
           "loss": "mse2", "optimizer": {"name": "sgd", "lr": -1}, "data": {"dataset": "digits"},
           "epochs": "many", "bogus": 1}
    found = problems(doc)
    assert set(found) == {"model.layers[0].units", "model.layers[0].activation", "model.layers[1].activation.alpha",
                          "loss", "optimizer.lr", "epochs", "bogus"}
    assert "relu" in found["model.layers[0].activation"]  # lists the known names
    assert "'relux'" in found["model.layers[0].activation"]
    assert "got -1" in found["optimizer.lr"]
    assert "must be an integer" in found["epochs"]


def test_json_pointer_of_a_problem():
    with pytest.raises(SpecError) as info:
        validate_spec({**MINIMAL, "model": {"layers": [{"units": 2}, {"units": -1}]}})
    assert info.value.problems[0].pointer == "/model/layers/1/units"


def test_unknown_dataset_lists_the_known_ones():
    found = problems({**MINIMAL, "data": {"dataset": "mnist"}}, dataset_names=DATASET_NAMES)
    assert "digits" in found["data.dataset"] and "'mnist'" in found["data.dataset"]


def _sized(units: int, epochs: int = 10) -> dict:
    return {**MINIMAL, "model": {"input_dim": 64, "layers": [{"units": units, "activation": "relu"},
                                                             {"units": 10, "activation": "softmax"}]},
            "epochs": epochs}


def test_limits_refuse_absurd_sizes():
    # the service documents these (its 422 messages quote them): changing one is an API change
    assert (DEFAULT_LIMITS["max_units"], DEFAULT_LIMITS["max_epochs"]) == (16384, 100_000)
    max_units, max_epochs = DEFAULT_LIMITS["max_units"], DEFAULT_LIMITS["max_epochs"]
    for units, epochs in ((max_units - 1, max_epochs - 1), (max_units, max_epochs)):
        spec = validate_spec(_sized(units, epochs))
        assert (spec["model"]["layers"][0]["units"], spec["epochs"]) == (units, epochs)
    assert problems(_sized(max_units + 1, max_epochs + 1)) == {
        "model.layers[0].units": f"must be <= {max_units}, got {max_units + 1}",
        "epochs": f"must be <= {max_epochs}, got {max_epochs + 1}"}
    assert problems(_sized(100_000, 10**9)) == {
        "model.layers[0].units": f"must be <= {max_units}, got 100000",
        "epochs": f"must be <= {max_epochs}, got 1000000000"}


def test_a_tighter_parameter_limit_is_applied_exactly():
    # 64 -> 1000 -> 10 with biases: 64*1000 + 1000 + 1000*10 + 10 weights, far below the default limit
    n_params = 75_010
    assert n_params < DEFAULT_LIMITS["max_params"]
    validate_spec(_sized(1000))
    validate_spec(_sized(1000), limits={"max_params": n_params})
    assert problems(_sized(1000), limits={"max_params": n_params - 1}) == {
        "model": f"has 75,010 parameters; the limit is {n_params - 1:,}"}


def test_cross_field_rules():
    found = problems({**MINIMAL, "data": {"dataset": "digits", "validation_split": 0},
                      "early_stopping": {"monitor": "val_loss"}})
    assert "validation" in found["early_stopping.monitor"]
    found = problems({**MINIMAL, "batch_size": 2, "distributed": {"world_size": 4}})
    assert "4 ranks" in found["distributed.world_size"]
    found = problems({**MINIMAL, "model": {"input_dim": 64, "layers": [{"units": 100}, {"units": 10}]},
                      "gradient": "finite_difference"})
    assert "finite-difference" in found["gradient"]
    found = problems({**MINIMAL, "model": {"layers": [{"units": 4, "dropout": 0.5}]}})
    assert "output layer" in found["model.layers[0].dropout"]


def test_wrong_types_everywhere_are_named():
    found = problems({"model": [], "loss": 3, "data": "digits", "batch_size": 1.5, "seed": -1,
                      "distributed": {"world_size": True}, "checkpoint_every": "x"})
    assert found["model"].startswith("must be an object")
    assert "loss name" in found["loss"]
    assert found["data"].startswith("must be an object")
    for key in ("batch_size", "seed", "distributed.world_size", "checkpoint_every"):
        assert key in found
    assert problems([1, 2]) == {"": "must be an object, got an array"}


def test_invalid_json_text_names_line_and_column(tmp_path):
    with pytest.raises(SpecError, match="line 2, column"):
        parse_spec_text('{"model": 1,\n  oops}')
    missing = tmp_path / "nope.json"
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(missing)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**MINIMAL, "epochs": 0}))
    with pytest.raises(SpecError, match="epochs: must be >= 1"):
        load_spec(bad)
