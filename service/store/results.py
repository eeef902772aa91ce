"""A job's outputs: metric series, checkpoints and events.

Workers write them through the fenced ``write_*`` functions (a stale attempt's writes
are refused, see ``lifecycle``);
the API reads them with the other functions here, each of which first checks that the
caller may see the job (``jobs.get_job``: NotFound for other people's jobs).
"""
from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Row, and_, case, delete, func, insert, or_, select, text, tuple_, update
from sqlalchemy.orm import Session

from .errors import FieldProblem, Invalid, NotFound
from .jobs import get_job
from .lifecycle import Lease, fence
from .models import Checkpoint, Event, Metric, User, utcnow

MAX_METRICS_PAGE = 10_000
MAX_POINTS = 10_000
# first, last, and a min and a max per bucket: fewer points cannot keep all four
MIN_POINTS = 4
MAX_EVENTS_PAGE = 1000
MAX_METRIC_NAME = 64

_POINT_COLUMNS = (Metric.id, Metric.name, Metric.step, Metric.epoch, Metric.value, Metric.time)


# -- writing (workers) ------------------------------------------------------------------

def record_metrics(session: Session, job_id: int, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert metric points ``{"name", "step", "epoch", "value"[, "time"]}`` in one
    statement and one commit; return how many.

    Values must be finite: SQLite cannot store NaN, and JSON cannot carry it. A
    diverged loss is reported by failing the job, not as a point.
    """
    now = utcnow()
    values = [_metric_row(i, row, now) for i, row in enumerate(rows)]
    if not values:
        return 0
    for v in values:
        v["job_id"] = job_id
    session.execute(insert(Metric), values)
    session.commit()
    return len(values)


def insert_metric_points(session: Session, job_id: int, points: list[tuple[str, int, int, float]],
                         commit: bool = True) -> int:
    """The worker's fast path: (name, step, epoch, value) tuples it built itself, in one
    driver-level executemany (no per-row ORM or type processing: a fast job produces
    thousands of points a second). Values must be finite."""
    if not points:
        return 0
    conn = session.connection()
    dialect = conn.dialect
    now = utcnow()
    # SQLite keeps SQLAlchemy's DATETIME text form; PostgreSQL takes the aware datetime
    when: Any = now.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect.name == "sqlite" else now
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s", "numeric": ":{}", "named": ":p{}"}[dialect.paramstyle]
    if "{}" in mark:
        marks = ", ".join(mark.format(i + 1 if dialect.paramstyle == "numeric" else i) for i in range(6))
    else:
        marks = ", ".join([mark] * 6)
    sql = f"INSERT INTO metrics (job_id, name, step, epoch, value, time) VALUES ({marks})"
    rows = [(job_id, name, step, epoch, value, when) for name, step, epoch, value in points]
    if dialect.paramstyle == "named":
        rows = [{f"p{i}": v for i, v in enumerate(r)} for r in rows]
    conn.exec_driver_sql(sql, rows)
    if commit:
        session.commit()
    return len(rows)


def _metric_row(i: int, row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    name, step, epoch, value = row.get("name"), row.get("step"), row.get("epoch"), row.get("value")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_METRIC_NAME:
        raise ValueError(f"metric row {i}: name must be 1 to {MAX_METRIC_NAME} characters, got {name!r}")
    for key, number in (("step", step), ("epoch", epoch)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ValueError(f"metric row {i}: {key} must be an integer >= 0, got {number!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"metric row {i} ({name}): value must be a finite number, got {value!r}")
    return {"name": name, "step": int(step), "epoch": int(epoch), "value": float(value),
            "time": row.get("time") or now}


def record_checkpoint(session: Session, job_id: int, epoch: int, step: int, path: str | Path, sha256: str,
                      size_bytes: int, metrics: Mapping[str, Any] | None = None, is_best: bool = False,
                      commit: bool = True) -> Checkpoint:
    """Insert or replace the checkpoint of ``epoch`` (a resumed job writes the same
    epoch again); ``is_best`` moves the job's one best mark to this checkpoint. A
    running attempt calls :func:`write_checkpoint`, which fences this."""
    session.execute(delete(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.epoch == epoch))
    row = Checkpoint(job_id=job_id, epoch=epoch, step=int(step), path=str(path), sha256=sha256,
                     size_bytes=int(size_bytes), metrics=_json_safe(dict(metrics)) if metrics is not None else None,
                     is_best=bool(is_best), created_at=utcnow())
    session.add(row)
    if is_best:
        session.execute(update(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.epoch != epoch,
                                                 Checkpoint.is_best.is_(True)).values(is_best=False))
    if commit:
        session.commit()
    return row


# -- an attempt's writes, fenced by its lease ------------------------------------------------

def write_points(session: Session, lease: Lease, points: list[tuple[str, int, int, float]]) -> int:
    """Metric points of a running attempt; LeaseLost (nothing written) once it lost its lease."""
    fence(session, lease)
    return insert_metric_points(session, lease.job_id, points)


def write_checkpoint(session: Session, lease: Lease, epoch: int, step: int, path: Path, sha256: str,
                     metrics: Mapping[str, Any], is_best: bool) -> None:
    """The row of a checkpoint file the attempt wrote (its file exists before its row)."""
    fence(session, lease)
    record_checkpoint(session, lease.job_id, epoch, step, path, sha256, path.stat().st_size,
                      {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)},
                      is_best)


def drop_checkpoint(session: Session, lease: Lease, epoch: int) -> str | None:
    """Retention: remove the row of ``epoch`` and return its file's path, which the
    caller deletes only after this commits (a listed checkpoint always has its file)."""
    fence(session, lease)
    path = session.scalar(delete(Checkpoint).where(Checkpoint.job_id == lease.job_id, Checkpoint.epoch == epoch)
                          .returning(Checkpoint.path))
    session.commit()
    return path


def reconcile_checkpoints(session: Session, lease: Lease, directory: Path, keep: set[int] | None) -> list[Path]:
    """At the start of an attempt: make rows and files agree with the checkpoint it
    resumes from. Rows of epochs outside ``keep`` (the resumed checkpoint's kept set;
    None when starting afresh: keep nothing) are removed, then every file in
    ``directory`` that no row lists (an older attempt's, left by a crash between file
    and row, or a frozen attempt's) is deleted. Returns the files deleted."""
    fence(session, lease)
    rows = session.execute(select(Checkpoint.epoch, Checkpoint.path).where(Checkpoint.job_id == lease.job_id)).all()
    stale = [epoch for epoch, _ in rows if keep is None or epoch not in keep]
    if stale:
        session.execute(delete(Checkpoint).where(Checkpoint.job_id == lease.job_id, Checkpoint.epoch.in_(stale)))
    session.commit()
    return _delete_unlisted(directory, {Path(p).name for e, p in rows if e not in stale})


def prune_unlisted(session: Session, job_id: int, directory: Path) -> list[Path]:
    """Delete the checkpoint files of a *finished* job that no row lists (left by an
    attempt that died between writing a file and listing it)."""
    return _delete_unlisted(directory, {Path(p).name for p in session.scalars(
        select(Checkpoint.path).where(Checkpoint.job_id == job_id))})


def _delete_unlisted(directory: Path, listed: set[str]) -> list[Path]:
    removed = []
    for f in sorted(directory.glob("*.npz")) if directory.is_dir() else []:
        if f.name not in listed:
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


def _json_safe(value: Any) -> Any:
    # JSON has no NaN/inf (PostgreSQL's json type refuses them); numpy scalars are not JSON
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- metrics ------------------------------------------------------------------------------

def list_metrics(session: Session, user: User, job_id: int, names: Sequence[str] | None = None,
                 after_step: int | None = None, before_step: int | None = None, limit: int = 1000,
                 page_token: str | None = None, max_points: int | None = None
                 ) -> tuple[list[Row[Any]], str | None]:
    """Points ordered by (step, name), and the token of the next page (None at the end).

    Points with ``after_step < step < before_step`` of the series ``names`` (default
    all). The page token is a keyset position, so every point is returned exactly once
    however the pages are cut, duplicates of a step (a resumed job) included.

    With ``max_points`` each series is instead reduced to at most that many points over
    the whole range, in one response: its first and last points and, in equal step
    ranges between them, each range's lowest and highest value, so spikes survive.
    """
    get_job(session, user, job_id)
    where = [Metric.job_id == job_id]
    if names:
        where.append(Metric.name.in_(list(names)))
    if after_step is not None:
        where.append(Metric.step > after_step)
    if before_step is not None:
        where.append(Metric.step < before_step)
    if max_points is not None:
        if page_token:
            raise Invalid("page_token cannot be combined with max_points", [FieldProblem(
                "page_token", "a downsampled series comes in one response; leave out page_token")])
        return _downsampled(session, where, max(MIN_POINTS, min(max_points, MAX_POINTS))), None
    limit = max(1, min(limit, MAX_METRICS_PAGE))
    stmt = select(*_POINT_COLUMNS).where(*where)
    if page_token:
        step, name, point_id = _decode_metrics_token(page_token)
        stmt = stmt.where(tuple_(Metric.step, Metric.name, Metric.id) > tuple_(step, name, point_id))
    rows = list(session.execute(stmt.order_by(Metric.step, Metric.name, Metric.id).limit(limit + 1)))
    token = _encode_metrics_token(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], token


def _downsampled(session: Session, where: list[Any], max_points: int) -> list[Row[Any]]:
    series = session.execute(select(Metric.name, func.count(), func.min(Metric.step), func.max(Metric.step))
                             .where(*where).group_by(Metric.name)).all()
    points: list[Row[Any]] = []
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres and any(count > max_points for _, count, _, _ in series):
        # A series being written has stale planner statistics (estimated at 1 row), and
        # PostgreSQL then joins it to its own aggregate in a nested loop: 0.6 s for 10k
        # points. Hash joins are right for any size here.
        session.execute(text("SET LOCAL enable_nestloop = off"))
    for name, count, lo, hi in series:
        one = [*where, Metric.name == name]
        if count <= max_points:
            points += session.execute(select(*_POINT_COLUMNS).where(*one)).all()
            continue
        buckets = (max_points - 2) // 2
        # Aggregates and a join rather than window functions: two passes over the series
        # with no sort, 3-5x faster on a million points (bench/dashboard.py).
        # Integer division on both backends: equal step ranges numbered 0..buckets-1.
        bucket = ((Metric.step - lo) * buckets // (hi - lo + 1)).label("bucket")
        rows = select(Metric.step, Metric.value, bucket).where(*one).subquery()
        extremes = select(rows.c.bucket, func.min(rows.c.value).label("low"), func.max(rows.c.value).label("high")
                          ).group_by(rows.c.bucket).subquery()
        # the first step holding each range's lowest and highest value (a constant
        # series ties everywhere: this keeps it to two points per range)
        found = session.execute(
            select(func.min(case((rows.c.value == extremes.c.low, rows.c.step))),
                   func.min(case((rows.c.value == extremes.c.high, rows.c.step))))
            .join(extremes, and_(extremes.c.bucket == rows.c.bucket,
                                 or_(rows.c.value == extremes.c.low, rows.c.value == extremes.c.high)))
            .group_by(rows.c.bucket)).all()
        steps = {lo, hi} | {step for pair in found for step in pair if step is not None}
        chosen = session.execute(select(*_POINT_COLUMNS).where(*one, Metric.step.in_(sorted(steps)))
                                 .order_by(Metric.step, Metric.id)).all()
        # a resumed job can repeat a step: its first point stands for it
        seen: set[int] = set()
        points += [p for p in chosen if not (p.step in seen or seen.add(p.step))]
    if postgres:
        session.execute(text("SET LOCAL enable_nestloop TO DEFAULT"))
    points.sort(key=lambda p: (p.step, p.name, p.id))
    return points


def _encode_metrics_token(row: Row[Any]) -> str:
    raw = json.dumps({"step": row.step, "name": row.name, "id": row.id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_metrics_token(token: str) -> tuple[int, str, int]:
    try:
        doc = json.loads(base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()))
        step, name, point_id = doc["step"], doc["name"], doc["id"]
        if not (_is_bigint(step) and isinstance(name, str) and _is_bigint(point_id)):
            raise ValueError
        return step, name, point_id
    except (ValueError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise Invalid("page_token is not one this server issued",
                      [FieldProblem("page_token", "invalid page token")]) from None


def _is_bigint(value: Any) -> bool:
    # bounded: SQLite cannot bind integers beyond 64 bits
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


# -- checkpoints ------------------------------------------------------------------------

def list_checkpoints(session: Session, user: User, job_id: int) -> list[Checkpoint]:
    get_job(session, user, job_id)
    return list(session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.epoch)))


def get_checkpoint(session: Session, user: User, job_id: int, epoch: int) -> Checkpoint:
    get_job(session, user, job_id)
    if not 0 <= epoch <= 2**31 - 1:
        # epochs are INTEGER columns: a larger number names nothing (PostgreSQL would refuse to bind it)
        raise NotFound(f"job {job_id} has no checkpoint of epoch {epoch}")
    row = session.scalar(select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.epoch == epoch))
    if row is None:
        raise NotFound(f"job {job_id} has no checkpoint of epoch {epoch}")
    return row


def checkpoint_file(checkpoint: Checkpoint) -> Path:
    """The checkpoint's file; NotFound once retention (or a person) has removed it."""
    path = Path(checkpoint.path)
    if not path.is_file():
        raise NotFound(f"the file of job {checkpoint.job_id}'s checkpoint of epoch {checkpoint.epoch} "
                       "no longer exists")
    return path


# -- events -----------------------------------------------------------------------------

def list_events(session: Session, user: User, job_id: int, after_id: int | None = None, limit: int = 100
                ) -> tuple[list[Event], int | None]:
    """Events in the order they happened (by id), and the ``after_id`` of the next page
    (None when this page reaches the end; poll with the last id to follow a job)."""
    get_job(session, user, job_id)
    limit = max(1, min(limit, MAX_EVENTS_PAGE))
    stmt = select(Event).where(Event.job_id == job_id)
    if after_id is not None:
        stmt = stmt.where(Event.id > after_id)
    rows = list(session.scalars(stmt.order_by(Event.id).limit(limit + 1)))
    return rows[:limit], rows[limit - 1].id if len(rows) > limit else None
