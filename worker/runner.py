"""Running one attempt of a job: claim it, train it, write results back, end it.

Every state change is a transition of ``service.store.lifecycle``; every write of the
attempt is fenced by its lease (``worker.attempt``), so an attempt that lost its job
(its worker froze past the lease, and another worker took over) writes nothing and
stops itself. The attempt resumes from the job's latest checkpoint, after making the
checkpoint rows and files agree with it (what an earlier attempt left behind when it
died is removed), so a resumed job ends with the same parameters, best checkpoint
and kept checkpoints as one never interrupted. A failed attempt is retried from the
last checkpoint until ``max_restarts`` is spent.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from nncore.checkpoint import load_checkpoint
from nncore.job import Job as TrainJob
from nncore.job import summarize
from service.shared.queue import Enqueuer, enqueue
from service.shared.settings import Settings, raw_steps_for
from service.store import lifecycle
from service.store.datasets import parse_target
from service.store.db import make_engine, make_sessionmaker
from service.store.jobs import job_artifact_dir
from service.store.lifecycle import LeaseLost
from service.store.models import Checkpoint, Dataset, Job
from service.store.results import cut_metrics, public_result, reconcile_checkpoints
from service.store.status import JobStatus, status_for
from service.store.workers import lease_owner

from .attempt import Attempt, Reporter

log = logging.getLogger(__name__)

#: exceptions no retry can help: the spec or its data is wrong
PERMANENT = (ValueError, NotImplementedError, FileNotFoundError)

_engines: dict[str, tuple[Engine, sessionmaker[Session]]] = {}


def reset_engines() -> None:
    """Forget engines inherited through fork (called in each new pool child)."""
    for engine, _ in _engines.values():
        engine.dispose(close=False)
    _engines.clear()


def sessions_for(url: str) -> sessionmaker[Session]:
    if url not in _engines:
        # a write transaction takes milliseconds; one idle for seconds belongs to a frozen process
        engine = make_engine(url, pool_pre_ping=True, idle_in_transaction_s=5.0)
        _engines[url] = (engine, make_sessionmaker(engine))
    return _engines[url][1]


def worker_identity() -> str:
    """The lease owner name of this process: ``<worker name>/<pid>`` (see worker.presence)."""
    name = os.environ.get("TRAINYARD_WORKER_NAME") or f"{socket.gethostname()}:{os.getppid()}"
    return lease_owner(name, os.getpid())


def checkpoint_dir(settings: Settings, job_id: int) -> Path:
    return job_artifact_dir(settings.artifact_dir, job_id) / "checkpoints"


# -- checkpoints --------------------------------------------------------------------------------

def _checkpoint_hooks(attempt: Attempt, train: list[TrainJob], reporter: list[Reporter]) -> dict[str, Any]:
    """The Checkpointer's options in the worker: its files' names, and rows for them
    (listed with the metrics up to their step)."""
    def on_save(trainer: Any, epoch: int, path: Path, digest: str) -> None:
        ckpt = train[0].checkpointer
        metrics = dict(trainer.history[-1]) if trainer.history else {}
        reporter[0].checkpoint(epoch, trainer.step, path, digest, metrics, bool(ckpt and ckpt.last_is_best))

    def on_delete(epoch: int, path: Path) -> None:
        reporter[0].drop_checkpoint(epoch, path)

    return {"on_save": on_save, "on_delete": on_delete, "name_suffix": attempt.checkpoint_suffix}


def _resume_point(session: Session, job_id: int
                  ) -> tuple[Checkpoint | None, dict[str, Any] | None, list[str]]:
    """The newest listed checkpoint whose file is there and is the one recorded (its
    sha256), its state, and why each newer one was passed over."""
    skipped = []
    for row in session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)
                               .order_by(Checkpoint.epoch.desc())):
        if Path(row.path).is_file():
            try:
                return row, load_checkpoint(row.path, row.sha256 or None), skipped
            except (ValueError, OSError) as exc:
                log.warning("job %s: checkpoint %s is unusable (%s); trying an older one", job_id, row.path, exc)
                skipped.append(f"skipped {Path(row.path).name}: {exc}")
    return None, None, skipped


# -- one attempt ---------------------------------------------------------------------------------

def run_job(job_id: int, settings: Settings, worker: str) -> str:
    """Run job ``job_id`` if this worker can claim it; return what happened (for logs).
    A database that cannot be reached for the claim raises (the task retries it)."""
    sessions = sessions_for(settings.database_url)
    with sessions() as s:
        lease = lifecycle.claim(s, job_id, worker, settings.lease_s)
        if lease is None:
            current = s.get(Job, job_id)
            why = "no such job" if current is None else (
                f"status {current.status}, attempt {current.attempts}, lease held by {current.lease_owner} until "
                f"{current.lease_expires_at}")
            log.info("dropped a delivery of job %s: %s", job_id, why)
            return f"dropped ({why})"
        job = s.get(Job, job_id, populate_existing=True)
        spec, max_restarts = job.spec, job.max_restarts
        dataset = s.get(Dataset, job.dataset_id) if job.dataset_id else None
        data_path = dataset.path if dataset else None
        data_target = parse_target(dataset.target) if dataset and dataset.target else None
    attempt = Attempt(sessions, lease, settings.lease_s).start()
    try:
        return _run_attempt(attempt, settings, spec, data_path, data_target)
    except LeaseLost as exc:
        log.warning("%s; another attempt owns the job now, this one stops without writing", exc)
        return "lease lost"
    except Exception as exc:
        return _attempt_failed(attempt, settings, max_restarts, exc)
    finally:
        attempt.stop()


def _run_attempt(attempt: Attempt, settings: Settings, spec: dict[str, Any], data_path: str | None,
                 data_target: int | str | None) -> str:
    started = time.monotonic()
    lease = attempt.lease
    out_dir = checkpoint_dir(settings, lease.job_id)
    with attempt.sessions() as s:
        resume, state, skipped = _resume_point(s, lease.job_id)
        resume_path = resume.path if resume else None
        cut_step, cut = (resume.step, resume.series_cut) if resume else (None, None)
        listed = set(s.scalars(select(Checkpoint.epoch).where(Checkpoint.job_id == lease.job_id)))
    keep = {int(e) for e, _ in state["checkpointer"]["kept"]} if state and "checkpointer" in state else None
    if state is not None and "checkpointer" not in state:
        # written before checkpoints carried their kept set: keep what is listed up to it
        keep = {e for e in listed if e <= int(state["epoch"])}
    removed = attempt.write(lambda s: reconcile_checkpoints(s, lease, out_dir, keep), "checkpoint cleanup")
    # the series as the checkpoint saw them: what an earlier attempt wrote past it goes
    attempt.write(lambda s: cut_metrics(s, lease, cut_step, cut), "metrics cut")
    raw_steps = raw_steps_for(spec, settings)
    if resume_path is not None or removed or skipped:
        note = f"resumed from {Path(resume_path).name}" if resume_path else "started afresh"
        note += f"; removed {len(removed)} checkpoint file(s) no row listed" if removed else ""
        note += "".join(f"; {why}" for why in skipped)
        attempt.write(lambda s: lifecycle.add_event(s, lease, "log", note), "event")
    if spec["distributed"]["world_size"] > 1:
        from .ranks import run_distributed

        status, error, summary = run_distributed(attempt, spec, out_dir, data_path,
                                                 data_target, resume_path, resume.sha256 if resume else None,
                                                 started, raw_steps, settings.dataset_limits)
    else:
        holder: list[TrainJob] = []
        reporters: list[Reporter] = []
        train = TrainJob(spec, out_dir=out_dir, data_path=data_path, data_target=data_target,
                         data_limits=settings.dataset_limits,
                         checkpoint_hooks=_checkpoint_hooks(attempt, holder, reporters))
        holder.append(train)
        reporter = Reporter(attempt, spec["epochs"], len(train.trainer.batch_plan(train.data.train.n)), raw_steps)
        reporters.append(reporter)
        train.trainer.callbacks.insert(0, reporter)
        try:
            if state is not None:
                train.resume(state)
            t_train = time.monotonic()
            result = train.run()
            t_trained = time.monotonic()
            reporter.flush()
        finally:
            reporter.close()
        summary = summarize(train, result, time.monotonic() - started)
        # training (with the writer thread beside it), then the last write it waits for
        summary["train_seconds"] = round(t_trained - t_train, 3)
        summary["flush_seconds"] = round(time.monotonic() - t_trained, 3)
        status = status_for(result.status)
        error = result.reason if status is JobStatus.FAILED else None
    # the result names its checkpoint by epoch, as the API does: not where the file is
    error = without_artifact_dir(error, settings) if error else error
    attempt.write(lambda s: lifecycle.finish(s, lease, status, error, public_result(summary)), "final status")
    return status.value


def without_artifact_dir(text: str, settings: Settings) -> str:
    """``text`` (a job's error, which its user reads) with the paths of the artifact
    folder made relative to it: where the server keeps its files is none of theirs."""
    folder = settings.artifact_dir
    for prefix in sorted({str(folder), str(folder.resolve())}, key=len, reverse=True):
        text = text.replace(prefix + os.sep, "").replace(prefix, ".")
    return text


def _attempt_failed(attempt: Attempt, settings: Settings, max_restarts: int, exc: Exception) -> str:
    lease = attempt.lease
    permanent = isinstance(exc, PERMANENT)
    reason = str(exc) if isinstance(exc, (ValueError, NotImplementedError)) else f"{type(exc).__name__}: {exc}"
    log.error("job %s attempt %s failed: %s", lease.job_id, lease.attempt, reason, exc_info=exc)
    reason = without_artifact_dir(reason, settings)
    try:
        status = attempt.write(lambda s: lifecycle.retry_or_fail(s, lease, reason, max_restarts, permanent),
                               "failure")
    except LeaseLost as lost:
        log.warning("%s", lost)
        return "lease lost"
    if status is JobStatus.QUEUED:
        with attempt.sessions() as s:
            enqueue(s, Enqueuer(settings.broker_url, settings.broker_timeout_s), s.get(Job, lease.job_id))
        return "retrying"
    return status.value
