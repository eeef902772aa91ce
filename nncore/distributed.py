"""Data-parallel training over MPI: the gradient reducer, the rank program, the launcher.

Protocol (DESIGN.md, "Data-parallel training"): N ranks hold identical parameters
(rank 0's are broadcast at the start). Every rank walks the same global batches (the
shuffle of an epoch is a pure function of (seed, epoch)); rank r takes a contiguous
slice of each batch, computes the gradient rows scaled by 1/|global batch|, and one
``Allreduce(IN_PLACE, SUM)`` over the flat gradient buffer (with the batch's loss
total in one extra slot) leaves every rank with exactly the global-batch mean
gradient, also for an uneven last batch. Hence N ranks with global batch B follow
the trajectory of one process with batch B, to float rounding.

``mpi4py.MPI`` is imported only inside a rank (:class:`MPIReducer`); the launcher
runs in the parent and starts ``mpiexec`` from the ``mpich`` wheel as a subprocess.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def split_rows(start: int, stop: int, rank: int, size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share of rows [start, stop) among ``size`` ranks.

    The first (stop - start) % size ranks get one row more, so shares differ by at
    most one and cover the batch exactly.
    """
    n = stop - start
    base, extra = divmod(n, size)
    lo = start + rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class MPIReducer:
    """The Trainer's reducer on MPI.COMM_WORLD (or ``comm``)."""

    def __init__(self, comm: Any = None) -> None:
        from mpi4py import MPI  # only ranks import MPI: the launcher must not initialise it

        self._MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.world_size = self.comm.Get_size()

    def shard(self, start: int, stop: int) -> tuple[int, int]:
        return split_rows(start, stop, self.rank, self.world_size)

    def allreduce_sum(self, buf: np.ndarray) -> None:
        self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)

    def broadcast(self, buf: np.ndarray) -> None:
        self.comm.Bcast(buf, root=0)

    def abort(self, code: int) -> None:
        self.comm.Abort(code)


# -- the rank program -----------------------------------------------------------------

def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def rank_main(argv: Sequence[str] | None = None) -> None:
    """Entry point of each rank: ``python -m mpi4py -m nncore.distributed --spec F ...``.

    Rank 0 prints one JSON event per line on stdout (start, step, epoch, summary);
    a rank that fails prints an ``error`` event and aborts every rank.
    """
    ap = argparse.ArgumentParser(prog="nncore.distributed")
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out")
    ap.add_argument("--resume")
    ap.add_argument("--steps", action="store_true", help="emit a step event per update")
    ap.add_argument("--data-path", help="the file of an uploaded dataset the spec names by id")
    ap.add_argument("--target", help="its target column (name, or index as digits)")
    ap.add_argument("--checkpoint-suffix", default="", help="appended to checkpoint file names (one per attempt)")
    ap.add_argument("--launcher-deletes", action="store_true",
                    help="leave deleting the checkpoints retention drops to the launcher (checkpoint_deleted events)")
    args = ap.parse_args(argv)
    reducer = MPIReducer()
    rank = reducer.rank
    with abort_unless_finished(reducer):
        _run_rank(args, reducer, rank)


def _run_rank(args: argparse.Namespace, reducer: MPIReducer, rank: int) -> None:
    from .callbacks import EventEmitter
    from .job import Job, summarize
    from .spec import SpecError, validate_spec

    try:
        spec = validate_spec(json.loads(Path(args.spec).read_text()))
        emitter = [EventEmitter(_emit, steps=args.steps)] if rank == 0 else []
        target = int(args.target) if args.target and args.target.isdigit() else args.target
        job = Job(spec, out_dir=args.out, callbacks=emitter, reducer=reducer, data_path=args.data_path,
                  data_target=target,
                  checkpoint_hooks=_checkpoint_events(args.checkpoint_suffix, args.launcher_deletes)
                  if rank == 0 else None)
        if args.resume:
            job.resume(args.resume)
        # every rank starts from rank 0's parameters, whatever their own initialisation
        reducer.broadcast(job.net.params)
        if rank == 0:
            _emit(job.describe())
        started = time.monotonic()
        result = job.run()
        if rank == 0:
            _emit(summarize(job, result, time.monotonic() - started))
    except (SpecError, ValueError, FileNotFoundError, KeyError) as exc:
        _emit({"event": "error", "rank": rank, "message": str(exc)})
        reducer.abort(2)


def _checkpoint_events(suffix: str, launcher_deletes: bool) -> dict[str, Any]:
    """Rank 0 tells the launcher about every checkpoint written and dropped; with
    ``launcher_deletes`` it leaves deleting the dropped files to the launcher (which
    unlists a checkpoint before its file goes)."""
    def on_save(trainer: Any, epoch: int, path: Path, digest: str) -> None:
        best = next((cb for cb in trainer.callbacks if hasattr(cb, "last_is_best")), None)
        _emit({"event": "checkpoint", "epoch": epoch, "step": trainer.step, "path": str(path), "sha256": digest,
               "metrics": trainer.history[-1] if trainer.history else {},
               "is_best": bool(best and best.last_is_best)})

    def on_delete(epoch: int, path: Path) -> None:
        if not launcher_deletes:
            path.unlink(missing_ok=True)
        _emit({"event": "checkpoint_deleted", "epoch": epoch, "path": str(path)})

    return {"on_save": on_save, "on_delete": on_delete, "name_suffix": suffix}


@contextlib.contextmanager
def abort_unless_finished(reducer: MPIReducer) -> Iterator[None]:
    """Abort every rank if this one leaves the block early by any route, ``sys.exit(0)``
    included: the others would otherwise wait in a collective (and this rank in
    MPI_Finalize) forever. An exception is printed first, as Python would."""
    finished = False
    try:
        yield
        finished = True
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        raise
    finally:
        if not finished:
            reducer.abort(3)


