"""Running one job: claim it with a lease, train it, write results back, end it.

A job is claimed with one atomic UPDATE (queued, or running with an expired lease);
a second delivery of a job whose lease is live is dropped. A heartbeat thread renews
the lease and reads the cancel flag. Training is nncore's Job, resumed from the
job's latest checkpoint if it has one (a worker died before), with callbacks that
batch metrics into SQL, record checkpoints and progress, and stop on cancel. A
failed attempt is retried from the last checkpoint up to ``max_restarts`` times.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from nncore.callbacks import Callback, StepLog
from nncore.job import Job as TrainJob
from nncore.job import summarize
from service.config import Settings
from service.queue import Enqueuer
from service.store.datasets import parse_target
from service.store.db import make_engine, make_sessionmaker
from service.store.jobs import add_event, job_artifact_dir
from service.store.models import Checkpoint, Dataset, Job, utcnow
from service.store.results import insert_metric_points, record_checkpoint
from service.store.workers import lease_owner

log = logging.getLogger(__name__)

LEASE_S = float(os.environ.get("TRAINYARD_LEASE_S", "30"))
HEARTBEAT_S = LEASE_S / 3
CANCEL_POLL_S = 0.5
METRIC_FLUSH_S = 0.5
METRIC_FLUSH_ROWS = 2000

_engines: dict[str, tuple[Engine, sessionmaker[Session]]] = {}


def reset_engines() -> None:
    """Forget engines inherited through fork (called in each new pool child)."""
    for engine, _ in _engines.values():
        engine.dispose(close=False)
    _engines.clear()


def sessions_for(url: str) -> sessionmaker[Session]:
    if url not in _engines:
        engine = make_engine(url, pool_pre_ping=True)
        _engines[url] = (engine, make_sessionmaker(engine))
    return _engines[url][1]


def worker_identity() -> str:
    """The lease owner name of this process: ``<worker name>/<pid>`` (see worker.presence)."""
    name = os.environ.get("TRAINYARD_WORKER_NAME") or f"{socket.gethostname()}:{os.getppid()}"
    return lease_owner(name, os.getpid())


# -- the lease -----------------------------------------------------------------------------

def claim(session: Session, job_id: int, worker: str, lease_s: float = LEASE_S) -> Job | None:
    """Atomically take the job if it is queued, or running with an expired lease."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.cancel_requested.is_(False),
               or_(Job.status == "queued", and_(Job.status == "running", Job.lease_expires_at < now)))
        .values(status="running", lease_owner=worker, lease_expires_at=now + timedelta(seconds=lease_s),
                attempts=Job.attempts + 1, started_at=func.coalesce(Job.started_at, now), updated_at=now)
        .execution_options(synchronize_session=False))
    session.commit()
    if result.rowcount != 1:
        return None
    return session.get(Job, job_id, populate_existing=True)


class Heartbeat(threading.Thread):
    """Renews the lease every HEARTBEAT_S and watches the cancel flag; if the lease was
    taken over (we were presumed dead), training must stop."""

    def __init__(self, sessions: sessionmaker[Session], job_id: int, worker: str) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{job_id}")
        self.sessions, self.job_id, self.worker = sessions, job_id, worker
        self.cancel = threading.Event()
        self.lost = threading.Event()
        self._halt = threading.Event()

    def beat(self, renew: bool = True) -> None:
        with self.sessions() as s:
            if renew:
                res = s.execute(update(Job).where(Job.id == self.job_id, Job.lease_owner == self.worker,
                                                  Job.status == "running")
                                .values(lease_expires_at=utcnow() + timedelta(seconds=LEASE_S))
                                .execution_options(synchronize_session=False))
                if res.rowcount != 1:
                    self.lost.set()
            cancel = s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id))
            s.commit()
        if cancel:
            self.cancel.set()

    def run(self) -> None:
        # the cancel flag is read every CANCEL_POLL_S (the training loop then stops at its
        # next step); the lease is renewed every HEARTBEAT_S
        last_renew = time.monotonic()
        while not self._halt.wait(min(CANCEL_POLL_S, HEARTBEAT_S)):
            renew = time.monotonic() - last_renew >= HEARTBEAT_S
            try:
                self.beat(renew)
                if renew:
                    last_renew = time.monotonic()
            except Exception:  # a database hiccup: try again at the next beat
                log.exception("heartbeat of job %s failed", self.job_id)

    def stop(self) -> None:
        self._halt.set()


