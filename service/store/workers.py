"""The worker registry: each ``trainyard worker`` reports itself every few seconds, so
the API can show who is alive and what each one is training."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from .models import Job, User, Worker, utcnow
from .status import JobStatus

HEARTBEAT_S = 5.0
# missing three heartbeats in a row means gone (crashed, or its machine is)
ALIVE_WITHIN_S = 3 * HEARTBEAT_S + 1
# stopped or silent workers stay listed this long, then their rows are pruned
FORGET_AFTER = timedelta(days=1)


def register(session: Session, name: str, *, hostname: str, pid: int, concurrency: int, queues: str,
             broker: str, version: str) -> None:
    """Insert or refresh the row for ``name`` (a restarted worker with the same name
    starts a fresh life: new start time, no stop time)."""
    now = utcnow()
    row = session.scalar(select(Worker).where(Worker.name == name))
    if row is None:
        row = Worker(name=name)
        session.add(row)
    row.hostname, row.pid, row.concurrency, row.queues = hostname, pid, concurrency, queues
    row.broker, row.version = broker, version
    row.started_at, row.last_seen_at, row.stopped_at = now, now, None
    session.execute(delete(Worker).where(Worker.last_seen_at < now - FORGET_AFTER))
    session.commit()


def heartbeat(session: Session, name: str) -> None:
    session.execute(update(Worker).where(Worker.name == name).values(last_seen_at=utcnow(), stopped_at=None))
    session.commit()


def mark_stopped(session: Session, name: str) -> None:
    session.execute(update(Worker).where(Worker.name == name).values(stopped_at=utcnow()))
    session.commit()


def lease_owner(worker_name: str, pid: int) -> str:
    """How a pool process of ``worker_name`` names itself on the jobs it holds."""
    return f"{worker_name}/{pid}"


@dataclass
class WorkerView:
    worker: Worker
    state: str  # alive | stopped | lost
    #: running jobs the viewer may see, and how many running jobs in all
    jobs: list[Job] = field(default_factory=list)
    busy: int = 0


def worker_state(worker: Worker, now: datetime) -> str:
    if worker.stopped_at is not None:
        return "stopped"
    return "alive" if worker.last_seen_at >= now - timedelta(seconds=ALIVE_WITHIN_S) else "lost"


def list_workers(session: Session, viewer: User) -> list[WorkerView]:
    """Workers seen in the last day, alive ones first, each with its running jobs
    (other people's jobs are counted, not shown, unless the viewer is an admin)."""
    now = utcnow()
    workers = session.scalars(select(Worker).order_by(Worker.name)).all()
    running = session.scalars(select(Job).where(Job.status == JobStatus.RUNNING, Job.lease_owner.is_not(None))
                              .order_by(Job.id)).all()
    views = []
    for w in workers:
        view = WorkerView(w, worker_state(w, now))
        prefix = w.name + "/"
        for job in running:
            if job.lease_owner.startswith(prefix):
                view.busy += 1
                if viewer.is_admin or job.owner_id == viewer.id:
                    view.jobs.append(job)
        views.append(view)
    order = {"alive": 0, "lost": 1, "stopped": 2}
    return sorted(views, key=lambda v: (order[v.state], v.worker.name))
