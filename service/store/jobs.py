"""Jobs: submit (validated by nncore's spec validator), list, get, cancel, delete.

Every function takes a Session and the acting user; a user sees only their own jobs
(NotFound otherwise, so ids do not leak), an administrator sees all.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nncore.datasets import DATASET_NAMES
from nncore.spec import SpecError, validate_spec

from . import lifecycle, quota
from .errors import Conflict, FieldProblem, Invalid, NotFound, bad_text
from .models import Dataset, Event, Job, User, utcnow
from .status import JobStatus

MAX_PAGE = 200
#: ids are 64-bit signed integers on PostgreSQL (and SQLite); larger ones cannot exist
MAX_ID = 2**63 - 1
#: how deeply a job spec may nest (a real one nests 4 levels)
MAX_SPEC_DEPTH = 32


def request_hash(body: Any) -> str:
    """Canonical hash of a request body, for Idempotency-Key replays."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def add_event(session: Session, job: Job, kind: str, message: str) -> Event:
    event = Event(job_id=job.id, kind=kind, message=message, time=utcnow())
    session.add(event)
    return event


def _visible(stmt: Any, user: User, owner_id: Any = Job.owner_id) -> Any:
    """``stmt`` limited to rows ``user`` may see; ``owner_id`` is the owning column
    (jobs by default, ``Dataset.owner_id`` for datasets)."""
    return stmt if user.is_admin else stmt.where(owner_id == user.id)


def get_job(session: Session, user: User, job_id: int) -> Job:
    # an id no database column can hold names no job (and must not reach the driver)
    job = session.scalar(_visible(select(Job).where(Job.id == job_id), user)) if 0 < job_id <= MAX_ID else None
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


def validate_job_spec(session: Session, user: User, doc: Any, limits: dict[str, int] | None = None,
                      budget: quota.Budget | None = None) -> tuple[dict[str, Any], Dataset | None]:
    """The normalised spec and the uploaded dataset it names (if any), or Invalid
    listing every problem with its path (prefixed ``spec.``). The limits and the budget
    (memory, checkpoint bytes) are applied to the data the job names, so leaving out
    ``model.input_dim`` does not escape them."""
    names = [n for n in DATASET_NAMES if n not in ("csv", "npz")]
    unsafe, doc = unsafe_json_values(doc)
    problems = [FieldProblem(_prefix(p.path), p.message) for p in unsafe]
    reported = [p.path for p in unsafe]
    data_doc = doc.get("data") if isinstance(doc, dict) else None
    if isinstance(data_doc, dict) and (data_doc.get("dataset") in ("csv", "npz") or "path" in data_doc):
        # the server never reads files named by a client (reported with the rest, not instead)
        problems.append(FieldProblem("spec.data.path", "files on the server cannot be named in a job; upload the "
                                                       "data with POST /api/v1/datasets and use data.dataset_id"))
        reported.append("data.path")
    try:
        spec = validate_spec(doc, limits=limits, dataset_names=names)
    except SpecError as exc:
        # each value reported above is reported once, as what it was
        problems += [FieldProblem(_prefix(p.path), p.message) for p in exc.problems
                     if not any(_within(p.path, r) for r in reported)]
    if problems:
        raise Invalid("the job spec is not valid", problems)
    dataset = None
    data = spec["data"]
    if data.get("dataset_id") is not None:
        ds_id = data["dataset_id"]
        if isinstance(ds_id, str) and ds_id.isascii() and ds_id.isdigit() and len(ds_id) <= 19:
            ds_id = int(ds_id)
        dataset = session.scalar(select(Dataset).where(Dataset.id == ds_id, Dataset.owner_id == user.id)) \
            if isinstance(ds_id, int) and 0 < ds_id <= MAX_ID else None
        if dataset is None:
            raise Invalid("the job spec is not valid",
                          [FieldProblem("spec.data.dataset_id", f"no dataset {ds_id!r} of yours exists; "
                                                                "upload one with POST /api/v1/datasets")])
        n_in = spec["model"].get("input_dim")
        if n_in is not None and n_in != dataset.n_features:
            raise Invalid("the job spec is not valid", [FieldProblem(
                "spec.model.input_dim", f"is {n_in} but dataset {dataset.id} has {dataset.n_features} features")])
    n_features = quota.data_shape(spec, dataset)[1]
    if spec["model"].get("input_dim") is None:
        # the parameter limits count from the input width: apply them with the data's
        try:
            validate_spec({**doc, "model": {**doc["model"], "input_dim": n_features}}, limits=limits,
                          dataset_names=names)
        except SpecError as exc:
            raise Invalid("the job spec is not valid", [FieldProblem(_prefix(p.path), p.message + (
                f" (model.input_dim is {n_features}, from the data)" if p.path in ("model", "gradient") else ""))
                for p in exc.problems]) from None
    quota.check_job(spec, quota.job_footprint(spec, dataset), budget or quota.Budget())
    return spec, dataset