# -- what training reports back ------------------------------------------------------------------

class Reporter(Callback):
    """Step and epoch metrics and progress, written to SQL by a background thread in
    batches (every METRIC_FLUSH_S), so the training loop only appends a tuple per step;
    and the stop signals (cancel, lost lease) checked between steps."""

    wants_grad_norm = True

    def __init__(self, sessions: sessionmaker[Session], job_id: int, heartbeat: Heartbeat, epochs: int,
                 steps_per_epoch: int) -> None:
        self.sessions, self.job_id, self.hb = sessions, job_id, heartbeat
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self._steps: list[tuple[int, int, float, float, float, float]] = []
        self._epochs: list[dict[str, float]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Event()
        self._last_step_t = time.monotonic()
        self._started = time.monotonic()
        self._first: tuple[int, int] | None = None
        self._progress: tuple[int, int] | None = None
        self._latest: dict[str, float] = {}
        self.error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_loop, daemon=True, name=f"metrics-{job_id}")
        self._writer.start()

    def on_step(self, trainer: Any, log_: StepLog) -> None:
        now = time.monotonic()
        dt, self._last_step_t = now - self._last_step_t, now
        self._steps.append((log_.step, log_.epoch + 1, log_.loss, log_.lr, log_.grad_norm,
                            log_.samples / dt if dt > 0 else math.nan))
        self._progress = (log_.epoch, log_.step)
        if self._first is None:
            # where this attempt started (a resumed job does not start at 0), for the ETA
            self._first = (log_.epoch, log_.step - 1)

    def on_epoch(self, trainer: Any, logs: dict[str, float]) -> None:
        with self._lock:
            self._epochs.append(dict(logs))
        # the latest epoch's figures ride along with the progress, for job lists
        self._latest = {k: round(float(v), 6) for k, v in logs.items()
                        if k not in ("epoch", "step", "time", "lr", "samples_per_s")
                        and isinstance(v, (int, float)) and math.isfinite(v)}
        # no wake-up here: a write per epoch would cost fast jobs more than their training
        self._progress = (int(logs["epoch"]), int(logs["step"]))

    def _rows(self, steps: list[tuple], epochs: list[dict[str, float]]) -> list[tuple[str, int, int, float]]:
        isfinite = math.isfinite
        rows = []
        for step, epoch, loss, lr, gnorm, sps in steps:
            for name, value in (("loss", loss), ("lr", lr), ("grad_norm", gnorm), ("samples_per_s", sps)):
                if isfinite(value):
                    rows.append((name, step, epoch, float(value)))
        for logs in epochs:
            epoch, step = int(logs["epoch"]), int(logs["step"])
            for name, value in logs.items():
                if name in ("epoch", "step", "time") or not isinstance(value, (int, float)) or not isfinite(value):
                    continue
                # step series and epoch series never share a name: `loss` is a batch's loss,
                # `epoch_loss` the epoch's mean, `val_loss` the validation loss
                rows.append((name if name.startswith("val_") else f"epoch_{name}", step, epoch, float(value)))
        return rows

    def _write(self) -> None:
        with self._lock:
            # swapping the lists is atomic under the lock; the loop appends to the new ones
            steps, self._steps = self._steps, []
            epochs, self._epochs = self._epochs, []
        rows = self._rows(steps, epochs)
        progress = self._progress
        with self.sessions() as s:
            if rows:
                insert_metric_points(s, self.job_id, rows)
            if progress is not None:
                epoch, step = progress
                first_epoch, first_step = self._first or (epoch, step)
                elapsed = time.monotonic() - self._started
                if self.steps_per_epoch > 1:  # by steps: an ETA within the first epoch already
                    total = self.epochs * self.steps_per_epoch
                    done = (step - first_step) / max(1, total - first_step)
                else:  # MPI ranks report epochs only
                    done = (epoch - first_epoch) / max(1, self.epochs - first_epoch)
                eta = elapsed / done - elapsed if done > 0 else None
                s.execute(update(Job).where(Job.id == self.job_id).values(
                    progress={"epoch": epoch, "step": step, "epochs": self.epochs,
                              "steps_per_epoch": self.steps_per_epoch,
                              "eta_s": round(eta, 1) if eta is not None else None, "metrics": self._latest},
                    updated_at=utcnow()).execution_options(synchronize_session=False))
                s.commit()

    def _write_loop(self) -> None:
        while not self._done.is_set():
            self._wake.wait(METRIC_FLUSH_S)
            self._wake.clear()
            try:
                self._write()
            except BaseException as exc:  # surfaced by flush(): the job must not look fine
                self.error = exc
                return

    def flush(self) -> None:
        """Stop the writer and write what is left (call once, at the end)."""
        self._done.set()
        self._wake.set()
        self._writer.join()
        if self.error is not None:
            raise self.error
        self._write()

    def close(self) -> None:
        """Stop the writer without writing (the attempt failed)."""
        self._done.set()
        self._wake.set()

    def should_stop(self, trainer: Any) -> str | None:
        if self.hb.cancel.is_set():
            return "cancelled"
        if self.hb.lost.is_set():
            return "lease lost"
        if self.error is not None:
            return "metrics could not be written"
        return None


