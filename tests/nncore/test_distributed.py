"""Data-parallel training over a real ``mpiexec`` (the mpich wheel) with mpi4py: the ranks follow the
single-process trajectory. The ranks are started by the worker's launcher, tested in tests/worker/test_launch.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nncore.checkpoint import load_checkpoint
from nncore.distributed import split_rows
from nncore.job import Job
from worker.launch import launch

# the launching tests are integration too: they start mpiexec and its ranks
pytestmark = pytest.mark.mpi


def test_split_rows_covers_a_batch_exactly_with_shares_differing_by_one():
    for n in range(1, 30):
        for size in range(1, min(n, 7) + 1):
            parts = [split_rows(10, 10 + n, r, size) for r in range(size)]
            assert parts[0][0] == 10 and parts[-1][1] == 10 + n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
            sizes = [hi - lo for lo, hi in parts]
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def _spec(optimizer, dtype="float64", epochs=4):
    # 150 iris samples, 120 for training: batches of 25 leave an uneven last batch of
    # 20, and 25 does not divide by 2 or 3 ranks either
    return {"model": {"dtype": dtype, "layers": [{"units": 7, "activation": {"name": "prelu", "alpha": 0.2}},
                                                 {"units": 5, "activation": "tanh"},
                                                 {"units": 3, "activation": "softmax"}]},
            "loss": "categorical_cross_entropy", "optimizer": optimizer,
            "data": {"dataset": "iris", "validation_split": 0.2}, "batch_size": 25, "epochs": epochs, "seed": 5,
            "checkpoint_every": 2, "retention": {"keep_last": 0}}


def _mpi_train(tmp_path: Path, spec: dict, world_size: int, name: str, resume: str | None = None) -> Path:
    out = tmp_path / name
    out.mkdir()
    (out / "spec.json").write_text(json.dumps(spec))
    events = []
    args = ["--spec", str(out / "spec.json"), "--out", str(out)] + (["--resume", resume] if resume else [])
    result = launch(world_size, "nncore.distributed", args, events.append, timeout_s=120)
    assert result.ok, (result.error, result.stderr_tail)
    summary = events[-1]
    assert summary["event"] == "summary" and summary["status"] == "completed"
    return Path(summary["checkpoint"])


def _local_params(spec: dict, tmp_path: Path, name: str) -> np.ndarray:
    job = Job(spec, out_dir=tmp_path / name)
    job.run()
    return job.net.params.astype(np.float64)


OPTIMIZERS = {"momentum": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
              "adam": {"name": "adam", "lr": 0.01}}


@pytest.mark.integration
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("world_size", [2, 3])
def test_n_ranks_follow_the_single_process_trajectory_in_float64(tmp_path, opt, world_size):
    spec = _spec(OPTIMIZERS[opt])
    ckpt = _mpi_train(tmp_path, spec, world_size, "mpi")
    single = _local_params(spec, tmp_path, "single")
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 4
    assert np.abs(state["params"] - single).max() < 1e-10
    assert not np.allclose(state["params"], Job(spec).net.params)  # it did train


@pytest.mark.integration
def test_n_ranks_follow_the_single_process_trajectory_in_float32(tmp_path):
    spec = _spec(OPTIMIZERS["adam"], dtype="float32")
    ckpt = _mpi_train(tmp_path, spec, 2, "mpi")
    single = _local_params(spec, tmp_path, "single")
    assert np.abs(load_checkpoint(ckpt)["params"] - single).max() < 1e-5


@pytest.mark.integration
def test_resume_across_a_change_of_world_size_continues_the_trajectory(tmp_path):
    spec = _spec(OPTIMIZERS["momentum"], epochs=6)
    straight = _local_params(spec, tmp_path, "single")
    first = _mpi_train(tmp_path, {**spec, "epochs": 2}, 2, "two")  # 2 epochs on 2 ranks
    assert load_checkpoint(first)["epoch"] == 2
    # ... then 2 -> 4 on 3 ranks, and 4 -> 6 on one process
    mid = _mpi_train(tmp_path, {**spec, "epochs": 4}, 3, "three", resume=str(first))
    job = Job(spec, out_dir=tmp_path / "one")
    job.resume(mid)
    job.run()
    assert np.abs(job.net.params - straight).max() < 1e-10


@pytest.mark.integration
def test_a_world_size_larger_than_a_batch_is_refused_with_a_clear_message(tmp_path):
    spec = {**_spec(OPTIMIZERS["momentum"]), "batch_size": "full",
            "data": {"dataset": "xor", "validation_split": 0.0, "stratify": False}}
    spec["model"]["layers"][-1] = {"units": 1, "activation": "sigmoid"}
    spec["loss"] = "binary_cross_entropy"
    (tmp_path / "s.json").write_text(json.dumps(spec))
    events = []
    result = launch(5, "nncore.distributed", ["--spec", str(tmp_path / "s.json")], events.append, timeout_s=60)
    assert not result.ok
    assert "world size 5 is larger than a batch (4 samples)" in result.error


def _bn_spec(epochs=4):
    # batchnorm twice (after a hidden layer and on the inputs) and a layernorm; batches
    # of 25 split 13+12 or 9+8+8, and the last batch of 20 splits 10+10 or 7+7+6
    return {"model": {"dtype": "float64", "layers": [
        {"type": "batchnorm", "momentum": 0.3}, {"units": 7, "activation": "tanh"}, {"type": "batchnorm"},
        {"units": 5, "activation": {"name": "prelu", "alpha": 0.2}}, {"type": "layernorm"},
        {"units": 3, "activation": "softmax"}]},
        "loss": "categorical_cross_entropy", "optimizer": OPTIMIZERS["momentum"],
        "data": {"dataset": "iris", "validation_split": 0.2}, "batch_size": 25, "epochs": epochs, "seed": 5,
        "checkpoint_every": 2, "retention": {"keep_last": 0}}


@pytest.mark.integration
@pytest.mark.parametrize("world_size", [2, 3])
def test_batchnorm_over_n_ranks_is_exactly_batchnorm_over_the_global_batch(tmp_path, world_size):
    spec = _bn_spec()
    state = load_checkpoint(_mpi_train(tmp_path, spec, world_size, "mpi"))
    single = Job(spec, out_dir=tmp_path / "single")
    single.run()
    assert state["epoch"] == 4
    assert np.abs(state["params"] - single.net.params).max() < 1e-10
    # the running statistics too: each rank updates them from the global batch's
    assert np.abs(state["state"] - single.net.state).max() < 1e-10
    assert not np.allclose(state["state"], Job(spec).net.state)  # they did move


@pytest.mark.integration
@pytest.mark.parametrize("world_size", [2, 3])
def test_dropout_and_rrelu_noise_over_n_ranks_is_the_single_process_noise(tmp_path, world_size):
    # each rank cuts its rows out of the global batch's masks and slopes, so the noise
    # (and the trajectory) is one process's, also for the uneven last batch
    spec = _spec(OPTIMIZERS["adam"])
    spec["model"]["layers"] = [{"units": 7, "activation": "rrelu", "dropout": 0.3}, {"type": "dropout", "rate": 0.2},
                               {"units": 5, "activation": "tanh"}, {"units": 3, "activation": "softmax"}]
    state = load_checkpoint(_mpi_train(tmp_path, spec, world_size, "mpi"))
    single = _local_params(spec, tmp_path, "single")
    assert np.abs(state["params"] - single).max() < 1e-10
