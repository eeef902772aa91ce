"""A job's outputs: metric series, checkpoints and events.

Workers write them through the fenced ``write_*`` functions (a stale attempt's writes
are refused, see ``lifecycle``);
the API reads them with the other functions here, each of which first checks that the
caller may see the job (``jobs.get_job``: NotFound for other people's jobs).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from .errors import FieldProblem, Invalid, NotFound
from .jobs import get_job
from .lifecycle import Lease, fence, set_progress
from .metrics import MAX_METRIC_NAME, SeriesWriter, cut_series, downsample, list_points
from .models import Checkpoint, Event, User, utcnow

MAX_EVENTS_PAGE = 1000

_CHECKPOINT_EPOCH = re.compile(r"epoch-(\d+)[^/\\]*\.npz$")


def public_result(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """A job's result (the training summary) as it is stored and shown: its last
    checkpoint by epoch, the name GET /jobs/{id}/checkpoints/{epoch} serves it by, not
    the path of its file on the server (which summaries of jobs finished before held)."""
    if not result or not isinstance(result.get("checkpoint"), str):
        return result
    found = _CHECKPOINT_EPOCH.search(result["checkpoint"])
    return {**result, "checkpoint": int(found[1]) if found else None}


# -- writing (workers) ------------------------------------------------------------------

def record_metrics(session: Session, job_id: int, rows: Iterable[Mapping[str, Any]]) -> int:
    """Add metric points ``{"name", "step", "epoch", "value"[, "time"]}`` (each series'
    steps past what it holds) and commit; return how many.

    Values must be finite: JSON cannot carry NaN. A diverged loss is reported by
    failing the job, not as a point.
    """
    points = [_metric_row(i, row) for i, row in enumerate(rows)]
    return insert_metric_points(session, job_id, points)


def insert_metric_points(session: Session, job_id: int, points: list[tuple[str, int, int, float]],
                         commit: bool = True, time: float | None = None) -> int:
    """(name, step, epoch, value) tuples into the job's series (``metrics.SeriesWriter``,
    continuing what is stored)."""
    if not points:
        return 0
    writer = SeriesWriter(job_id).load(session)
    now = utcnow().timestamp() if time is None else time
    by_name: dict[str, list[tuple[str, int, int, float]]] = {}
    for p in points:
        by_name.setdefault(p[0], []).append(p)
    for name, pts in by_name.items():
        # one point a step: a step given twice keeps its last
        pts = sorted({p[1]: p for p in pts}.values(), key=lambda p: p[1])
        arr = np.array([(p[1], p[2], p[3]) for p in pts], dtype=np.float64).reshape(-1, 3)
        writer.append(name, arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), np.full(len(pts), now),
                      arr[:, 2])
    writer.flush(session)
    if commit:
        session.commit()
        writer.written()
    return len(points)


def _metric_row(i: int, row: Mapping[str, Any]) -> tuple[str, int, int, float]:
    name, step, epoch, value = row.get("name"), row.get("step"), row.get("epoch"), row.get("value")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_METRIC_NAME:
        raise ValueError(f"metric row {i}: name must be 1 to {MAX_METRIC_NAME} characters, got {name!r}")
    for key, number in (("step", step), ("epoch", epoch)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ValueError(f"metric row {i}: {key} must be an integer >= 0, got {number!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"metric row {i} ({name}): value must be a finite number, got {value!r}")
    return name, int(step), int(epoch), float(value)


def record_checkpoint(session: Session, job_id: int, epoch: int, step: int, path: str | Path, sha256: str,
                      size_bytes: int, metrics: Mapping[str, Any] | None = None, is_best: bool = False,
                      commit: bool = True, series_cut: dict[str, Any] | None = None) -> Checkpoint:
    """Insert or replace the checkpoint of ``epoch`` (a resumed job writes the same
    epoch again); ``is_best`` moves the job's one best mark to this checkpoint. A
    running attempt calls :func:`write_checkpoint`, which fences this."""
    session.execute(delete(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.epoch == epoch))
    row = Checkpoint(job_id=job_id, epoch=epoch, step=int(step), path=str(path), sha256=sha256,
                     size_bytes=int(size_bytes), metrics=_json_safe(dict(metrics)) if metrics is not None else None,
                     is_best=bool(is_best), created_at=utcnow(), series_cut=series_cut)
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


@dataclass(frozen=True)
class Listed:
    """A checkpoint file an attempt wrote, to be listed with ``cut``: its series as of
    its step (``SeriesWriter.cut`` taken when the points up to it were handed over)."""

    epoch: int
    step: int
    path: Path
    sha256: str
    metrics: Mapping[str, Any]
    is_best: bool
    cut: dict[str, Any] | None = None


@dataclass(frozen=True)
class Unlisted:
    """Retention: a checkpoint whose row goes (its file after the commit)."""

    epoch: int
    path: Path


def write_outputs(session: Session, lease: Lease, writer: SeriesWriter | None,
                  checkpoints: Sequence[Listed | Unlisted] = (), progress: dict[str, Any] | None = None
                  ) -> list[Path]:
    """One transaction of a running attempt's writer: its changed series blocks, the
    checkpoint rows listed and removed since the last one (in that order) and its
    progress. A checkpoint is listed in the transaction that makes every point up to
    its step durable, so a resume from it finds no gap. Returns the files of removed
    rows, which the caller deletes now that this committed (a listed checkpoint always
    has its file). LeaseLost, and nothing written, once the attempt lost its lease."""
    fence(session, lease)
    if writer is not None:
        writer.flush(session)
    removed = []
    for c in checkpoints:
        if isinstance(c, Listed):
            record_checkpoint(session, lease.job_id, c.epoch, c.step, c.path, c.sha256, c.path.stat().st_size,
                              {k: v for k, v in c.metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)},
                              c.is_best, commit=False, series_cut=c.cut)
        else:
            session.execute(delete(Checkpoint).where(Checkpoint.job_id == lease.job_id, Checkpoint.epoch == c.epoch))
            removed.append(c.path)
    if progress is not None:
        set_progress(session, lease, progress, commit=False)
    session.commit()
    if writer is not None:
        writer.written()
    return removed


def write_checkpoint(session: Session, lease: Lease, epoch: int, step: int, path: Path, sha256: str,
                     metrics: Mapping[str, Any], is_best: bool) -> None:
    """The row of one checkpoint file the attempt wrote (its file exists before its row)."""
    write_outputs(session, lease, None, [Listed(epoch, step, path, sha256, metrics, is_best)])


def cut_metrics(session: Session, lease: Lease, step: int | None, cut: dict[str, Any] | None) -> None:
    """At the start of an attempt: the job's series back to the checkpoint it resumes
    from (``step`` None: starting afresh, no points)."""
    fence(session, lease)
    cut_series(session, lease.job_id, step, cut)
    session.commit()


def drop_checkpoint(session: Session, lease: Lease, epoch: int) -> str | None:
    """Retention: remove the row of ``epoch`` and return its file's path, which the
    caller deletes only after this commits (a listed checkpoint always has its file)."""
    path = session.scalar(select(Checkpoint.path).where(Checkpoint.job_id == lease.job_id, Checkpoint.epoch == epoch))
    write_outputs(session, lease, None, [Unlisted(epoch, Path(path) if path else Path())])
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
                 ) -> tuple[list[dict[str, Any]], str | None]:
    """Raw points with ``after_step < step < before_step`` ordered by (step, name) a page
    at a time, and the next page's token (None at the end); or, with ``max_points``,
    each series in at most that many buckets in one response (``metrics.downsample``)."""
    get_job(session, user, job_id)
    if max_points is not None:
        if page_token:
            raise Invalid("page_token cannot be combined with max_points", [FieldProblem(
                "page_token", "a downsampled series comes in one response; leave out page_token")])
        return downsample(session, job_id, names, after_step, before_step, max_points), None
    return list_points(session, job_id, names, after_step, before_step, limit, page_token)


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