def _checkpoint_recorder(sessions: sessionmaker[Session], job_id: int) -> dict[str, Any]:
    """Hooks that mirror the checkpointer's files as rows (and drop rows with files)."""

    def on_save(trainer: Any, epoch: int, path: Path, digest: str) -> None:
        ckpt = trainer_checkpointer(trainer)
        metrics = dict(trainer.history[-1]) if trainer.history else {}
        save_checkpoint_row(sessions, job_id, epoch, trainer.step, path, digest, metrics,
                            bool(ckpt and ckpt.last_is_best))

    def on_delete(epoch: int, path: Path) -> None:
        delete_checkpoint_row(sessions, job_id, epoch)

    return {"on_save": on_save, "on_delete": on_delete}


def trainer_checkpointer(trainer: Any) -> Any:
    from nncore.callbacks import Checkpointer

    return next((cb for cb in trainer.callbacks if isinstance(cb, Checkpointer)), None)


def save_checkpoint_row(sessions: sessionmaker[Session], job_id: int, epoch: int, step: int, path: Path,
                        digest: str, metrics: dict[str, Any], is_best: bool) -> None:
    with sessions() as s:
        record_checkpoint(s, job_id, epoch, step, str(path), digest, Path(path).stat().st_size,
                          {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)},
                          is_best)


def delete_checkpoint_row(sessions: sessionmaker[Session], job_id: int, epoch: int) -> None:
    with sessions() as s:
        row = s.scalar(select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.epoch == epoch))
        if row is not None:
            s.delete(row)
            s.commit()


# -- one attempt ---------------------------------------------------------------------------------

