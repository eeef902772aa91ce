"""The API in this process, for the fast tier: ``create_app`` on a real SQLite or
PostgreSQL database, reached through ``requests`` by a transport adapter that hands
each prepared request to the WSGI app.

Everything above the socket is what a client sees from ``trainyard api``: requests
encodes bodies, multipart uploads, query strings and headers as it would for gunicorn,
and the answer is a ``requests.Response`` whose body streams from the app's iterable,
so ``trainyard.client.Client`` and plain ``requests.Session`` calls run unchanged. What
is left out is gunicorn itself (its request-line limits, connection handling, worker
processes); the ``integration`` tests keep a real server for that.

Each test gets a database copied from a template that was migrated once per session
(a file copy for SQLite, ``CREATE DATABASE ... TEMPLATE`` for PostgreSQL), so every
test starts from the schema the migrations make, with the same three users.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool
from werkzeug.test import EnvironBuilder, run_wsgi_app

from trainyard.client import Client

# .invalid never resolves (RFC 6761): a request that misses the adapter fails instead of
# reaching some real host
BASE_URL = "http://trainyard.invalid"
T = TypeVar("T")
USERS = (("alice", False), ("bob", False), ("root", True))


class _AppBody:
    """The file-like ``raw`` of a response: reads pull chunks from the app's iterable on
    demand, so a streamed download arrives piece by piece as it would over a socket."""

    def __init__(self, app_iter: Iterable[bytes]) -> None:
        self._app_iter = app_iter
        self._chunks = iter(app_iter)
        self._buffer = b""
        self.closed = False

    def read(self, amt: int | None = None, decode_content: bool | None = None, **_: Any) -> bytes:
        while not self.closed and (amt is None or len(self._buffer) < amt):
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                self.close()
        if amt is None:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:amt], self._buffer[amt:]
        return data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            close = getattr(self._app_iter, "close", None)
            if close is not None:
                close()  # WSGI: the server must close the iterable (send_file's open file)


def _body_bytes(body: Any) -> bytes | None:
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")  # what urllib3 2 sends for a str body
    if hasattr(body, "read"):
        return body.read()
    return b"".join(chunk.encode("utf-8") if isinstance(chunk, str) else chunk for chunk in body)


class WSGIAdapter(BaseAdapter):
    """A ``requests`` transport that answers from a WSGI application in this process."""

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        url = urlsplit(request.url)
        body = _body_bytes(request.body)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in ("content-length",
                                                                                   "transfer-encoding")]
        builder = EnvironBuilder(path=url.path + (f"?{url.query}" if url.query else ""),
                                 base_url=f"{url.scheme}://{url.netloc}", method=request.method, headers=headers,
                                 input_stream=io.BytesIO(body) if body is not None else None)
        try:
            environ = builder.get_environ()
        finally:
            builder.close()
        app_iter, status, response_headers = run_wsgi_app(self.app, environ)

        response = requests.Response()
        code, _, reason = status.partition(" ")
        response.status_code, response.reason = int(code), reason
        merged: CaseInsensitiveDict[str] = CaseInsensitiveDict()
        for key, value in response_headers.items():
            # repeated fields are joined, as urllib3 does
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        response.headers = merged
        response.encoding = get_encoding_from_headers(merged)
        response.raw = _AppBody(app_iter)
        response.url = request.url
        response.request = request
        response.connection = self
        return response

    def close(self) -> None:
        pass


# -- databases ---------------------------------------------------------------------------

@dataclass
class Template:
    """A migrated database with the three users, copied for each test."""

    kind: str
    url: str
    tokens: dict[str, str]
    admin_url: str | None = None  # PostgreSQL: the server's maintenance database
    _admin: Engine | None = field(default=None, repr=False)

    @property
    def admin(self) -> Engine:
        if self._admin is None:
            self._admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        return self._admin

    def copy(self, folder: Path) -> str:
        """A new database with the template's schema and rows; its URL."""
        if self.kind == "sqlite":
            target = folder / "trainyard.sqlite"
            shutil.copy(self.url.split("///", 1)[1], target)
            return f"sqlite:///{target}"
        name = "ty_" + uuid.uuid4().hex[:12]
        with self.admin.connect() as conn:
            # PostgreSQL 15's default WAL_LOG strategy copies block by block through the WAL,
            # three times slower for a database this small than copying its files
            strategy = " STRATEGY FILE_COPY" if conn.dialect.server_version_info >= (15,) else ""
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{_db_name(self.url)}"{strategy}'))
        return self.url.rsplit("/", 1)[0] + "/" + name

    def drop(self, url: str) -> None:
        if self.kind == "postgresql":
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{_db_name(url)}" WITH (FORCE)'))

    def close(self) -> None:
        if self.kind == "postgresql":
            self.drop(self.url)
            self.admin.dispose()


def _db_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def migrated_template(kind: str, folder: Path, postgres_url: str | None) -> Template:
    """Run the migrations once into a template database and create the users' tokens."""
    from sqlalchemy.orm import Session

    from service.store.migrate import upgrade
    from service.store.users import create_token

    if kind == "sqlite":
        template = Template(kind, f"sqlite:///{folder / 'template.sqlite'}", {})
    else:
        template = Template(kind, "", {}, admin_url=postgres_url)
        name = "ty_template_" + uuid.uuid4().hex[:8]
        with template.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        template.url = postgres_url.rsplit("/", 1)[0] + "/" + name
    upgrade(template.url)
    # NullPool: PostgreSQL copies a template only while nobody is connected to it
    engine = create_engine(template.url, poolclass=NullPool)
    try:
        with Session(engine) as session:
            for user, admin in USERS:
                template.tokens[user] = create_token(session, user, admin=admin)
    finally:
        engine.dispose()
    return template


