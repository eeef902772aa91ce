"""The callbacks nncore ships: events for a sink, early stopping, checkpoints. The
callback protocol they implement is ``nncore.hooks``."""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import save_checkpoint
from .hooks import Callback, Outcome, StepLog, TrainerState
from .registry import check_number
from .series import better


class EventEmitter(Callback):
    """Turn training progress into plain-dict events for a sink (a printer, a JSON-lines
    stream, a metrics writer): ``{"event": "epoch", **logs}`` after every epoch and,
    with ``steps``, ``{"event": "step", ...}`` after every update."""

    def __init__(self, sink: Callable[[dict[str, Any]], None], steps: bool = False) -> None:
        self.sink = sink
        self.steps = steps
        if not steps:
            self.on_step = None  # type: ignore[assignment]

    def on_step(self, trainer: TrainerState, log: StepLog) -> None:
        self.sink({"event": "step", "step": log.step, "epoch": log.epoch, "batch": log.batch, "loss": log.loss,
                   "lr": log.lr, "samples": log.samples, "epochs": trainer.epochs})

    def on_epoch(self, trainer: TrainerState, logs: dict[str, float]) -> None:
        self.sink({"event": "epoch", **logs})


class EarlyStopping:
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs; optionally restore the best parameters at the end."""

    def __init__(self, monitor: str = "val_loss", patience: int = 10, min_delta: float = 0.0,
                 mode: str | None = None, restore_best: bool = True) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"`monitor` must be a metric name, got {monitor!r}")
        self.monitor = monitor
        self.patience = check_number("patience", patience, low=0, integer=True)
        self.min_delta = check_number("min_delta", min_delta, low=0)
        if mode is None:
            mode = better(monitor)
        if mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', got {mode!r}")
        self.mode = mode
        if not isinstance(restore_best, bool):
            raise ValueError(f"`restore_best` must be true or false, got {restore_best!r}")
        self.restore_best = restore_best
        self.best, self.best_epoch, self.wait = math.inf, -1, 0
        self.best_params: np.ndarray | None = None

    def get_config(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "patience": self.patience, "min_delta": self.min_delta,
                "mode": self.mode, "restore_best": self.restore_best}

    def update(self, logs: dict[str, float], epoch: int, params: np.ndarray) -> bool:
        """Record an epoch's metrics; True when training should stop."""
        if self.monitor not in logs:
            raise ValueError(f"early_stopping monitors {self.monitor!r}, which is not among the metrics "
                             f"({', '.join(sorted(logs))})")
        value = logs[self.monitor] if self.mode == "min" else -logs[self.monitor]
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                if self.best_params is None:
                    self.best_params = params.copy()
                else:
                    np.copyto(self.best_params, params)
            return False
        self.wait += 1
        return self.wait > self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any], best_params: np.ndarray | None) -> None:
        self.best, self.best_epoch, self.wait = float(state["best"]), int(state["best_epoch"]), int(state["wait"])
        self.best_params = None if best_params is None else np.array(best_params, copy=True)


class Checkpointer(Callback):
    """Write ``epoch-NNNNN{name_suffix}.npz`` every ``every`` epochs and at the end,
    keeping the last ``keep_last`` files (0 keeps all) and, with ``keep_best``, the
    best one by ``best_metric``. ``extra`` goes into every checkpoint (the spec, the
    standardiser, ...).

    Everything that decides best and retention (the best value and epoch, which files
    are kept) is decided *before* a file is written and stored in it under
    ``checkpointer``, so a run resumed from any checkpoint (:meth:`load_state_dict`)
    keeps and marks exactly the files an uninterrupted run would.

    ``on_save(trainer, epoch, path, sha256)`` is called after each file is written;
    ``on_delete(epoch, path)``, when given, takes over deleting a file retention drops
    (whoever lists checkpoints elsewhere removes the listing first, then the file).
    """

    def __init__(self, directory: str | os.PathLike, every: int = 1, keep_last: int = 0,
                 extra: dict[str, Any] | None = None,
                 on_save: Callable[[TrainerState, int, Path, str], None] | None = None,
                 on_delete: Callable[[int, Path], None] | None = None, best_metric: str | None = None,
                 keep_best: bool = True, name_suffix: str = "") -> None:
        self.directory = Path(directory)
        self.every = check_number("checkpoint_every", every, low=0, integer=True)
        self.keep_last = check_number("keep_last", keep_last, low=0, integer=True)
        self.extra = dict(extra or {})
        self.on_save, self.on_delete = on_save, on_delete
        self.best_metric, self.keep_best = best_metric, keep_best
        # files of different attempts of one job never share a name (see the worker)
        self.name_suffix = name_suffix
        self.best_epoch: int | None = None
        self._best_value = math.inf
        self.last_is_best = False
        # the kept files, oldest first: (epoch, path, sha256; "" for one an earlier run wrote)
        self.written: list[tuple[int, Path, str]] = []

    def _key(self, trainer: TrainerState) -> float | None:
        value = trainer.history[-1].get(self.best_metric) if (self.best_metric and trainer.history) else None
        if value is None or not math.isfinite(value):
            return None
        return -value if better(self.best_metric) == "max" else value

    def save(self, trainer: TrainerState) -> Path:
        epoch = trainer.epoch
        if self.written and self.written[-1][0] == epoch:
            return self.written[-1][1]
        path = self.directory / f"epoch-{epoch:05d}{self.name_suffix}.npz"
        key = self._key(trainer)
        is_best = key is not None and key < self._best_value
        best_value, best_epoch = (key, epoch) if is_best else (self._best_value, self.best_epoch)
        kept = [*self.written, (epoch, path, "")]
        dropped = []
        if self.keep_last:
            dropped = [item for item in kept[:-self.keep_last] if not (self.keep_best and item[0] == best_epoch)]
            kept = [item for item in kept if item not in dropped]
        own = {"best_value": None if math.isinf(best_value) else best_value, "best_epoch": best_epoch,
               "kept": [[e, p.name] for e, p, _ in kept]}
        digest = save_checkpoint(path, {**trainer.state_dict(), **self.extra, "checkpointer": own})
        self._best_value, self.best_epoch, self.last_is_best = best_value, best_epoch, is_best
        self.written = [*kept[:-1], (epoch, path, digest)]
        if self.on_save is not None:
            self.on_save(trainer, epoch, path, digest)
        for old_epoch, old_path, _ in dropped:
            if self.on_delete is not None:
                self.on_delete(old_epoch, old_path)
            else:
                old_path.unlink(missing_ok=True)
        return path

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Continue from the ``checkpointer`` entry of a checkpoint (None: from nothing)."""
        state = state or {}
        best = state.get("best_value")
        self._best_value = math.inf if best is None else float(best)
        self.best_epoch = state.get("best_epoch")
        self.written = [(int(e), self.directory / name, "") for e, name in state.get("kept", [])]
        self.last_is_best = False

    @property
    def kept_epochs(self) -> set[int]:
        return {e for e, _, _ in self.written}

    @property
    def latest(self) -> Path | None:
        return self.written[-1][1] if self.written else None

    def on_epoch(self, trainer, logs):
        if self.every and trainer.epoch % self.every == 0:
            self.save(trainer)

    def on_train_end(self, trainer, result):
        if result.status is not Outcome.DIVERGED:
            self.save(trainer)
