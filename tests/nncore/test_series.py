"""The series catalog: every figure the trainer logs is in it, and it decides which
way early stopping, plateau schedules and the best checkpoint look."""
from __future__ import annotations

import pytest

from nncore.callbacks import EarlyStopping
from nncore.job import Job
from nncore.schedules import ReduceOnPlateau
from nncore.series import BY_NAME, CATALOG, EPOCH_POSITION, better, monitorable, series_name


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_every_figure_the_trainer_logs_is_a_catalog_series(task):
    data = ({"dataset": "moons", "n_samples": 60, "validation_split": 0.25} if task == "classification"
            else {"dataset": "sine", "n_samples": 60, "validation_split": 0.25})
    spec = {"model": {"layers": [{"units": 4, "activation": "tanh"},
                                 {"units": 2 if task == "classification" else 1,
                                  "activation": "softmax" if task == "classification" else "identity"}]},
            "loss": "categorical_cross_entropy" if task == "classification" else "mse", "data": data, "epochs": 2}
    result = Job(spec).run()
    keys = set(result.history[-1]) - set(EPOCH_POSITION)
    assert keys, result.history
    for key in keys:
        entry = BY_NAME[series_name(key)]
        assert entry.per == "epoch" and entry.key == key


def test_the_catalog_says_which_way_is_better():
    assert [better(k) for k in ("val_loss", "loss", "accuracy", "val_accuracy", "r2", "val_r2", "val_rmse")] == \
        ["min", "min", "max", "max", "max", "max", "min"]
    assert better("something_else") == "min"
    assert EarlyStopping("val_accuracy").mode == "max" and EarlyStopping("val_r2").mode == "max"
    assert ReduceOnPlateau("val_accuracy").mode == "max" and ReduceOnPlateau("val_loss").mode == "min"
    assert "val_accuracy" in monitorable() and "lr" not in monitorable()
    assert len({s.name for s in CATALOG}) == len(CATALOG)
