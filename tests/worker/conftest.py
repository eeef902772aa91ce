"""A real API server and real ``trainyard worker`` processes sharing one database,
artifact folder and broker (the embedded SQLite broker, or a real Redis server)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ApiServer, free_port, start_api_server, stop_api_server, trainyard_cmd

# short leases so a killed worker's job is recovered within seconds
WORKER_ENV = {"TRAINYARD_LEASE_S": "3"}


class Workers:
    """Start and kill ``trainyard worker`` processes for one server."""

    def __init__(self, server: ApiServer, tmp: Path) -> None:
        self.server, self.tmp = server, tmp
        self.procs: list[subprocess.Popen] = []

    def start(self, concurrency: int = 1) -> subprocess.Popen:
        log = open(self.tmp / f"worker-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(trainyard_cmd() + ["worker", "--concurrency", str(concurrency)],
                                env={**self.server.env, **WORKER_ENV}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL the worker and its pool children: a machine that died."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=15)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    self.kill(proc)


class RedisServer:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server); the worker tests run "
                        "against a real Redis")
        # appendonly: queued messages survive a restart, as in the cluster's compose file
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                                      "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port).ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[ApiServer, Workers]]:
    """API + workers on SQLite with the embedded broker."""
    tmp = tmp_path_factory.mktemp("stack")
    server = start_api_server("sqlite", tmp, None, extra_env=WORKER_ENV)
    workers = Workers(server, tmp)
    yield server, workers
    workers.stop_all()
    stop_api_server(server)


@pytest.fixture(scope="module")
def redis_stack(tmp_path_factory, postgres_url) -> Iterator[tuple[ApiServer, Workers, RedisServer]]:
    """API + workers on PostgreSQL with a real Redis broker."""
    tmp = tmp_path_factory.mktemp("redis-stack")
    redis_server = RedisServer(tmp)
    redis_server.start()
    server = start_api_server("postgresql", tmp, postgres_url,
                              extra_env={**WORKER_ENV, "TRAINYARD_BROKER_URL": redis_server.url})
    workers = Workers(server, tmp)
    yield server, workers, redis_server
    workers.stop_all()
    stop_api_server(server)
    redis_server.stop()
