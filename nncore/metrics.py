"""Metrics: class predictions and correct counts (binary and multi-class) and regression errors."""
from __future__ import annotations

import numpy as np


def predicted_labels(a: np.ndarray) -> np.ndarray:
    """Class predictions from outputs: threshold 0.5 for one unit, argmax for several."""
    if a.shape[1] == 1:
        return (a[:, 0] >= 0.5).astype(np.int64)
    return a.argmax(axis=1)


def correct_count(a: np.ndarray, labels: np.ndarray) -> int:
    """Number of rows of ``a`` whose predicted class equals ``labels`` (int, shape (n,))."""
    if a.shape[1] == 1:
        return int(np.count_nonzero((a[:, 0] >= 0.5) == labels))
    return int(np.count_nonzero(a.argmax(axis=1) == labels))


def mae(a: np.ndarray, y: np.ndarray) -> float:
    return float(np.abs(a - y).mean())


def rmse(a: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(((a - y) ** 2).mean()))


def r2(a: np.ndarray, y: np.ndarray) -> float:
    r"""Coefficient of determination, averaged over outputs:
    :math:`1 - \sum (y - a)^2 / \sum (y - \bar y)^2`."""
    ss_res = ((y - a) ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    ss_tot = np.where(ss_tot == 0, 1.0, ss_tot)
    return float((1.0 - ss_res / ss_tot).mean())


def regression_metrics(a: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {"mae": mae(a, y), "rmse": rmse(a, y), "r2": r2(a, y)}
