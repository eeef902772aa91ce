"""Starting the MPI ranks of a data-parallel job and supervising them: ``mpiexec`` from
the ``mpich`` wheel as a subprocess, its JSON events read line by line, a time limit,
and a sweep that leaves no rank behind.

Here, not in nncore: starting and killing processes is the worker's business (and the
``trainyard train`` command's), while nncore keeps only the numerics each rank runs
(``python -m mpi4py -m nncore.distributed``). Nothing here imports ``mpi4py.MPI``: only
the ranks initialise MPI.
"""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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