def _prefix(path: str) -> str:
    return "spec" + ("." + path if path else "")


def _within(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith((ancestor + ".", ancestor + "["))


def unsafe_json_values(doc: Any) -> tuple[list[FieldProblem], Any]:
    """Values of a client's JSON no column, JSON encoder or numeric code can hold:
    NaN and infinities (Python's JSON parser accepts them, PostgreSQL's JSON does not),
    integers beyond 64 bits, text with NUL characters or unpaired surrogates, and
    nesting deeper than MAX_SPEC_DEPTH. Returns the problems (paths relative to ``doc``)
    and a copy of ``doc`` with each such value replaced by None, safe to validate."""
    problems: list[FieldProblem] = []

    def walk(value: Any, path: str, depth: int) -> Any:
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(FieldProblem(path, f"must be a finite number, got {value}"))
            return None
        if isinstance(value, int) and not -MAX_ID - 1 <= value <= MAX_ID:
            problems.append(FieldProblem(path, "is out of range: integers must fit in 64 bits"))
            return None
        if isinstance(value, str):
            bad = bad_text(value)
            if bad:
                problems.append(FieldProblem(path, bad))
                return None
            return value
        if isinstance(value, (dict, list)) and depth >= MAX_SPEC_DEPTH:
            problems.append(FieldProblem(path, f"nests too deeply (more than {MAX_SPEC_DEPTH} levels)"))
            return None
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                bad = bad_text(key) if isinstance(key, str) else None
                if bad:
                    problems.append(FieldProblem(path, f"has a field name that {bad}"))
                    continue
                out[key] = walk(item, f"{path}.{key}" if path else str(key), depth + 1)
            return out
        if isinstance(value, list):
            return [walk(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
        return value

    clean = walk(doc, "", 0)
    return problems, clean


def submit_job(session: Session, user: User, spec_doc: Any, priority: int = 0, idempotency_key: str | None = None,
               body: Any = None, limits: dict[str, int] | None = None, budget: quota.Budget | None = None
               ) -> tuple[Job, bool]:
    """Create a queued job; return (job, created). With an Idempotency-Key seen before,
    the same body returns the original job (created False), another body is Invalid.
    QuotaExceeded when the checkpoints it may keep do not fit the user's quota."""
    if idempotency_key is not None and (not 0 < len(idempotency_key) <= 255 or bad_text(idempotency_key)):
        raise Invalid("Idempotency-Key must be 1 to 255 characters of text",
                      [FieldProblem("Idempotency-Key", "must be 1 to 255 characters of text")])
    unsafe, _ = unsafe_json_values(body if body is not None else spec_doc)
    if unsafe:
        # such a body can be neither hashed nor stored: report it with every other problem
        validate_job_spec(session, user, spec_doc, limits, budget)
        raise Invalid("the request holds values that cannot be stored", unsafe)
    digest = request_hash(body if body is not None else spec_doc)
    if idempotency_key is not None:
        prior = session.scalar(select(Job).where(Job.owner_id == user.id, Job.idempotency_key == idempotency_key))
        if prior is not None:
            if prior.request_hash != digest:
                raise Invalid("this Idempotency-Key was already used with a different request body",
                              [FieldProblem("Idempotency-Key", "reused with a different body")])
            return prior, False
    spec, dataset = validate_job_spec(session, user, spec_doc, limits, budget)
    budget = budget or quota.Budget()
    quota.check_quota(session, user, budget.user_quota_bytes, quota.job_footprint(spec, dataset).storage_bytes,
                      "spec.retention", "this job's checkpoints")
    job = Job(owner_id=user.id, name=spec.get("name"), spec=spec, status=JobStatus.QUEUED, priority=priority,
              dataset_id=dataset.id if dataset else None, max_restarts=spec["max_restarts"],
              idempotency_key=idempotency_key, request_hash=digest, created_at=utcnow())
    session.add(job)
    try:
        session.flush()
    except IntegrityError:
        # the same key raced in from a concurrent request
        session.rollback()
        raise Conflict("a request with this Idempotency-Key is being processed; retry shortly") from None
    add_event(session, job, "state", "queued")
    session.commit()
    return job, True


def encode_page_token(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": last_id}).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))["before"]
        # bounded: SQLite cannot bind integers beyond 64 bits
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
            raise ValueError
        return value
    except (ValueError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise Invalid("page_token is not one this server issued",
                      [FieldProblem("page_token", "invalid page token")]) from None


def list_jobs(session: Session, user: User, statuses: list[str] | None = None,
              created_after: datetime | None = None, created_before: datetime | None = None,
              limit: int = 50, page_token: str | None = None) -> tuple[list[Job], str | None]:
    """Newest first. Filters are applied in SQL before the page limit; the page token
    is opaque (a keyset position), stable while jobs are added."""
    for s in statuses or []:
        if s not in tuple(JobStatus):
            raise Invalid(f"unknown status {s!r}",
                          [FieldProblem("status", f"must be one of {', '.join(JobStatus)}")])
    limit = max(1, min(limit, MAX_PAGE))
    stmt = _visible(select(Job), user)
    if statuses:
        stmt = stmt.where(Job.status.in_(statuses))
    if created_after is not None:
        stmt = stmt.where(Job.created_at >= created_after)
    if created_before is not None:
        stmt = stmt.where(Job.created_at < created_before)
    return newest_first(session, stmt, Job.id, limit, page_token)


def newest_first(session: Session, stmt: Any, id_column: Any, limit: int, page_token: str | None
                 ) -> tuple[list[Any], str | None]:
    """One page of ``stmt`` newest (highest id) first, and the opaque keyset token of the
    next page (None at the end): stable while rows are added."""
    if page_token:
        stmt = stmt.where(id_column < decode_page_token(page_token))
    rows = list(session.scalars(stmt.order_by(id_column.desc()).limit(limit + 1)))
    next_token = encode_page_token(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_token


def cancel_job(session: Session, user: User, job_id: int) -> Job:
    """A queued job is cancelled at once; a running one is flagged and its worker stops
    within a step; a finished job cannot be cancelled (Conflict)."""
    job = get_job(session, user, job_id)
    lifecycle.cancel(session, job_id)
    session.refresh(job)
    return job


def job_artifact_dir(artifact_root: Path, job_id: int) -> Path:
    return artifact_root / "jobs" / str(job_id)


def delete_job(session: Session, user: User, job_id: int, artifact_root: Path) -> None:
    """Delete a finished job, its rows and its artifact folder."""
    job = get_job(session, user, job_id)
    if not job.finished:
        raise Conflict(f"job {job_id} is {job.status}; cancel it and wait for it to finish before deleting it")
    session.delete(job)
    session.commit()
    shutil.rmtree(job_artifact_dir(artifact_root, job_id), ignore_errors=True)


def pending_enqueue(session: Session, limit: int = 500) -> list[Job]:
    """Queued jobs the broker has not accepted yet (it was down at submit time)."""
    stmt = (select(Job).where(Job.status == JobStatus.QUEUED, Job.enqueued_at.is_(None))
            .order_by(Job.priority.desc(), Job.id).limit(limit))
    return list(session.scalars(stmt))


def mark_enqueued(session: Session, job: Job) -> None:
    """Record that the broker took the job; only while it is still queued (a worker may
    have claimed it already)."""
    session.execute(update(Job).where(Job.id == job.id, Job.status == JobStatus.QUEUED)
                    .values(enqueued_at=utcnow()).execution_options(synchronize_session=False))
    session.commit()

