"""The :class:`Dataset` every loader returns, the error they raise, and helpers they share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..registry import FieldError, check_number

TASKS = ("binary", "multiclass", "regression")


class DatasetError(FieldError):
    """A data set that cannot be loaded, and which input is to blame.

    ``field`` is ``"file"`` when the file (its path, format or contents) is the
    problem, ``"target"`` when the ``target`` argument names no usable column, and
    otherwise the keyword argument that is wrong (``"task"``, ``"path"``,
    ``"n_samples"``...).
    """


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features and targets of one data set.

    ``eq=False`` keeps identity comparison and hashing: the generated field-wise
    ``__eq__`` would compare arrays elementwise and fail.

    Attributes
    ----------
    name : str
        Data set name (the file's base name for user files).
    X : ndarray of shape (n_samples, n_features), float64
        Features.
    y : ndarray
        Classification: int64 labels 0..k-1 of shape (n_samples,).
        Regression: float64 of shape (n_samples, n_targets).
    task : {"binary", "multiclass", "regression"}
    n_classes : int or None
        k for classification, None for regression.
    feature_names : tuple of str, optional
        One name per column of ``X``.
    target_names : tuple of str, optional
        Class names (label i is ``target_names[i]``) or regression target names.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    task: str
    n_classes: int | None
    feature_names: tuple[str, ...] | None = None
    target_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Catch inconsistent hand-built data sets here rather than deep in training.
        X, y = self.X, self.y
        if self.task not in TASKS:
            raise ValueError(f"`task` must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not isinstance(X, np.ndarray) or X.ndim != 2 or X.dtype != np.float64:
            raise ValueError(f"`X` must be a 2-D float64 array, got {describe(X)}")
        if not isinstance(y, np.ndarray) or y.shape[:1] != X.shape[:1]:
            raise ValueError(
                f"`y` must be an array with one row per sample ({X.shape[0]}), got {describe(y)}"
            )
        if self.task == "regression":
            if self.n_classes is not None:
                raise ValueError(f"`n_classes` must be None for regression, got {self.n_classes!r}")
            if y.ndim != 2 or y.dtype != np.float64:
                raise ValueError(
                    f"regression `y` must be a 2-D float64 array (n_samples, n_targets), got {describe(y)}"
                )
        else:
            k = self.n_classes
            if isinstance(k, bool) or not isinstance(k, int) or k < 2:
                raise ValueError(f"`n_classes` must be an integer >= 2 for {self.task}, got {k!r}")
            if (self.task == "binary") != (k == 2):
                raise ValueError(f"task {self.task!r} does not fit n_classes={k}")
            if y.ndim != 1 or y.dtype != np.int64:
                raise ValueError(f"class labels `y` must be a 1-D int64 array, got {describe(y)}")
            if y.size and (y.min() < 0 or y.max() >= k):
                raise ValueError(f"class labels must lie in 0..{k - 1}, got {y.min()}..{y.max()}")
        if self.feature_names is not None and len(self.feature_names) != X.shape[1]:
            raise ValueError(
                f"{len(self.feature_names)} feature names for {X.shape[1]} features"
            )

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def targets(self, output_units: int, dtype: Any = np.float64) -> np.ndarray:
        """Target matrix for an output layer of ``output_units`` units.

        Parameters
        ----------
        output_units : int
            Width of the network's output layer.
        dtype : numpy dtype, default float64

        Returns
        -------
        ndarray of shape (n_samples, output_units)
            Classification with 1 unit and 2 classes: a column of 0/1 (for sigmoid).
            Classification with n_classes units: one-hot rows (for softmax).
            Regression with n_targets units: ``y`` itself.

        Raises
        ------
        ValueError
            When the layer width does not fit the data set, with the widths that would.
        """
        units = check_number("output_units", output_units, low=1, integer=True)
        n = self.n_samples
        if self.task == "regression":
            t = self.y.shape[1]
            if units != t:
                raise ValueError(
                    f"dataset {self.name!r} has {plural(t, 'regression target')} but the output "
                    f"layer has {plural(units, 'unit')}; use {plural(t, 'unit')} "
                    f"(usually with the identity activation)"
                )
            return self.y.astype(dtype, copy=True)
        k = self.n_classes
        assert k is not None
        if units == 1 and k == 2:
            return self.y.astype(dtype).reshape(n, 1)
        if units == k:
            onehot = np.zeros((n, k), dtype=dtype)
            onehot[np.arange(n), self.y] = 1
            return onehot
        if k == 2:
            hint = "use 1 unit with sigmoid, or 2 units with softmax"
        else:
            hint = f"use {k} units with softmax, or 1 unit with sigmoid for 2 classes"
        raise ValueError(
            f"dataset {self.name!r} has {k} classes but the output layer has "
            f"{plural(units, 'unit')}; {hint}"
        )


def describe(a: Any) -> str:
    if isinstance(a, np.ndarray):
        return f"shape {a.shape} dtype {a.dtype}"
    return type(a).__name__


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def refuse(name: str, why: str = "", **given: Any) -> None:
    """Raise DatasetError about the first of ``given`` that is not None: it does not apply to ``name``."""
    for key, value in given.items():
        if value is not None:
            raise DatasetError(key, f"`{key}` does not apply to dataset {name!r}{why}, got {value!r}")


def classification(name: str, X: np.ndarray, y: np.ndarray, target_names: tuple[str, ...],
                    feature_names: tuple[str, ...] | None = ("x1", "x2")) -> Dataset:
    k = len(target_names)
    return Dataset(name=name, X=np.ascontiguousarray(X, dtype=np.float64),
                   y=np.ascontiguousarray(y, dtype=np.int64),
                   task="binary" if k == 2 else "multiclass", n_classes=k,
                   feature_names=feature_names, target_names=target_names)