# -- the launcher (parent side) ---------------------------------------------------------

class LaunchError(RuntimeError):
    """The MPI launch could not start or did not finish cleanly."""


def mpiexec_path() -> Path:
    """``mpiexec`` of the mpich wheel, next to this Python (not whatever is on PATH)."""
    path = Path(sys.prefix) / "bin" / "mpiexec"
    if not path.exists():
        raise LaunchError(f"no mpiexec at {path}: data-parallel training needs the MPI that pip installs; "
                          "run: pip install mpich mpi4py")
    return path


@dataclass
class LaunchResult:
    returncode: int
    timed_out: bool
    error: str | None
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.error is None


def rank_env(blas_threads: int = 1, env: dict[str, str] | None = None) -> dict[str, str]:
    """The ranks' environment: one BLAS thread each by default (N ranks share the cores)."""
    out = dict(os.environ if env is None else env)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        out[var] = str(blas_threads)
    root = str(Path(__file__).resolve().parent.parent)
    out["PYTHONPATH"] = root + (os.pathsep + out["PYTHONPATH"] if out.get("PYTHONPATH") else "")
    out["PYTHONUNBUFFERED"] = "1"
    return out


def launch(world_size: int, module: str, args: Sequence[str], on_event: Callable[[dict[str, Any]], None],
           timeout_s: float | None = None, grace_s: float = 5.0, blas_threads: int = 1,
           on_start: Callable[[subprocess.Popen], None] | None = None) -> LaunchResult:
    """Run ``python -m mpi4py -m MODULE ARGS`` on ``world_size`` ranks and wait.

    JSON lines the ranks print are passed to ``on_event``; other output is kept as
    the tail of stderr. ``-m mpi4py`` makes an exception in any rank call MPI_Abort,
    so one failing rank ends all of them instead of hanging in finalize. After
    ``timeout_s`` the whole process group gets SIGTERM, then SIGKILL after
    ``grace_s``. Ranks and hydra proxies run in sessions of their own, so they are
    tracked by process ancestry and swept when mpiexec is gone: no rank is left behind.
    """
    cmd = [str(mpiexec_path()), "-n", str(world_size), sys.executable, "-m", "mpi4py", "-m", module, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                            env=rank_env(blas_threads), start_new_session=True)
    if on_start is not None:
        on_start(proc)
    tail: collections.deque[str] = collections.deque(maxlen=60)
    errors: list[str] = []
    timed_out = threading.Event()

    def read_stderr() -> None:
        for line in proc.stderr:
            tail.append(line.rstrip("\n"))

    seen: set[int] = set()  # every rank and proxy ever observed, for the final sweep
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            seen.update(descendants(proc.pid))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    timer = None
    if timeout_s is not None:
        timer = threading.Timer(timeout_s, lambda: (timed_out.set(), terminate_group(proc, grace_s, seen)))
        timer.daemon = True
        timer.start()
    try:
        for line in proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                if line:
                    tail.append(line)
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                tail.append(line)
                continue
            if event.get("event") == "error":
                errors.append(f"rank {event.get('rank', '?')}: {event.get('message')}")
            on_event(event)
        proc.wait()
    except BaseException:
        terminate_group(proc, grace_s, seen)
        raise
    finally:
        done.set()
        if timer is not None:
            timer.cancel()
        reader.join(timeout=5)
        # mpiexec is gone: a rank that outlived it (killed proxy, lost signal) must not linger
        _kill({pid for pid in seen if _is_ours(pid)}, signal.SIGKILL)
    error = errors[0] if errors else None
    if timed_out.is_set():
        error = f"the MPI launch ran past its time limit of {timeout_s:g} s and was stopped"
    elif proc.returncode != 0 and error is None:
        error = _failure_reason(proc.returncode, list(tail))
    return LaunchResult(proc.returncode, timed_out.is_set(), error, list(tail))


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux /proc). hydra's proxies and the ranks
    start sessions of their own, so a process-group kill would miss them."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # the command name may contain spaces; the fields after its closing paren are fixed
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def terminate_group(proc: subprocess.Popen, grace_s: float = 5.0, known: set[int] | None = None) -> None:
    """SIGTERM mpiexec and its ranks, then SIGKILL whatever is left after ``grace_s``."""
    pids = set(known or ()) | set(descendants(proc.pid))
    _kill(pids | {proc.pid}, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    pids |= set(descendants(proc.pid)) if proc.poll() is None else set()
    _kill(pids | ({proc.pid} if proc.poll() is None else set()), signal.SIGKILL)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _is_ours(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"mpi4py" in cmd or b"hydra_pmi_proxy" in cmd


def _failure_reason(code: int, tail: list[str]) -> str:
    # the most useful line of a Python traceback is its last one
    exc_lines = [ln for ln in tail if ln and not ln.startswith((" ", "Traceback", "===", "BAD TERMINATION"))
                 and ("Error" in ln or "Exception" in ln or "error" in ln)]
    # hydra's report of a rank killed by a signal: "... EXIT STRING: Killed (signal 9)"
    exits = [ln.split("EXIT STRING:", 1)[1].strip() for ln in tail if "EXIT STRING:" in ln]
    if exc_lines:
        detail = exc_lines[-1]
    elif exits:
        detail = f"a rank was ended: {exits[-1]}"
    else:
        detail = next((ln for ln in reversed(tail) if ln.strip() and "FAQ" not in ln and "typically" not in ln),
                      "no output")
    if code < 0:
        return f"mpiexec was killed by signal {-code}: {detail}"
    return f"a rank failed (mpiexec exit code {code}): {detail}"


if __name__ == "__main__":
    rank_main()
