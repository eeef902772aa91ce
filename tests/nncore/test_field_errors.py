"""Errors that say which field they are about, so callers never parse message text."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from nncore import datasets
from nncore.datasets import DATASET_NAMES, DatasetError, load_dataset, load_file
from nncore.registry import Configurable, FieldError, Registry, check, check_number
from nncore.spec import _Checker


def test_check_number_raises_a_field_error_naming_the_field():
    with pytest.raises(FieldError, match=r"^`lr` must be > 0, got -1$") as info:
        check_number("lr", -1, low=0, low_open=True)
    assert info.value.field == "lr" and isinstance(info.value, ValueError)


def test_check_with_a_field_raises_a_field_error():
    with pytest.raises(FieldError) as info:
        check(False, "`lower` must be <= `upper`", field="lower")
    assert info.value.field == "lower"
    with pytest.raises(ValueError) as plain:
        check(False, "no field")
    assert not isinstance(plain.value, FieldError)


def test_field_errors_survive_pickling():
    err = pickle.loads(pickle.dumps(DatasetError("target", "bad target")))
    assert type(err) is DatasetError and err.field == "target" and str(err) == "bad target"


def test_the_spec_path_comes_from_the_field_not_the_message():
    family: Registry = Registry("widget")

    @family.register
    class Widget(Configurable):
        name = "widget"
        config_keys = ("size",)

        def __init__(self, size: int = 1) -> None:
            if size != 1:
                raise FieldError("size", "a message that names no field")  # no backticks to find
            self.size = size

    c = _Checker()
    assert c.configurable({"name": "widget", "size": 2}, "thing", family) is None
    assert [(p.path, p.message) for p in c.problems] == [("thing.size", "a message that names no field")]


def write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("target, field", [
    ("nope", "target"), (7, "target"), (-9, "target"), (1.5, "target"), ("a", None),
])
def test_file_errors_say_whether_the_target_is_to_blame(tmp_path, target, field):
    p = write(tmp_path / "d.csv", "a,b,label\n1,x,0\n3,4,1\n")
    with pytest.raises(DatasetError) as info:
        load_file(p, target=target)
    assert info.value.field == (field or "file")  # target "a" is fine; the text cell is the file's fault


def test_errors_about_the_file_itself(tmp_path):
    for p in (tmp_path / "missing.csv", write(tmp_path / "e.csv", ""), write(tmp_path / "x.npz", "1,2\n")):
        with pytest.raises(DatasetError) as info:
            load_file(p)
        assert info.value.field == "file"
    with pytest.raises(DatasetError) as info:
        load_file(write(tmp_path / "t.csv", "a,y\n1,u\n2,v\n"), task="regression")
    assert info.value.field == "task"


def test_source_names_the_file_in_messages(tmp_path):
    p = write(tmp_path / ".upload-123.csv", "a,b\nx,1\n")
    with pytest.raises(DatasetError) as info:
        load_file(p, source="flowers.csv")
    assert str(info.value).startswith("CSV file 'flowers.csv': row 2") and str(tmp_path) not in str(info.value)
    np.savez(tmp_path / ".upload-9.npz", X=np.zeros((4, 1)), y=np.array([0, 1, 0, 1]))
    assert load_file(tmp_path / ".upload-9.npz", source="xor.npz").name == "xor"


def test_refused_arguments_name_their_field():
    with pytest.raises(DatasetError) as info:
        load_dataset("iris", n_samples=10)
    assert info.value.field == "n_samples"
    with pytest.raises(FieldError) as info:
        load_dataset("moons", seed=-1)
    assert info.value.field == "seed"


def test_one_registry_of_names():
    assert DATASET_NAMES == sorted(set(DATASET_NAMES))
    assert set(datasets.SYNTHETIC_NAMES) == set(datasets.synthetic.GENERATORS)
    assert set(datasets.REAL_NAMES) == set(datasets.bundled.BUNDLED)
    assert set(datasets.FILE_NAMES) == set(datasets.files.FORMATS.values()) == {"csv", "npz"}
    assert set(DATASET_NAMES) == set(datasets.SYNTHETIC_NAMES) | set(datasets.REAL_NAMES) | set(datasets.FILE_NAMES)


@pytest.mark.parametrize("part, path", [
    ({"model": {"layers": [{"units": 2, "activation": {"name": "rrelu", "lower": 0.9, "upper": 0.1}}]}},
     "model.layers[0].activation.lower"),
    ({"model": {"layers": [{"units": 2, "activation": {"name": "gelu", "approximate": "yes"}}]}},
     "model.layers[0].activation.approximate"),
    ({"optimizer": {"name": "sgd", "lr": 0.1, "nesterov": True}}, "optimizer.nesterov"),
    ({"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": "x"}}, "optimizer.nesterov"),
    ({"schedule": {"name": "cosine", "t_max": 5, "restarts": "x"}}, "schedule.restarts"),
    ({"schedule": {"name": "reduce_on_plateau", "monitor": ""}}, "schedule.monitor"),
    ({"schedule": {"name": "reduce_on_plateau", "mode": "up"}}, "schedule.mode"),
])
def test_a_refused_hyperparameter_is_reported_at_its_own_path(part, path):
    from nncore.spec import SpecError, validate_spec

    spec = {"model": {"layers": [{"units": 2}]}, "loss": "mse", "data": {"dataset": "xor"}, **part}
    with pytest.raises(SpecError) as info:
        validate_spec(spec)
    assert path in [p.path for p in info.value.problems], [(p.path, p.message) for p in info.value.problems]
