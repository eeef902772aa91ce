"""The MPI launcher and its supervision (worker.launch) over a real ``mpiexec``: a rank that
fails, exits early, is killed or hangs ends the whole launch, and no process is left behind."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from worker.launch import descendants, launch, mpiexec_path

# integration too (each test below says so): they start mpiexec and its ranks
pytestmark = pytest.mark.mpi

MISBEHAVE = "tests.worker.mpi_programs.misbehave"


def test_mpiexec_comes_from_the_python_prefix():
    assert mpiexec_path().parent.parent == Path(os.sys.prefix)


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
    result = launch(2, MISBEHAVE, ["raise"], lambda e: None, timeout_s=60)
    assert time.monotonic() - t < 20
    assert not result.ok and not result.timed_out
    assert "rank 1 broke on purpose" in result.error


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["exit3", "exit0"])
def test_a_rank_that_exits_early_ends_every_rank_promptly(mode):
    t = time.monotonic()
    result = launch(2, MISBEHAVE, [mode], lambda e: None, timeout_s=60, grace_s=2)
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

    result = launch(2, MISBEHAVE, ["slow"], on_event, timeout_s=60,
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
    result = launch(2, MISBEHAVE, ["hang"], lambda e: None, timeout_s=3, grace_s=2,
                    on_start=remember)
    assert result.timed_out and "time limit" in result.error
    assert time.monotonic() - t < 20
    assert len(ranks) == 2 and _alive(ranks + procs[0:1]) == []
