"""Sending jobs to the workers by Celery task *name*: the API never imports worker code.

If the broker cannot be reached the job stays ``queued`` in SQL with no
``enqueued_at``; ``enqueue_pending`` sends such jobs later (the API does on start,
the worker's reaper periodically), so a job is never lost.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from ..store import jobs as job_store
from ..store.models import Job

log = logging.getLogger(__name__)

TASK_NAME = "trainyard.run_job"
QUEUE = "jobs"
MAX_PRIORITY = 9


#: the prefix of kombu's SQLAlchemy transport: the rest is an SQLAlchemy URL
SQLA_PREFIX = "sqla+"


def embedded_broker_file(broker_url: str) -> Path | None:
    """The SQLite file of a ``sqla+sqlite:///PATH`` broker, else None (Redis, a server
    database, SQLite in memory)."""
    if not broker_url.startswith(SQLA_PREFIX + "sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(broker_url.removeprefix(SQLA_PREFIX)).database
    return Path(database).resolve() if database and database != ":memory:" else None


def prepare_broker(broker_url: str) -> None:
    """Create the folder of an embedded broker's SQLite file. Every process that uses the
    broker calls this first: SQLite creates the file but not its folder, and kombu
    answers a missing folder only by retrying "unable to open database file" forever."""
    path = embedded_broker_file(broker_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def celery_priority(priority: int) -> int:
    """A job's priority (-100..100, higher first) as a message priority for kombu's Redis
    transport, which serves 0 first and 9 last."""
    return MAX_PRIORITY - max(0, min(MAX_PRIORITY, (priority + 100) * MAX_PRIORITY // 200))


class Enqueuer:
    """A send-only Celery client for ``broker_url``, created on first use."""

    def __init__(self, broker_url: str, timeout_s: float = 2.0) -> None:
        self.broker_url = broker_url
        self.timeout_s = timeout_s
        self._app: Any = None
        self._sql_engine: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            from celery import Celery

            app = Celery("trainyard-api", broker=self.broker_url, set_as_current=False)
            app.conf.update(broker_connection_retry=False, broker_connection_retry_on_startup=False,
                            broker_connection_timeout=self.timeout_s, task_default_queue=QUEUE)
            if self.broker_url.startswith(("redis://", "rediss://")):
                # fail fast when Redis is down; (the SQLAlchemy transport hands transport
                # options to create_engine, which rejects these, so only for Redis)
                app.conf.broker_transport_options = {"max_retries": 0, "socket_connect_timeout": self.timeout_s,
                                                     "socket_timeout": self.timeout_s}
            self._app = app
        return self._app

    def send(self, job_id: int, priority: int = 0) -> bool:
        """Publish the job; False (logged) when the broker is unreachable."""
        try:
            self.app.send_task(TASK_NAME, args=[job_id], queue=QUEUE, priority=celery_priority(priority),
                               retry=False)
            return True
        except Exception as exc:  # any broker failure leaves the job queued in SQL
            log.warning("could not enqueue job %s: %s", job_id, exc)
            return False

    def ping(self) -> str | None:
        """None when the broker answers, else the reason it does not."""
        try:
            if self.broker_url.startswith(SQLA_PREFIX):
                self._ping_sql()
            else:
                with self.app.connection_for_write() as conn:
                    conn.ensure_connection(max_retries=0, timeout=self.timeout_s)
            return None
        except Exception as exc:
            return _reason(exc)

    def _ping_sql(self) -> None:
        # kombu's SQLAlchemy transport connects lazily, so ensure_connection "succeeds"
        # without opening anything: ask the database itself
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        if self._sql_engine is None:
            url = self.broker_url.removeprefix(SQLA_PREFIX)
            # NullPool: every ping opens a fresh connection, so a broker that went away
            # is noticed (and nothing pooled is shared with a forked process)
            self._sql_engine = create_engine(url, poolclass=NullPool, connect_args=self._connect_timeout(url))
        with self._sql_engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def _connect_timeout(self, url: str) -> dict[str, Any]:
        if url.startswith("sqlite"):
            return {"timeout": self.timeout_s}
        if url.startswith(("postgresql", "mysql")):
            return {"connect_timeout": max(1, math.ceil(self.timeout_s))}
        return {}


def _reason(exc: BaseException) -> str:
    """An exception as one line for a person: SQLAlchemy's own message without its
    appended SQL and documentation link."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {exc.orig}".strip().splitlines()[0]
    return (str(exc) or type(exc).__name__).strip().splitlines()[0]


def enqueue(session: Session, enqueuer: Enqueuer, job: Job) -> bool:
    """Send one job after its row is committed; record the outcome on the job."""
    if enqueuer.send(job.id, job.priority):
        job_store.mark_enqueued(session, job)
        return True
    job_store.add_event(session, job, "log", "the broker was unreachable; the job will be enqueued when it is back")
    session.commit()
    return False


def enqueue_pending(session: Session, enqueuer: Enqueuer) -> int:
    """Send every queued job the broker has not accepted yet; return how many were sent."""
    sent = 0
    for job in job_store.pending_enqueue(session):
        if not enqueuer.send(job.id, job.priority):
            break
        job_store.mark_enqueued(session, job)
        sent += 1
    return sent