def run_job(job_id: int, settings: Settings, worker: str) -> str:
    """Run job ``job_id`` if this worker can claim it; return what happened (for logs)."""
    sessions = sessions_for(settings.database_url)
    with sessions() as s:
        job = claim(s, job_id, worker)
        if job is None:
            current = s.get(Job, job_id)
            why = "no such job" if current is None else (
                f"status {current.status}, lease held by {current.lease_owner} until {current.lease_expires_at}")
            log.info("dropped a delivery of job %s: %s", job_id, why)
            return f"dropped ({why})"
        add_event(s, job, "state", f"running (attempt {job.attempts}) on {worker}")
        s.commit()
        spec, attempts, max_restarts = job.spec, job.attempts, job.max_restarts
        dataset = s.get(Dataset, job.dataset_id) if job.dataset_id else None
        data_path = dataset.path if dataset else None
        data_target = parse_target(dataset.target) if dataset and dataset.target else None
        latest = s.scalar(select(Checkpoint).where(Checkpoint.job_id == job_id)
                          .order_by(Checkpoint.epoch.desc()).limit(1))
        resume_path = latest.path if latest is not None and Path(latest.path).is_file() else None

    hb = Heartbeat(sessions, job_id, worker)
    hb.start()
    started = time.monotonic()
    reporter: Reporter | None = None
    try:
        out_dir = job_artifact_dir(settings.artifact_dir, job_id) / "checkpoints"
        if resume_path is not None:
            with sessions() as s:
                add_event(s, s.get(Job, job_id), "log", f"resumed from {Path(resume_path).name}")
                s.commit()
        if spec["distributed"]["world_size"] > 1:
            from .ranks import run_distributed

            outcome = run_distributed(sessions, settings, job_id, spec, out_dir, hb, data_path, data_target,
                                      resume_path, started)
            hb.stop()
            if outcome is None:
                return "lease lost"
            status, error, summary = outcome
            _finish(sessions, job_id, worker, status, error, summary)
            return status
        train = TrainJob(spec, out_dir=out_dir, data_path=data_path, data_target=data_target,
                         checkpoint_hooks=_checkpoint_recorder(sessions, job_id))
        reporter = Reporter(sessions, job_id, hb, spec["epochs"], len(train.trainer.batch_plan(train.data.train.n)))
        train.trainer.callbacks.insert(0, reporter)
        if resume_path is not None:
            train.resume(resume_path)
        t_train = time.monotonic()
        result = train.run()
        reporter.flush()
        summary = summarize(train, result, time.monotonic() - started)
        summary["train_seconds"] = round(time.monotonic() - t_train, 3)
    except Exception as exc:
        hb.stop()
        if reporter is not None:
            reporter.close()
        return _attempt_failed(sessions, settings, job_id, worker, attempts, max_restarts, exc)
    hb.stop()
    if result.status == "stopped" and result.reason == "lease lost":
        log.warning("job %s: lease lost, another worker took it over; stopping quietly", job_id)
        return "lease lost"
    if result.status == "stopped" and result.reason == "cancelled":
        status, error = "cancelled", None
    elif result.status in ("completed", "early_stopped"):
        status, error = "succeeded", None
    else:
        status, error = "failed", result.reason
    _finish(sessions, job_id, worker, status, error, summary)
    return status


def _finish(sessions: sessionmaker[Session], job_id: int, worker: str, status: str, error: str | None,
            summary: dict[str, Any] | None) -> None:
    with sessions() as s:
        job = s.get(Job, job_id)
        job.status, job.error, job.result = status, error, summary
        job.finished_at, job.lease_owner, job.lease_expires_at = utcnow(), None, None
        add_event(s, job, "state", status + (f": {error}" if error else ""))
        s.commit()


def _attempt_failed(sessions: sessionmaker[Session], settings: Settings, job_id: int, worker: str,
                    attempts: int, max_restarts: int, exc: Exception) -> str:
    reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, (ValueError, NotImplementedError)) else str(exc)
    log.exception("job %s attempt %s failed", job_id, attempts)
    permanent = isinstance(exc, (ValueError, NotImplementedError, FileNotFoundError))
    if permanent or attempts > max_restarts:
        _finish(sessions, job_id, worker, "failed", reason, None)
        return "failed"
    with sessions() as s:
        job = s.get(Job, job_id)
        job.status, job.lease_owner, job.lease_expires_at, job.enqueued_at = "queued", None, None, None
        add_event(s, job, "error", f"attempt {attempts} failed ({reason}); retrying from the last checkpoint")
        s.commit()
        from service.queue import enqueue

        enqueue(s, Enqueuer(settings.broker_url, settings.broker_timeout_s), job)
    return "retrying"
