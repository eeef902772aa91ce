"""Every change of a job's state, each one guarded statement.

A job moves ``queued -> running -> succeeded | failed | cancelled`` and, when an
attempt fails or its worker is lost, ``running -> queued`` again until its restarts
are spent. Each transition here is a single ``UPDATE ... WHERE id = ? AND status = ?
[AND attempts = ?]`` whose row count says whether it happened, with its event written
in the same transaction, so two processes racing for one job never both win and
never undo each other (no read-then-write by primary key).

**The attempt number is the fencing token.** ``claim`` hands the winner a
:class:`Lease` (job id, attempt, owner, expiry). Every write an attempt makes —
metric points, checkpoint rows, events, progress, its final status — goes through
:func:`fence` first, in the same transaction: a no-op UPDATE of the job's row
guarded by ``status = running AND attempts = lease.attempt AND lease_expires_at >
now``. It locks the row (PostgreSQL) or the database (SQLite) until the
transaction ends, so a requeue or a rival claim cannot slip between the check and
the write. A lease once expired is lost, even if nobody has taken the job yet: its
holder was presumed dead, and the reaper may be handing the job on.

Times come from the caller (``now``), so tests can drive a clock.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from .errors import Conflict
from .models import Event, Job, utcnow
from .status import FINISHED, JobStatus

RUNNING, QUEUED = JobStatus.RUNNING.value, JobStatus.QUEUED.value


class LeaseLost(Exception):
    """This attempt no longer holds its job's lease: its writes are refused and it must
    stop (another attempt may be running the job already)."""

    def __init__(self, lease: Lease, why: str = "") -> None:
        super().__init__(f"job {lease.job_id}: attempt {lease.attempt} no longer holds the lease"
                         + (f" ({why})" if why else ""))
        self.lease = lease


@dataclass(frozen=True)
class Lease:
    """What a running attempt holds; ``attempt`` is its fencing token."""

    job_id: int
    attempt: int
    owner: str
    expires_at: datetime


def _event(session: Session, job_id: int, kind: str, message: str, now: datetime) -> None:
    session.add(Event(job_id=job_id, kind=kind, message=message, time=now))


def _holds(lease: Lease, now: datetime) -> list[Any]:
    return [Job.id == lease.job_id, Job.status == RUNNING, Job.attempts == lease.attempt,
            Job.lease_expires_at > now]


def _update(session: Session, *where: Any, returning: Any = None, **values: Any) -> Any:
    stmt = update(Job).where(*where).values(**values).execution_options(synchronize_session=False)
    if returning is not None:
        return session.execute(stmt.returning(*returning)).first()
    return session.execute(stmt).rowcount


# -- a worker's attempt -----------------------------------------------------------------

def claim(session: Session, job_id: int, owner: str, lease_s: float, now: datetime | None = None
          ) -> Lease | None:
    """Start the next attempt of a queued job; None when it is not queued (another
    delivery won, it was cancelled, it is finished). A running job whose lease expired
    is first handed on by :func:`requeue_expired` (which may fail it instead)."""
    now = now or utcnow()
    requeue_expired(session, now, job_ids=[job_id])
    expires = now + timedelta(seconds=lease_s)
    row = _update(session, Job.id == job_id, Job.status == QUEUED, Job.cancel_requested.is_(False),
                  returning=(Job.attempts,), status=RUNNING, lease_owner=owner, lease_expires_at=expires,
                  attempts=Job.attempts + 1, started_at=func.coalesce(Job.started_at, now), updated_at=now)
    if row is None:
        session.commit()
        return None
    _event(session, job_id, "state", f"running (attempt {row.attempts}) on {owner}", now)
    session.commit()
    return Lease(job_id, row.attempts, owner, expires)


def renew(session: Session, lease: Lease, lease_s: float, now: datetime | None = None) -> tuple[Lease, bool]:
    """Extend the lease; return it and whether a cancel was requested. LeaseLost when
    the lease expired or passed to another attempt."""
    now = now or utcnow()
    expires = now + timedelta(seconds=lease_s)
    row = _update(session, *_holds(lease, now), returning=(Job.cancel_requested,), lease_expires_at=expires)
    session.commit()
    if row is None:
        raise LeaseLost(lease, "it expired or was taken over")
    return replace(lease, expires_at=expires), bool(row.cancel_requested)


def fence(session: Session, lease: Lease, now: datetime | None = None) -> None:
    """Open this attempt's write: the rest of the transaction lands only if the attempt
    holds the lease now, and nothing can take it until the transaction ends. Call it
    first in the transaction; LeaseLost (rolled back) when the lease is gone."""
    if not _update(session, *_holds(lease, now or utcnow()), attempts=Job.attempts):
        session.rollback()
        raise LeaseLost(lease, "its write was refused")


def add_event(session: Session, lease: Lease, kind: str, message: str, now: datetime | None = None) -> None:
    """A fenced event of a running attempt (committed)."""
    now = now or utcnow()
    fence(session, lease, now)
    _event(session, lease.job_id, kind, message, now)
    session.commit()


def set_progress(session: Session, lease: Lease, progress: dict[str, Any], now: datetime | None = None,
                 commit: bool = True) -> None:
    now = now or utcnow()
    if not _update(session, *_holds(lease, now), progress=progress, updated_at=now):
        session.rollback()
        raise LeaseLost(lease, "its progress was refused")
    if commit:
        session.commit()


def finish(session: Session, lease: Lease, status: JobStatus, error: str | None = None,
           result: dict[str, Any] | None = None, now: datetime | None = None) -> None:
    """End the job in a terminal ``status`` (the attempt's outcome). LeaseLost when the
    attempt no longer holds the lease: then the job is someone else's to end."""
    if status not in FINISHED:
        raise ValueError(f"finish() takes a terminal status, got {status!r}")
    now = now or utcnow()
    if not _update(session, *_holds(lease, now), status=status.value, error=error, result=result,
                   finished_at=now, lease_owner=None, lease_expires_at=None, updated_at=now):
        session.rollback()
        raise LeaseLost(lease, f"it could not end the job as {status}")
    _event(session, lease.job_id, "state", status.value + (f": {error}" if error else ""), now)
    session.commit()


def retry_or_fail(session: Session, lease: Lease, reason: str, max_restarts: int, permanent: bool = False,
                  now: datetime | None = None) -> JobStatus:
    """An attempt failed with ``reason``: queue the next attempt (resumed from the last
    checkpoint) while restarts remain, else fail the job. A cancel requested meanwhile
    wins. Returns the job's new status; LeaseLost if the attempt had lost its lease."""
    now = now or utcnow()
    spent = permanent or lease.attempt > max_restarts
    target = JobStatus.FAILED if spent else JobStatus.QUEUED
    new_status = case((Job.cancel_requested.is_(True), JobStatus.CANCELLED.value), else_=target.value)
    ends = case((Job.cancel_requested.is_(True), now), else_=now if spent else None)
    row = _update(session, *_holds(lease, now), returning=(Job.status,), status=new_status, finished_at=ends,
                  error=reason if spent else None, lease_owner=None, lease_expires_at=None, enqueued_at=None,
                  updated_at=now)
    if row is None:
        session.rollback()
        raise LeaseLost(lease, "its failure was not recorded")
    status = JobStatus(row.status)
    if status is JobStatus.QUEUED:
        _event(session, lease.job_id, "error", f"attempt {lease.attempt} failed ({reason}); retrying from the "
                                                f"last checkpoint", now)
    elif status is JobStatus.CANCELLED:
        _event(session, lease.job_id, "state", f"cancelled (attempt {lease.attempt} had failed: {reason})", now)
    else:
        _event(session, lease.job_id, "state", f"failed: {reason}", now)
    session.commit()
    return status


# -- recovery and requests ----------------------------------------------------------------------

def requeue_expired(session: Session, now: datetime | None = None, job_ids: list[int] | None = None,
                    limit: int = 100) -> list[tuple[int, JobStatus]]:
    """Hand on running jobs whose lease expired (their worker died or froze): back to
    the queue, or failed once ``max_restarts`` is spent (every attempt counts, a lost
    one too), or cancelled if that was asked. Safe to run from many reapers at once:
    each job moves at most once per expired attempt. Returns (job id, new status)."""
    now = now or utcnow()
    moved = [(c.id, status) for c in expired(session, now, job_ids, limit)
             if (status := hand_on(session, c, now)) is not None]
    session.commit()
    return moved


def expired(session: Session, now: datetime, job_ids: list[int] | None = None, limit: int = 100) -> list[Any]:
    """Running jobs whose lease expired before ``now``: (id, attempts, max_restarts,
    lost_attempts, lease_owner) as read now — by the time :func:`hand_on` acts, another
    reaper or a claim may have moved the job, which its guard checks."""
    stmt = (select(Job.id, Job.attempts, Job.max_restarts, Job.lost_attempts, Job.lease_owner)
            .where(Job.status == RUNNING, Job.lease_expires_at < now).order_by(Job.id).limit(limit)
            # another reaper's rows are skipped, not waited for (PostgreSQL; SQLite has one writer anyway)
            .with_for_update(skip_locked=True))
    if job_ids is not None:
        stmt = stmt.where(Job.id.in_(job_ids))
    return list(session.execute(stmt).all())


def hand_on(session: Session, seen: Any, now: datetime) -> JobStatus | None:
    """Move one job :func:`expired` saw, if it is still that attempt and still expired;
    its new status, or None when it had moved on (not committed)."""
    lost = seen.lost_attempts + 1
    spent = seen.attempts > seen.max_restarts
    why = (f"its worker was lost {lost} time{'s' if lost != 1 else ''} (attempt {seen.attempts} of "
           f"{seen.max_restarts + 1} allowed by max_restarts={seen.max_restarts})")
    target = JobStatus.FAILED if spent else JobStatus.QUEUED
    row = _update(session, Job.id == seen.id, Job.status == RUNNING, Job.attempts == seen.attempts,
                  Job.lease_expires_at < now, returning=(Job.status,),
                  status=case((Job.cancel_requested.is_(True), JobStatus.CANCELLED.value), else_=target.value),
                  finished_at=case((Job.cancel_requested.is_(True), now), else_=now if spent else None),
                  error=why if spent else None, lost_attempts=lost, lease_owner=None, lease_expires_at=None,
                  enqueued_at=None, updated_at=now)
    if row is None:
        return None
    status = JobStatus(row.status)
    message = {JobStatus.QUEUED: f"lease of {seen.lease_owner} expired; re-queued to resume from its last checkpoint",
               JobStatus.FAILED: f"failed: {why}",
               JobStatus.CANCELLED: f"cancelled (the lease of {seen.lease_owner} expired)"}[status]
    _event(session, seen.id, "state", message, now)
    return status


def cancel(session: Session, job_id: int, now: datetime | None = None) -> JobStatus:
    """Cancel a queued job at once, or flag a running one (its attempt stops within a
    step). Conflict for a finished job. Returns the status after the request."""
    now = now or utcnow()
    for _ in range(8):  # each guarded step either lands or the job moved on; look again
        status, requested = session.execute(select(Job.status, Job.cancel_requested).where(Job.id == job_id)).one()
        status = JobStatus(status)
        if status in FINISHED:
            session.rollback()
            raise Conflict(f"job {job_id} already finished ({status})")
        if status is JobStatus.QUEUED:
            if _update(session, Job.id == job_id, Job.status == QUEUED, status=JobStatus.CANCELLED.value,
                       finished_at=now, updated_at=now):
                _event(session, job_id, "state", "cancelled before it started", now)
                session.commit()
                return JobStatus.CANCELLED
        elif requested:
            session.rollback()
            return status
        elif _update(session, Job.id == job_id, Job.status == RUNNING, cancel_requested=True, updated_at=now):
            _event(session, job_id, "state", "cancel requested", now)
            session.commit()
            return JobStatus.RUNNING
        session.rollback()
    raise Conflict(f"job {job_id} is changing state too quickly to cancel; try again")
