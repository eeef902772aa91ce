"""Shared fixtures: real servers for the service tests.

``postgres_url`` starts a throwaway PostgreSQL cluster (or uses
TRAINYARD_TEST_POSTGRES_URL); ``live_api_server`` runs ``trainyard api`` (gunicorn) as a
real process on a fresh SQLite or PostgreSQL database, with tokens for two users and
an administrator, for the ``integration`` tests that need a real process. Most service
tests use tests/service/conftest.py's ``api_server`` instead: the same API in this
process (tests/inprocess.py).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.inprocess import Template

ROOT = Path(__file__).resolve().parents[1]
PG_BIN = Path("/usr/lib/postgresql")


def pytest_configure(config: pytest.Config) -> None:
    # kombu's SQLAlchemy transport (the embedded broker) uses a loader SQLAlchemy 2.1
    # deprecates; gunicorn's log used to swallow it, in this process it is only noise
    config.addinivalue_line("filterwarnings",
                            "ignore:The ``noload`` loader strategy is deprecated:sqlalchemy.exc.SADeprecationWarning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(PG_BIN.glob("*/bin/" + name))
    if not versions:
        pytest.fail(f"PostgreSQL's {name} is not installed (apt-get install postgresql); the service tests "
                    "run against a real PostgreSQL server")
    return str(versions[-1])


def _as_postgres(cmd: list[str]) -> list[str]:
    # the server refuses to run as root; CI runs as root
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _ram_disk() -> str | None:
    """/dev/shm when it has room: the in-process tests copy a template database for each
    test, which takes a third of the time there that it takes on disk; else the default
    temporary folder (a container's /dev/shm is often 64 MiB)."""
    shm = Path("/dev/shm")
    try:
        return str(shm) if shm.is_dir() and shutil.disk_usage(shm).free >= 2 << 30 else None
    except OSError:
        return None


class PostgresCluster:
    """A PostgreSQL cluster of the tests' own in a temporary folder: made by ``init``, and
    stopped and started again at will (the outage and chaos tests stop it on purpose)."""

    def __init__(self, prefix: str = "typg-", ram_disk: bool = False) -> None:
        self.base = Path(tempfile.mkdtemp(prefix=prefix, dir=_ram_disk() if ram_disk else None))
        self.data, self.sock, self.log = self.base / "data", self.base / "sock", self.base / "log"
        self.port = free_port()

    @property
    def url(self) -> str:
        """The superuser's URL of the maintenance database 'postgres'."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str, check: bool = True) -> None:
        subprocess.run(_as_postgres([_pg_tool("pg_ctl"), "-D", str(self.data), *args]), check=check,
                       capture_output=True)

    def init(self) -> PostgresCluster:
        self.sock.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            shutil.chown(self.sock, "postgres")
        subprocess.run(_as_postgres([_pg_tool("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                                     "--no-sync"]), check=True, capture_output=True)
        self.start()
        return self

    def start(self) -> None:
        self._ctl("-w", "-l", str(self.log), "-o",
                  f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-w", "-m", mode, "stop")

    def remove(self) -> None:
        self._ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL server URL (superuser, database 'postgres'): TRAINYARD_TEST_POSTGRES_URL
    if set, else a new cluster in a temporary folder, stopped and removed afterwards."""
    given = os.environ.get("TRAINYARD_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    cluster = PostgresCluster(ram_disk=True).init()
    try:
        yield cluster.url
    finally:
        cluster.remove()


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for one test alone, which it may stop and start."""
    cluster = PostgresCluster("typg-own-").init()
    try:
        yield cluster
    finally:
        cluster.remove()


# The browser tests drive Debian's Chromium through Playwright (no browser download). No
# sandbox as root; no background networking: this machine's network is closed and
# Chromium's own connections would only fail.
CHROMIUM = os.environ.get("TRAINYARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Headless Chromium, one per test module."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (the browser tests drive a real browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server URL for the whole test session."""
    with throwaway_postgres() as url:
        yield url


def fresh_database(kind: str, tmp: Path, postgres_url: str | None) -> str:
    """A new, empty database URL of ``kind`` (sqlite or postgresql)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'trainyard.sqlite'}"
    from sqlalchemy import create_engine, text

    name = "ty_" + uuid.uuid4().hex[:12]
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return postgres_url.rsplit("/", 1)[0] + "/" + name


def trainyard_cmd() -> list[str]:
    exe = shutil.which("trainyard", path=str(Path(sys.executable).parent)) or shutil.which("trainyard")
    return [exe] if exe else [sys.executable, "-m", "trainyard.cli"]


@dataclass
class ApiServer:
    url: str
    database_url: str
    artifact_dir: Path
    env: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def session(self, user: str | None = "alice"):
        import requests

        s = requests.Session()
        if user is not None:
            s.headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return s

    def create_token(self, name: str, admin: bool = False) -> str:
        out = subprocess.run(trainyard_cmd() + ["token", "create", "--name", name] + (["--admin"] if admin else []),
                             env=self.env, capture_output=True, text=True, check=True)
        return out.stdout.strip().splitlines()[-1]


def start_api_server(kind: str, tmp: Path, postgres_url: str | None,
                     extra_env: dict[str, str] | None = None) -> ApiServer:
    import requests

    db_url = fresh_database(kind, tmp, postgres_url)
    port = free_port()
    env = {**os.environ, "TRAINYARD_DATABASE_URL": db_url, "TRAINYARD_ARTIFACT_DIR": str(tmp / "artifacts"),
           "TRAINYARD_BROKER_URL": f"sqla+sqlite:///{tmp / 'broker.sqlite'}", "TRAINYARD_VAR_DIR": str(tmp),
           **(extra_env or {})}
    server = ApiServer(f"http://127.0.0.1:{port}", db_url, tmp / "artifacts", env)
    for user, admin in (("alice", False), ("bob", False), ("root", True)):
        server.tokens[user] = server.create_token(user, admin)
    log = open(tmp / "api.log", "wb")
    server.proc = subprocess.Popen(trainyard_cmd() + ["api", "--port", str(port), "--workers", "2"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the API server exited: {(tmp / 'api.log').read_text()[-2000:]}")
        try:
            if requests.get(server.api + "/health", timeout=1).status_code in (200, 503):
                return server
        except (requests.ConnectionError, requests.Timeout):  # a loaded machine answers late
            time.sleep(0.1)
    stop_api_server(server)  # not left behind holding the test run's pipes
    raise RuntimeError(f"the API server did not start: {(tmp / 'api.log').read_text()[-2000:]}")


def stop_api_server(server: ApiServer) -> None:
    if server.proc is not None and server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.proc.kill()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live_api_server(request, tmp_path_factory) -> Iterator[ApiServer]:
    """``trainyard api`` running on a fresh database of each kind (one per test module).

    A module may set ``API_SERVER_ENV = {...}`` for extra environment variables of its
    server (a small ``TRAINYARD_MAX_UPLOAD_BYTES``, say)."""
    pg = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    server = start_api_server(request.param, tmp_path_factory.mktemp(request.param), pg,
                              getattr(request.module, "API_SERVER_ENV", None))
    yield server
    stop_api_server(server)


# -- migrated databases, copied for each in-process test (see tests/inprocess.py) -----------

@pytest.fixture(scope="session")
def broker_url(tmp_path_factory) -> str:
    """The embedded SQLite broker, one for the session: the API only publishes to it
    (no worker consumes here), and kombu keeps an engine per broker URL for the life of
    the process, so one URL keeps that to one engine."""
    return f"sqla+sqlite:///{tmp_path_factory.mktemp('broker') / 'broker.sqlite'}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Template:
    from tests.inprocess import migrated_template

    return migrated_template("sqlite", tmp_path_factory.mktemp("sqlite-template"), None)


@pytest.fixture(scope="session")
def postgresql_template(tmp_path_factory, postgres_url) -> Iterator[Template]:
    from tests.inprocess import migrated_template

    template = migrated_template("postgresql", tmp_path_factory.mktemp("pg-template"), postgres_url)
    yield template
    template.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_template(request) -> Template:
    """The migrated template of each database kind."""
    return request.getfixturevalue(f"{request.param}_template")
