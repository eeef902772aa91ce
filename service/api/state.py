"""Per-app state (engine, sessions, enqueuer, model cache) and the request's database session."""
from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app, g
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ..config import Settings
from ..queue import Enqueuer
from ..store.predict import ModelCache


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    enqueuer: Enqueuer
    #: models loaded for predictions, per process
    models: ModelCache = field(default_factory=ModelCache)


def state() -> ServiceState:
    return current_app.extensions["trainyard"]


def db() -> Session:
    """This request's session, opened on first use and closed at teardown."""
    if "db" not in g:
        g.db = state().sessions()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()
