"""Checkpoint files: atomic, pickle-free, with a recorded sha256."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from nncore.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip_of_arrays_scalars_and_json(tmp_path):
    state = {"params": np.arange(5, dtype=np.float32), "epoch": 3, "lr": 0.5, "done": True,
             "history": [{"loss": 1.5}], "spec": {"model": {"layers": []}}, "nothing": None}
    path = tmp_path / "c.npz"
    digest = save_checkpoint(path, state)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    back = load_checkpoint(path)
    np.testing.assert_array_equal(back["params"], state["params"])
    assert back["params"].dtype == np.float32
    assert back["epoch"] == 3 and back["lr"] == 0.5 and back["done"] is True
    assert back["history"] == [{"loss": 1.5}] and back["spec"] == state["spec"] and back["nothing"] is None


def test_a_failed_write_leaves_no_file_and_no_temporary(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"params": np.zeros(3)})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_checkpoint(path, {"params": np.zeros(3), "bad": object()})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"]


def test_pickled_content_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, format_version=np.asarray(1), params=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        load_checkpoint(path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.npz")
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(2))
    with pytest.raises(ValueError, match="unsupported checkpoint format"):
        load_checkpoint(other)
