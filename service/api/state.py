"""Per-app state (engine, sessions, enqueuer, model cache) and the request's database session."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask import current_app, g
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ..shared.queue import Enqueuer
from ..shared.settings import Settings
from ..store.predict import ModelCache
from ..store.quota import Budget

log = logging.getLogger(__name__)


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    enqueuer: Enqueuer
    #: models loaded for predictions, per process
    models: ModelCache = field(default_factory=ModelCache)

    @property
    def budget(self) -> Budget:
        s = self.settings
        return Budget(s.job_memory_bytes, s.job_checkpoint_bytes, s.user_quota_bytes)


def state() -> ServiceState:
    return current_app.extensions["trainyard"]


def db() -> Session:
    """This request's session, opened on first use and closed at teardown."""
    if "db" not in g:
        g.db = state().sessions()
    return g.db


def discard_db() -> None:
    """Drop this request's session and invalidate its connection, after an error that
    means the database went away: the broken connection must not go back to the pool
    for the next request to trip over, nor be rolled back (which fails and logs noise)."""
    session = g.pop("db", None)
    if session is None:
        return
    try:
        session.invalidate()
    except Exception:  # the connection is already gone; nothing is left to release
        log.debug("discarding the session after a database error", exc_info=True)


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()
