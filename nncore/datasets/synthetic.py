"""Synthetic toy sets drawn from ``np.random.default_rng(seed)``: xor, and, or, moons,
circles, spirals, blobs (3 classes), sine (regression).

:data:`GENERATORS` is the registry of their names; :func:`generate` draws one.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..registry import check_number
from .types import Dataset, classification


@dataclass(frozen=True)
class SyntheticSet:
    """How to draw one synthetic set, and its defaults."""

    make: Callable[[int | None, float, np.random.Generator], Dataset]
    default_n: int | None
    default_noise: float
    min_n: int
    n_features: int = 2


def generate(name: str, n_samples: int | None, noise: float | None, seed: int) -> Dataset:
    """Draw the synthetic set ``name`` (a key of :data:`GENERATORS`); see :func:`nncore.datasets.load_dataset`."""
    seed = check_number("seed", seed, low=0, integer=True)
    rng = np.random.default_rng(seed)
    g = GENERATORS[name]
    n = g.default_n if n_samples is None else check_number("n_samples", n_samples, low=g.min_n, integer=True)
    sd = g.default_noise if noise is None else check_number("noise", noise, low=0)
    return g.make(n, sd, rng)


def _shuffled(X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # Generators emit samples class by class; shuffle so that slicing off a validation
    # split keeps both classes.
    perm = rng.permutation(len(y))
    return X[perm], y[perm]


def _add_noise(X: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    if sd > 0:
        X = X + rng.normal(0.0, sd, size=X.shape)
    return X


_TRUTH_INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


def _truth_table(name: str, labels: list[int]) -> Callable[..., Dataset]:
    def make(n: int | None, sd: float, rng: np.random.Generator) -> Dataset:
        rows = np.arange(4 if n is None else n) % 4
        X = _add_noise(_TRUTH_INPUTS[rows], sd, rng)
        y = np.array(labels, dtype=np.int64)[rows]
        return classification(name, X, y, ("0", "1"))
    return make


def _moons(n: int, sd: float, rng: np.random.Generator) -> Dataset:
    # Same construction as sklearn.datasets.make_moons: upper moon is class 0.
    n0 = n // 2
    n1 = n - n0
    t0 = np.linspace(0.0, np.pi, n0)
    t1 = np.linspace(0.0, np.pi, n1)
    X = np.vstack([np.column_stack([np.cos(t0), np.sin(t0)]),
                   np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)])])
    y = np.repeat([0, 1], [n0, n1])
    X, y = _shuffled(X, y, rng)
    return classification("moons", _add_noise(X, sd, rng), y, ("upper", "lower"))


def _circles(n: int, sd: float, rng: np.random.Generator) -> Dataset:
    # As sklearn.datasets.make_circles with factor=0.5: outer circle is class 0.
    n0 = n // 2
    n1 = n - n0
    t0 = np.linspace(0.0, 2.0 * np.pi, n0, endpoint=False)
    t1 = np.linspace(0.0, 2.0 * np.pi, n1, endpoint=False)
    X = np.vstack([np.column_stack([np.cos(t0), np.sin(t0)]),
                   0.5 * np.column_stack([np.cos(t1), np.sin(t1)])])
    y = np.repeat([0, 1], [n0, n1])
    X, y = _shuffled(X, y, rng)
    return classification("circles", _add_noise(X, sd, rng), y, ("outer", "inner"))


def _spirals(n: int, sd: float, rng: np.random.Generator) -> Dataset:
    # Two arms of 1.5 turns, the second rotated by pi; radius grows linearly to 1.
    # Radii start at 0.15 because near the centre the arms meet and the classes
    # would overlap whatever the model.
    n0 = n // 2
    sizes = (n0, n - n0)
    parts = []
    for k, m in enumerate(sizes):
        r = rng.uniform(0.15, 1.0, size=m)
        angle = 3.0 * np.pi * r + k * np.pi
        parts.append(np.column_stack([r * np.cos(angle), r * np.sin(angle)]))
    X = np.vstack(parts)
    y = np.repeat([0, 1], sizes)
    X, y = _shuffled(X, y, rng)
    return classification("spirals", _add_noise(X, sd, rng), y, ("arm_0", "arm_1"))


def _blobs(n: int, sd: float, rng: np.random.Generator) -> Dataset:
    # Centres on a circle of radius 4 (pairwise distance ~6.9) so that the default
    # std of 1 gives separable but not trivial clusters; the rotation is the first
    # draw, so the centres depend on the seed only, not on n_samples or noise.
    phase = rng.uniform(0.0, 2.0 * np.pi)
    angles = phase + 2.0 * np.pi * np.arange(3) / 3
    centres = 4.0 * np.column_stack([np.cos(angles), np.sin(angles)])
    sizes = [n // 3 + (1 if k < n % 3 else 0) for k in range(3)]
    y = np.repeat(np.arange(3), sizes)
    X = centres[y]
    X, y = _shuffled(X, y, rng)
    return classification("blobs", _add_noise(X, sd, rng), y, ("blob_0", "blob_1", "blob_2"))


def _sine(n: int, sd: float, rng: np.random.Generator) -> Dataset:
    x = rng.uniform(-np.pi, np.pi, size=(n, 1))
    y = _add_noise(np.sin(x), sd, rng)
    return Dataset(name="sine", X=x, y=y, task="regression", n_classes=None,
                   feature_names=("x",), target_names=("sin(x)",))


#: name -> generator, default n_samples (None: the 4 truth-table rows), default noise, minimum n_samples
GENERATORS: dict[str, SyntheticSet] = {
    "xor": SyntheticSet(_truth_table("xor", [0, 1, 1, 0]), None, 0.0, 4),
    "and": SyntheticSet(_truth_table("and", [0, 0, 0, 1]), None, 0.0, 4),
    "or": SyntheticSet(_truth_table("or", [0, 1, 1, 1]), None, 0.0, 4),
    "moons": SyntheticSet(_moons, 200, 0.1, 2),
    "circles": SyntheticSet(_circles, 200, 0.05, 2),
    "spirals": SyntheticSet(_spirals, 400, 0.05, 2),
    "blobs": SyntheticSet(_blobs, 300, 1.0, 3),
    "sine": SyntheticSet(_sine, 200, 0.1, 1, n_features=1),
}
