"""One attempt's hold on its job: the lease kept alive, and every write fenced by it.

:class:`Attempt` renews the lease from a heartbeat thread and watches the cancel flag;
its :meth:`Attempt.write` runs a fenced store function (``service.store.lifecycle``,
``service.store.results``), retrying while the database is unreachable for as long as
the lease may still be live, and turns a refusal into :class:`LeaseLost` — after
which this process writes nothing more for the job and stops it.

:class:`Reporter` is the training loop's side: it writes each step's figures into
preallocated NumPy columns (nothing else on the training thread) and a writer thread
sends them as series blocks in batches.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from nncore.hooks import Callback, StepLog
from nncore.series import EPOCH_POSITION, series_name
from service.store import lifecycle
from service.store.db import unreachable
from service.store.lifecycle import Lease, LeaseLost
from service.store.metrics import SeriesWriter
from service.store.models import Job
from service.store.results import Listed, Unlisted, write_outputs

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.5
METRIC_FLUSH_S = 0.5
RETRY_S = 0.5

T = TypeVar("T")


class Attempt:
    """The lease of one attempt, renewed every third of ``lease_s`` until :meth:`stop`."""

    def __init__(self, sessions: sessionmaker[Session], lease: Lease, lease_s: float) -> None:
        self.sessions, self.lease, self.lease_s = sessions, lease, lease_s
        self.cancel = threading.Event()
        self.lost = threading.Event()
        # the latest moment (monotonic) the lease can still be live: past it, retrying a
        # write through an outage is pointless (the job belongs to the reaper by then)
        self._live_until = time.monotonic() + lease_s
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"lease-{lease.job_id}")

    @property
    def job_id(self) -> int:
        return self.lease.job_id

    def start(self) -> Attempt:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._halt.set()

    def write(self, fn: Callable[[Session], T], what: str = "write") -> T:
        """``fn(session)``, a fenced store call; retried while the database is
        unreachable and the lease may be live. LeaseLost when refused or too late."""
        outage = False
        while True:
            if self.lost.is_set():
                raise LeaseLost(self.lease, "this attempt already lost it")
            try:
                with self.sessions() as s:
                    return fn(s)
            except LeaseLost:
                self.lost.set()
                raise
            except Exception as exc:
                if not unreachable(exc):
                    raise
                if time.monotonic() > self._live_until:
                    self.lost.set()
                    raise LeaseLost(self.lease, f"the database was unreachable until it expired ({what})") from exc
                if not outage:
                    log.warning("job %s: the database is unreachable (%s); retrying the %s", self.job_id,
                                type(exc).__name__, what)
                    outage = True
                time.sleep(RETRY_S)

    # -- checkpoints: the file first, then its row; on removal the row goes first -------------

    @property
    def checkpoint_suffix(self) -> str:
        """Checkpoint files of different attempts never share a name: a frozen attempt
        that wakes up can then never overwrite (or delete) a live attempt's file."""
        return f"-a{self.lease.attempt}"

    def renew(self) -> None:
        started = time.monotonic()
        with self.sessions() as s:
            self.lease, cancel = lifecycle.renew(s, self.lease, self.lease_s)
        self._live_until = started + self.lease_s
        if cancel:
            self.cancel.set()

    def _poll_cancel(self) -> None:
        with self.sessions() as s:
            if s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)):
                self.cancel.set()

    def _beat(self) -> None:
        every = self.lease_s / 3
        last = time.monotonic()
        failing = False
        while not self._halt.wait(min(CANCEL_POLL_S, every)):
            try:
                if time.monotonic() - last >= every:
                    self.renew()
                    last = time.monotonic()
                else:
                    self._poll_cancel()
                failing = False
            except LeaseLost as exc:
                log.warning("%s; stopping this attempt", exc)
                self.lost.set()
                return
            except Exception as exc:  # the database is unreachable: the next beat tries again
                if not failing:
                    log.warning("job %s: heartbeat failed (%s: %s)", self.job_id, type(exc).__name__, exc)
                failing = True


class _StepColumns:
    """Preallocated columns the training thread fills, a row a step; grown (doubled)
    only when the writer falls behind, e.g. through a database outage."""

    #: step, epoch, time, then the step series in NAMES' order
    NAMES = ("loss", "lr", "grad_norm", "samples_per_s")

    def __init__(self, rows: int = 4096) -> None:
        self.a = np.empty((rows, 3 + len(self.NAMES)))
        self.n = 0


