"""The parts `trainyard up` runs (the API and a worker) as child processes: their output
forwarded to up's stderr and its last lines kept, a check of whether each really works,
and stopping them together."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

#: lines of a part's output kept to say why it failed
TAIL_LINES = 12


class Part:
    """One child process of `up`, in a session of its own (so a terminal's Ctrl-C reaches
    only up, which stops the parts in order). Its stdout and stderr go through a pipe: a
    thread copies every line to up's stderr and keeps the last few."""

    def __init__(self, name: str, cmd: Sequence[str], env: dict[str, str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(list(cmd), env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._forwarder = threading.Thread(target=self._forward, name=f"{name}-output", daemon=True)
        self._forwarder.start()

    def _forward(self) -> None:
        assert self.proc.stdout is not None
        out = getattr(sys.stderr, "buffer", None)
        for line in iter(self.proc.stdout.readline, b""):
            self._tail.append(line.decode(errors="replace").rstrip())
            try:
                if out is not None:
                    out.write(line)
                    out.flush()
                else:
                    sys.stderr.write(line.decode(errors="replace"))
            except (OSError, ValueError):  # up's stderr is gone; keep draining so the part never blocks
                out = None

    @property
    def exited(self) -> bool:
        return self.proc.poll() is not None

    def exit_text(self) -> str:
        code = self.proc.poll()
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def last_lines(self) -> str:
        """What the part printed last, indented, for an error message."""
        if self.exited:
            # its final words may still be in the pipe
            self._forwarder.join(timeout=2)
        lines = [line for line in self._tail if line.strip()]
        if not lines:
            return f"  (the {self.name} printed nothing)"
        return "\n".join("  | " + line for line in lines)


def stop(parts: Sequence[Part], timeout_s: float = 20.0) -> None:
    """SIGTERM to each part's main process only: gunicorn and Celery then stop their own
    children in order (a signal to the whole group would kill the pool under Celery);
    whatever is left of a group afterwards (a job's MPI ranks, a stuck child) is killed."""
    for part in parts:
        if not part.exited:
            part.proc.terminate()
    deadline = time.monotonic() + timeout_s
    for part in parts:
        try:
            part.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(part.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        part.proc.wait()


class Readiness:
    """Whether the API answers with up's own database and the worker has registered
    itself there. The worker registers once it is connected to the broker, so both
    together mean a submitted job will be trained."""

    def __init__(self, base: str, token: str, worker_pid: int) -> None:
        self.base, self.token, self.worker_pid = base, token, worker_pid
        self.api_ok = self.worker_ok = False
        #: a server that is not ours answers on the API's port
        self.foreign = False
        self.api_problem = f"nothing answers at {base} yet"
        self.worker_problem = "it has not registered itself yet"

    def check(self) -> bool:
        if not self.api_ok and not self.foreign:
            self.api_ok, self.api_problem = self._check_health()
        if self.api_ok and not self.worker_ok:
            self.worker_ok, self.worker_problem = self._check_registered()
        return self.api_ok and self.worker_ok

    def _get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + "/api/v1" + path, headers={"Accept": "application/json"})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=3) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read() or b"null")
            except ValueError:
                body = None
            return exc.code, body

    def _check_health(self) -> tuple[bool, str]:
        try:
            status, body = self._get("/health")
        except (OSError, ValueError) as exc:
            return False, f"nothing answers at {self.base} ({getattr(exc, 'reason', exc)})"
        if status == 200:
            return True, ""
        if isinstance(body, dict) and status == 503:
            down = [f"the {what} is {body[what]}" for what in ("database", "broker")
                    if isinstance(body.get(what), str) and body[what] != "ok"]
            return False, f"its /api/v1/health answers 503: {'; '.join(down) or body}"
        return False, f"its /api/v1/health answers {status}"

    def _check_registered(self) -> tuple[bool, str]:
        try:
            status, body = self._get("/workers", self.token)
        except (OSError, ValueError) as exc:
            return False, f"the API did not answer GET /api/v1/workers ({getattr(exc, 'reason', exc)})"
        if status == 401:
            # a 200 from /health, yet our token is unknown: another server holds the port
            self.api_ok, self.foreign = False, True
            self.api_problem = (f"the server answering at {self.base} does not know the token up just created: "
                                "another server is using that port (choose another with --port)")
            return False, "it cannot be checked while another server holds the API's port"
        if status != 200 or not isinstance(body, dict):
            return False, f"GET /api/v1/workers answered {status}"
        host = socket.gethostname()
        for w in body.get("items", []):
            if w.get("pid") == self.worker_pid and w.get("hostname") == host and w.get("state") == "alive":
                return True, ""
        return False, "it has not registered itself yet: it registers once it is connected to the broker"


def wait_until_up(parts: Sequence[Part], readiness: Readiness, timeout_s: float,
                  stopping: Callable[[], bool]) -> str | None:
    """Poll until every part works (None), a part exits, the deadline passes or up is
    asked to stop; else say which part failed and why, for a person."""
    deadline = time.monotonic() + timeout_s
    while not stopping():
        for part in parts:
            if part.exited:
                return (f"the {part.name} stopped while starting ({part.exit_text()}); the last it printed:\n"
                        f"{part.last_lines()}")
        if readiness.check():
            return None
        if time.monotonic() > deadline:
            # the worker is checked through the API, so an API that fails says nothing of it
            name, problem = (("api", readiness.api_problem) if not readiness.api_ok
                             else ("worker", readiness.worker_problem))
            part = next(p for p in parts if p.name == name)
            return (f"the {name} is not working after {timeout_s:g} s: {problem}; the last it printed:\n"
                    f"{part.last_lines()}")
        time.sleep(0.25)
    return None
