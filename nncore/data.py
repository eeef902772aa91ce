"""Preparing arrays for training (section 11): split, standardise, shuffle, batch.

Randomness is always derived from the job's seed with a fixed stream tag, so every
step is a pure function of (seed, epoch): resuming from a checkpoint or sharding
across ranks needs no generator state. Shuffling permutes indices, never the
caller's arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Stream tags keep the split, the shuffles and the training noise independent.
SPLIT_STREAM, SHUFFLE_STREAM, NOISE_STREAM = 1, 2, 3


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffle of epoch ``epoch``: a permutation of range(n), pure in (seed, epoch)."""
    return np.random.default_rng([seed, SHUFFLE_STREAM, epoch]).permutation(n)


def noise_rng(seed: int, epoch: int) -> np.random.Generator:
    """Generator for dropout/RReLU noise in epoch ``epoch``."""
    return np.random.default_rng([seed, NOISE_STREAM, epoch])


class ShardedNoise:
    """A rank's view of the global batch's noise: draws what one process would draw for
    the whole batch and keeps this rank's rows.

    Dropout masks and RReLU slopes are drawn row-major from the epoch's generator
    (:func:`noise_rng`), one array per layer per batch. A rank drawing only its own rows
    would consume the stream differently from one process, so every rank draws the
    global batch's array (``before`` rows above its slice, ``after`` below) and keeps
    its part: N ranks then train exactly as one process does, at the price of each rank
    drawing the whole batch's random numbers.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.before, self.after = rng, 0, 0

    def rows(self, before: int, after: int) -> ShardedNoise:
        self.before, self.after = before, after
        return self

    def random(self, size: tuple[int, ...] | None = None, dtype: Any = np.float64,
               out: np.ndarray | None = None) -> np.ndarray:
        """As :meth:`numpy.random.Generator.random`, for arrays of shape (rows, ...)."""
        shape = out.shape if out is not None else tuple(size)  # type: ignore[arg-type]
        full = self.rng.random((self.before + shape[0] + self.after, *shape[1:]), dtype=dtype)
        part = full[self.before:self.before + shape[0]]
        if out is None:
            return part
        out[...] = part
        return out


def batch_bounds(n: int, batch_size: int, drop_last: bool = False) -> list[tuple[int, int]]:
    """(start, stop) of each batch over n samples.

    batch_size = n is batch gradient descent, 1 is stochastic, anything between is
    mini-batch. The last partial batch is kept unless ``drop_last``.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    stops = range(batch_size, n + batch_size, batch_size)
    bounds = [(s - batch_size, min(s, n)) for s in stops]
    if drop_last and bounds and bounds[-1][1] - bounds[-1][0] < batch_size:
        bounds.pop()
    return bounds


def train_validation_split(n: int, fraction: float, seed: int,
                           labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) with ``fraction`` of the samples held out.

    With ``labels`` the split is stratified: each class keeps its proportion.
    Indices come back sorted so the data keep their order until shuffled.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"`validation_split` must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return np.arange(n), np.arange(0)
    rng = np.random.default_rng([seed, SPLIT_STREAM])
    if labels is None:
        perm = rng.permutation(n)
        n_val = max(1, int(round(n * fraction)))
        val = perm[:n_val]
    else:
        parts = []
        for cls in np.unique(labels):
            idx = np.flatnonzero(labels == cls)
            idx = idx[rng.permutation(idx.size)]
            parts.append(idx[: int(round(idx.size * fraction))])
        val = np.concatenate(parts)
        if val.size == 0:
            val = rng.permutation(n)[:1]
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    train = np.flatnonzero(mask)
    if train.size == 0:
        raise ValueError(f"`validation_split` {fraction} leaves no training samples out of {n}")
    return train, np.sort(val)


@dataclass
class Standardizer:
    """z = (x - mean) / std per feature, fitted on the training part only.

    Constant features get std 1, so they map to 0 instead of dividing by zero.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        mean = X.mean(axis=0)
        std = X.std(axis=0)
        std[std < 1e-12] = 1.0
        return cls(mean, std)

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.std

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        return Z * self.std + self.mean