class Reporter(Callback):
    """Step and epoch metrics and progress, written by a background thread in batches
    (every METRIC_FLUSH_S) through the attempt's fence; and the stop signals (cancel,
    a lost lease, a failed writer) checked between steps.

    The training thread only writes a row into preallocated NumPy columns; the writer
    thread takes the filled columns (a swap under a lock), hands each series to the
    attempt's :class:`SeriesWriter` and writes the blocks that changed. A checkpoint is
    listed through :meth:`checkpoint`: the writer lists it in the transaction that makes
    every point up to its step durable, so a resume from it finds no gap, while the
    training thread goes on."""

    wants_grad_norm = True

    def __init__(self, attempt: Attempt, epochs: int, steps_per_epoch: int, raw_steps: int | None = None) -> None:
        self.attempt, self.job_id = attempt, attempt.job_id
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.series = SeriesWriter(self.job_id, raw_steps)
        with attempt.sessions() as s:  # a read: the series as the resume cut left them
            self.series.load(s)
        self._cols = _StepColumns()
        self._epochs: list[dict[str, float]] = []
        #: checkpoint rows to list and to remove, each with the figures recorded before it
        self._ops: list[tuple[_StepColumns, list[dict[str, float]], Listed | Unlisted]] = []
        self._lock = threading.Lock()
        self._io = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Event()
        self._last_step_t = time.monotonic()
        self._started = time.monotonic()
        self._first: tuple[int, int] | None = None
        self._progress: tuple[int, int] | None = None
        self._written: tuple[int, int] | None = None  # the progress of the last write
        self._latest: dict[str, float] = {}
        self.error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_loop, daemon=True, name=f"metrics-{self.job_id}")
        self._writer.start()

    def on_step(self, trainer: Any, log_: StepLog) -> None:
        now = time.monotonic()
        dt, self._last_step_t = now - self._last_step_t, now
        with self._lock:
            cols = self._cols
            if cols.n == len(cols.a):
                cols.a = np.concatenate([cols.a, np.empty_like(cols.a)])
            cols.a[cols.n] = (log_.step, log_.epoch + 1, time.time(), log_.loss, log_.lr, log_.grad_norm,
                              log_.samples / dt if dt > 0 else math.nan)
            cols.n += 1
        self._progress = (log_.epoch, log_.step)
        if self._first is None:
            # where this attempt started (a resumed job does not start at 0), for the ETA
            self._first = (log_.epoch, log_.step - 1)

    def on_epoch(self, trainer: Any, logs: dict[str, float]) -> None:
        with self._lock:
            self._epochs.append({**logs, "time": time.time()})
        # the latest epoch's figures ride along with the progress, for job lists
        self._latest = {k: round(float(v), 6) for k, v in logs.items()
                        if k not in ("epoch", "step", "time", "lr", "samples_per_s")
                        and isinstance(v, (int, float)) and math.isfinite(v)}
        # no wake-up here: a write per epoch would cost fast jobs more than their training
        self._progress = (int(logs["epoch"]), int(logs["step"]))

    def _take(self) -> tuple[_StepColumns, list[dict[str, float]]]:
        """What the training thread recorded so far (call under ``_lock``): fresh columns
        take its place."""
        cols, self._cols = self._cols, _StepColumns()
        epochs, self._epochs = self._epochs, []
        return cols, epochs

    def _feed(self, cols: _StepColumns, epochs: list[dict[str, float]]) -> None:
        """Hand recorded figures to the series writer (under ``_io``)."""
        a = cols.a[:cols.n]
        if len(a):
            steps, epoch_no, times = a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2]
            for i, name in enumerate(_StepColumns.NAMES):
                values = a[:, 3 + i]
                ok = np.isfinite(values)
                if ok.all():
                    self.series.append(name, steps, epoch_no, times, values)
                elif ok.any():
                    self.series.append(name, steps[ok], epoch_no[ok], times[ok], values[ok])
        by_series: dict[str, list[tuple[int, int, float, float]]] = {}
        for logs in epochs:
            epoch, step, when = int(logs["epoch"]), int(logs["step"]), float(logs["time"])
            for key, value in logs.items():
                if key in EPOCH_POSITION or not isinstance(value, (int, float)) or not math.isfinite(value):
                    continue
                by_series.setdefault(series_name(key), []).append((step, epoch, when, float(value)))
        for name, rows in by_series.items():  # one append a series: each costs the same for 1 point or 1000
            step_, epoch_, when_, value_ = zip(*rows, strict=True)
            self.series.append(name, np.array(step_), np.array(epoch_), np.array(when_), np.array(value_))

    def _progress_doc(self) -> dict[str, Any] | None:
        if self._progress is None:
            return None
        epoch, step = self._progress
        first_epoch, first_step = self._first or (epoch, step)
        elapsed = time.monotonic() - self._started
        if self.steps_per_epoch > 1:  # by steps: an ETA within the first epoch already
            total = self.epochs * self.steps_per_epoch
            done = (step - first_step) / max(1, total - first_step)
        else:  # MPI ranks report epochs only
            done = (epoch - first_epoch) / max(1, self.epochs - first_epoch)
        eta = elapsed / done - elapsed if done > 0 else None
        return {"epoch": epoch, "step": step, "epochs": self.epochs, "steps_per_epoch": self.steps_per_epoch,
                "eta_s": round(eta, 1) if eta is not None else None, "metrics": self._latest}

    def _write(self) -> None:
        with self._io:
            with self._lock:  # one cut of both, so the figures stay in the order they came
                ops, self._ops = self._ops, []
                rest = self._take()
            changes: list[Listed | Unlisted] = []
            for cols, epochs, change in ops:
                self._feed(cols, epochs)
                # the series as of this checkpoint's step: what a resume from it starts from
                changes.append(replace(change, cut=self.series.cut()) if isinstance(change, Listed) else change)
            self._feed(*rest)
            progress = self._progress_doc()
            if not changes and not self.series.pending and (progress is None or self._progress == self._written):
                return  # nothing new (the last flush after the writer's own last write, mostly)
            lease = self.attempt.lease
            try:
                removed = self.attempt.write(lambda s: write_outputs(s, lease, self.series, changes, progress),
                                             "metrics")
            except LeaseLost:
                for c in changes:  # refused rows take their files with them
                    if isinstance(c, Listed):
                        c.path.unlink(missing_ok=True)
                raise
            self._written = self._progress
            for path in removed:
                path.unlink(missing_ok=True)

    def checkpoint(self, epoch: int, step: int, path: Path, digest: str, metrics: dict[str, Any],
                   is_best: bool) -> None:
        """List a checkpoint file the attempt wrote: the writer thread does it at its next
        write, in the transaction that writes every point recorded before this call (so
        all points up to ``step``) and the series' cut; training goes on meanwhile."""
        self._queue(Listed(epoch, step, path, digest, dict(metrics), is_best))

    def drop_checkpoint(self, epoch: int, path: Path) -> None:
        """Retention: unlist the checkpoint (after every row listed before it), then
        delete its file."""
        self._queue(Unlisted(epoch, path))

    def _queue(self, change: Listed | Unlisted) -> None:
        with self._lock:
            cols, epochs = self._take()
            self._ops.append((cols, epochs, change))

    def _write_loop(self) -> None:
        while not self._done.is_set():
            self._wake.wait(METRIC_FLUSH_S)
            self._wake.clear()
            try:
                self._write()
            except LeaseLost:
                return  # the attempt's lost flag is set: training stops at its next step
            except BaseException as exc:  # surfaced by flush() and should_stop: the job must not look fine
                self.error = exc
                return

    def flush(self) -> None:
        """Stop the writer and write what is left (call once, at the end)."""
        self._done.set()
        self._wake.set()
        self._writer.join()
        self._raise_if_failed()
        self._write()

    def close(self) -> None:
        """Stop the writer without writing (the attempt failed)."""
        self._done.set()
        self._wake.set()

    def _raise_if_failed(self) -> None:
        if self.attempt.lost.is_set():
            raise LeaseLost(self.attempt.lease, "found between two steps")
        if self.error is not None:
            raise RuntimeError(f"metrics could not be written: {type(self.error).__name__}: {self.error}") \
                from self.error

    def should_stop(self, trainer: Any) -> str | None:
        self._raise_if_failed()
        return "cancelled" if self.attempt.cancel.is_set() else None
