"""Task inference for user files: is a target column class labels or a quantity?

:func:`make_dataset` decides (or checks the ``task`` given), encodes class labels as
0..k-1 in sorted order and builds the :class:`Dataset`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .types import Dataset, DatasetError

# Above this many distinct values an integer target is taken to be a quantity, not a label.
MAX_INFERRED_CLASSES = 20


def make_dataset(name: str, X: np.ndarray, y: np.ndarray, task: str | None,
                  feature_names: tuple[str, ...] | None, target_label: str | None,
                  where: str) -> Dataset:
    """Decide the task and encode y; ``y`` is (n,) or (n, t) float64, or (n,) text."""
    n = X.shape[0]
    if y.ndim == 2 and y.shape[1] == 1 and task != "regression":
        y = y[:, 0]
    if task is None:
        task = "classification" if y.dtype.kind == "U" or _looks_like_labels(y) else "regression"
    if task == "regression":
        y2 = y.reshape(n, -1)
        names = (target_label,) if target_label is not None and y2.shape[1] == 1 else None
        return Dataset(name=name, X=X, y=y2, task="regression", n_classes=None,
                       feature_names=feature_names, target_names=names)
    if y.ndim != 1:
        raise DatasetError("file", f"{where}: classification needs one label per sample, but 'y' has "
                                   f"shape {y.shape}")
    classes, labels = np.unique(y, return_inverse=True)
    k = len(classes)
    if k < 2:
        raise DatasetError("file", f"{where}: classification needs at least 2 classes, the target has {k}")
    if task == "binary" and k != 2:
        raise DatasetError("task", f"{where}: task 'binary' needs exactly 2 classes, the target has {k}")
    if task == "multiclass" and k < 3:
        raise DatasetError("task", f"{where}: task 'multiclass' needs at least 3 classes, the target "
                                   f"has {k}; use task 'binary'")
    return Dataset(name=name, X=X, y=labels.astype(np.int64).reshape(n),
                   task="binary" if k == 2 else "multiclass", n_classes=k,
                   feature_names=feature_names,
                   target_names=tuple(_label_name(c) for c in classes))


def _looks_like_labels(y: np.ndarray) -> bool:
    if y.ndim != 1 or not np.array_equal(y, np.round(y)):
        return False
    k = len(np.unique(y))
    return 2 <= k <= MAX_INFERRED_CLASSES and (k == 2 or 2 * k <= len(y))


def _label_name(value: Any) -> str:
    if isinstance(value, str):
        return str(value)  # np.str_ -> str
    v = float(value)
    return str(int(v)) if v.is_integer() else repr(v)
