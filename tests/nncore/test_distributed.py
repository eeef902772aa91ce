"""Data-parallel training over a real ``mpiexec`` (the mpich wheel) with mpi4py."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from nncore.checkpoint import load_checkpoint
from nncore.distributed import descendants, launch, mpiexec_path, split_rows
from nncore.job import Job

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


def test_mpiexec_comes_from_the_python_prefix():
    assert mpiexec_path().parent.parent == Path(os.sys.prefix)


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


def _alive(pids) -> list[int]:
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":  # a zombie is dead, only not yet reaped by its parent
            out.append(pid)
    return out


def _rank_pids(mpiexec_pid: int) -> list[int]:
    return [pid for pid in descendants(mpiexec_pid)
            if b"mpi4py" in Path(f"/proc/{pid}/cmdline").read_bytes()]


@pytest.mark.integration
def test_an_exception_in_one_rank_ends_every_rank_promptly():
    t = time.monotonic()
    result = launch(2, "tests.nncore.mpi_programs.misbehave", ["raise"], lambda e: None, timeout_s=60)
    assert time.monotonic() - t < 20
    assert not result.ok and not result.timed_out
    assert "rank 1 broke on purpose" in result.error


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["exit3", "exit0"])
def test_a_rank_that_exits_early_ends_every_rank_promptly(mode):
    t = time.monotonic()
    result = launch(2, "tests.nncore.mpi_programs.misbehave", [mode], lambda e: None, timeout_s=60, grace_s=2)
    assert time.monotonic() - t < 15
    assert not result.ok and not result.timed_out
    assert "exit code 3" in result.error  # sys.exit(0) too: the guard turns it into MPI_Abort


@pytest.mark.integration
def test_killing_one_rank_mid_training_ends_the_launch_with_a_clear_error(tmp_path):
    procs, ranks, killed_at = [], [], []

    def on_event(event):
        if event.get("event") == "tick" and not killed_at:
            ranks.extend(_rank_pids(procs[0].pid))
            assert len(ranks) == 2, ranks
            os.kill(max(ranks), signal.SIGKILL)
            killed_at.append(time.monotonic())

    result = launch(2, "tests.nncore.mpi_programs.misbehave", ["slow"], on_event, timeout_s=60,
                    on_start=procs.append)
    assert killed_at and time.monotonic() - killed_at[0] < 10
    assert not result.ok and not result.timed_out and result.error
    assert _alive(ranks + procs[0:1]) == []  # nothing of the launch is left in the process table


@pytest.mark.integration
def test_a_stuck_launch_is_ended_at_its_time_limit_with_no_rank_left_behind():
    procs, ranks = [], []

    def remember(proc):
        procs.append(proc)
        deadline = time.monotonic() + 10
        while len(ranks) < 2 and time.monotonic() < deadline:
            ranks[:] = _rank_pids(proc.pid)
            time.sleep(0.1)

    t = time.monotonic()
    result = launch(2, "tests.nncore.mpi_programs.misbehave", ["hang"], lambda e: None, timeout_s=3, grace_s=2,
                    on_start=remember)
    assert result.timed_out and "time limit" in result.error
    assert time.monotonic() - t < 20
    assert len(ranks) == 2 and _alive(ranks + procs[0:1]) == []


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