# -- the server --------------------------------------------------------------------------

@dataclass
class InProcessApiServer:
    """The attributes tests use of ``tests.conftest.ApiServer`` (``url``, ``api``,
    ``session``, ``tokens``, ``database_url``, ``artifact_dir``), with the app in this
    process. ``client`` gives a ``trainyard.client.Client`` mounted on it."""

    app: Any
    database_url: str
    artifact_dir: Path
    tokens: dict[str, str]
    url: str = BASE_URL

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def mount(self, session: requests.Session) -> requests.Session:
        session.mount(self.url + "/", WSGIAdapter(self.app))
        return session

    def session(self, user: str | None = "alice") -> requests.Session:
        s = self.mount(requests.Session())
        if user is not None:
            s.headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return s

    def client(self, user: str = "alice", token: str | None = None) -> Client:
        """The Python client with ``user``'s token (or ``token``), talking to this app."""
        c = Client(self.url, token or self.tokens[user])
        self.mount(c.session)
        return c

    def serve_cli(self, monkeypatch: Any, user: str = "alice") -> None:
        """Point the ``trainyard`` CLI's client verbs (run with click's CliRunner) at this
        app, with ``user``'s token."""
        from trainyard.cli import remote

        made = remote._client

        def mounted(url: str, token: str) -> Client:
            client = made(url, token)
            self.mount(client.session)
            return client

        monkeypatch.setattr(remote, "_client", mounted)
        monkeypatch.setenv("TRAINYARD_URL", self.url)
        monkeypatch.setenv("TRAINYARD_TOKEN", self.tokens[user])

    def create_token(self, name: str, admin: bool = False) -> str:
        from service.store.users import create_token

        state = self.app.extensions["trainyard"]
        with state.sessions() as session:
            return create_token(session, name, admin=admin)

    def close(self) -> None:
        state = self.app.extensions["trainyard"]
        state.engine.dispose()
        # the enqueuer's Celery app (made on first send) holds broker connections
        celery_app = getattr(state.enqueuer, "_app", None)
        if celery_app is not None:
            celery_app.close()


@contextlib.contextmanager
def inprocess_server(template: Template, folder: Path, broker_url: str, keep_database: bool = False,
                     **settings: Any) -> Iterator[InProcessApiServer]:
    """The app on a fresh copy of ``template``, its artifacts under ``folder``;
    ``settings`` override fields of ``service.shared.settings.Settings``. The copy is dropped
    afterwards unless ``keep_database``."""
    from service.api import create_app
    from service.shared.settings import Settings

    database_url = template.copy(folder)
    settings = {"broker_url": broker_url, **settings}
    app = create_app(Settings(database_url=database_url, artifact_dir=folder / "artifacts", **settings))
    server = InProcessApiServer(app, database_url, folder / "artifacts", dict(template.tokens))
    try:
        yield server
    finally:
        server.close()
        if not keep_database:
            template.drop(database_url)


@contextlib.contextmanager
def seeded_template(base: Template, folder: Path, broker_url: str,
                    seed: Callable[[InProcessApiServer], T]) -> Iterator[tuple[Template, T]]:
    """Run ``seed`` once against a server on a copy of ``base`` and make that database a
    template in turn, so each test of a module gets its own copy of the seeded rows
    without paying for the seeding (training, thousands of metric rows) again. Files the
    seeding writes stay under ``folder``, shared by the tests: they only read them."""
    with inprocess_server(base, folder, broker_url, keep_database=True) as server:
        value = seed(server)
    if base.kind == "sqlite":
        # the app ran in WAL mode: fold the log into the file, which is then all there is to copy
        path = server.database_url.split("///", 1)[1]
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA journal_mode=DELETE")
    template = Template(base.kind, server.database_url, dict(base.tokens), base.admin_url)
    try:
        yield template, value
    finally:
        template.close()


# -- a store without the app (the lifecycle and worker unit tests) ------------------------

@contextlib.contextmanager
def store_sessions(template: Template, folder: Path) -> Iterator[tuple[str, Any]]:
    """(URL, sessionmaker) of a fresh copy of ``template``, dropped afterwards."""
    from service.store.db import make_engine, make_sessionmaker

    url = template.copy(folder)
    engine = make_engine(url)
    try:
        yield url, make_sessionmaker(engine)
    finally:
        engine.dispose()
        template.drop(url)


def queued_job(sessions: Any, max_restarts: int = 2, spec: dict[str, Any] | None = None) -> int:
    """A queued job of alice's, as the API would have stored it; its id."""
    from sqlalchemy import select

    from service.store.models import Job, User, utcnow
    from service.store.status import JobStatus

    with sessions() as s:
        owner = s.scalar(select(User.id).where(User.name == "alice"))
        job = Job(owner_id=owner, spec=spec or {"model": {"layers": [{"units": 2}]}, "data": {"dataset": "xor"}},
                  status=JobStatus.QUEUED, max_restarts=max_restarts, created_at=utcnow())
        s.add(job)
        s.commit()
        return job.id
