"""Engines and sessions. Nothing is created at import: callers build an engine from a
URL (``make_engine``) and a sessionmaker from it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool


def make_engine(url: str, *, null_pool: bool = False, idle_in_transaction_s: float | None = None,
                **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout so the
    API, workers and CLI can share one file. On PostgreSQL, ``idle_in_transaction_s``
    has the server end a session left idle inside a transaction that long (a worker
    frozen mid-write would otherwise hold its job's row lock, and the job, forever)."""
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30})
    if idle_in_transaction_s is not None and url.startswith("postgresql"):
        options = f"-c idle_in_transaction_session_timeout={int(idle_in_transaction_s * 1000)}"
        kwargs.setdefault("connect_args", {})["options"] = options
    if null_pool:
        kwargs["poolclass"] = NullPool
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            # in WAL mode NORMAL cannot corrupt the database; it only defers the fsync
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database could not be reached or used just now (down,
    restarting, a dropped connection, a pool timeout) rather than a mistake in what was
    asked: worth retrying once it is back."""
    from sqlalchemy import exc as sa

    if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (sa.OperationalError, sa.InterfaceError, sa.TimeoutError))
