"""Predictions from a job's checkpoints, with the loaded models kept in a small LRU."""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from nncore.checkpoint import ChecksumMismatch
from nncore.job import Model
from nncore.metrics import predicted_labels

from .errors import Conflict, FieldProblem, Invalid
from .jobs import get_job
from .models import Checkpoint, User
from .results import checkpoint_file

CLASSIFICATION_TASKS = ("binary", "multiclass")


@dataclass
class LoadedModel:
    model: Model
    #: nncore networks reuse their forward buffers between calls, so one predict at a time
    lock: threading.Lock


class ModelCache:
    """Models loaded from checkpoint files, by (path, recorded sha256, best), each with
    the file's identity when it was verified (inode, size, mtime): a file changed on
    disk since is verified again, and refused, on its next use (a stat per request, not
    a hash)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._models: OrderedDict[tuple[str, str, bool], tuple[tuple[int, int, int], LoadedModel]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, sha256: str, best: bool = False) -> LoadedModel:
        key = (str(path), sha256, best)
        try:
            st = path.stat()
        except OSError:
            raise Conflict(f"the checkpoint file {path.name} is missing from the artifact store") from None
        identity = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            cached = self._models.get(key)
            if cached is not None and cached[0] == identity:
                self._models.move_to_end(key)
                return cached[1]
        # load outside the lock: a large checkpoint must not hold up other requests
        try:
            loaded = LoadedModel(Model.load(path, best=best, sha256=sha256), threading.Lock())
        except ChecksumMismatch:
            with self._lock:
                self._models.pop(key, None)
            raise Conflict(f"the checkpoint file {path.name} does not match its recorded sha256; it was changed "
                           "after it was recorded") from None
        except (ValueError, KeyError) as exc:
            raise Conflict(f"the checkpoint file {path.name} cannot be loaded: {exc}") from None
        with self._lock:
            current = self._models.get(key)
            if current is not None and current[0] == identity:
                loaded = current[1]  # another request loaded the same file meanwhile
            else:
                self._models[key] = (identity, loaded)
            self._models.move_to_end(key)
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return loaded


@dataclass
class Prediction:
    outputs: np.ndarray
    #: class labels 0..k-1 for classification tasks, else None
    labels: np.ndarray | None
    checkpoint: Checkpoint
    #: whether early stopping's best parameters were used
    best_params: bool


def choose_checkpoint(session: Session, job_id: int, which: str | int) -> tuple[Checkpoint, bool]:
    """The checkpoint ``which`` names ("latest", "best" or an epoch) and whether to load
    early stopping's best parameters from it. "best" is the checkpoint marked best, or
    else the latest one with the best parameters it carries (if any)."""
    rows = list(session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.epoch)))
    if not rows:
        raise Conflict(f"job {job_id} has no checkpoint yet; predictions need one (the first is written after "
                       "checkpoint_every epochs)")
    if which == "latest":
        return rows[-1], False
    if which == "best":
        marked = [r for r in rows if r.is_best]
        return (marked[-1], False) if marked else (rows[-1], True)
    for row in rows:
        if row.epoch == which:
            return row, False
    epochs = ", ".join(str(r.epoch) for r in rows[-10:])
    raise Invalid(f"job {job_id} has no checkpoint of epoch {which}", [FieldProblem(
        "checkpoint", f"no checkpoint of epoch {which}; use 'latest', 'best' or one of the epochs "
                      f"{'..., ' if len(rows) > 10 else ''}{epochs}")])


def predict(session: Session, user: User, job_id: int, inputs: Sequence[Sequence[float]], which: str | int,
            max_rows: int, models: ModelCache) -> Prediction:
    """Outputs of the job's checkpoint ``which`` for ``inputs`` (raw, unstandardised
    rows); Invalid naming the row (``inputs[3]``) or cell (``inputs[3][1]``) at fault."""
    get_job(session, user, job_id)
    if not inputs:
        raise Invalid("inputs is empty", [FieldProblem("inputs", "must hold at least one row")])
    if len(inputs) > max_rows:
        raise Invalid(f"{len(inputs)} rows is more than one call accepts", [FieldProblem(
            "inputs", f"at most {max_rows} rows per call, got {len(inputs)}; split them over several calls")])
    checkpoint, best = choose_checkpoint(session, job_id, which)
    loaded = models.get(checkpoint_file(checkpoint), checkpoint.sha256, best)
    X = _matrix(inputs, loaded.model.net.input_dim)
    with loaded.lock:
        outputs = loaded.model.predict(X)
    labels = predicted_labels(outputs) if loaded.model.task in CLASSIFICATION_TASKS else None
    return Prediction(outputs, labels, checkpoint, best)


def _matrix(inputs: Sequence[Sequence[float]], width: int) -> np.ndarray:
    problems: list[FieldProblem] = []
    for i, row in enumerate(inputs):
        if len(row) != width:
            problems.append(FieldProblem(f"inputs[{i}]", f"has {len(row)} values but the model takes {width} "
                                                         "features"))
        else:
            problems += [FieldProblem(f"inputs[{i}][{j}]", f"must be a finite number, got {v!r}")
                         for j, v in enumerate(row) if not math.isfinite(v)]
        if len(problems) >= 10:
            break
    if problems:
        raise Invalid(f"inputs must be rows of {width} finite numbers", problems)
    return np.array(inputs, dtype=np.float64)
