"""Data sets for the exercises: synthetic toys, scikit-learn's bundled files, user files.

Every loader returns a :class:`Dataset` with features ``X`` of shape
(n_samples, n_features) in float64 and targets ``y`` that are int64 class labels
0..k-1 of shape (n_samples,) for classification, or float64 of shape
(n_samples, n_targets) for regression. :meth:`Dataset.targets` turns ``y`` into the
matrix an output layer of a given width is trained against.

Three kinds of names are understood by :func:`load_dataset`:

* synthetic sets, generated from ``np.random.default_rng(seed)``: ``xor``, ``and``,
  ``or``, ``moons``, ``circles``, ``spirals``, ``blobs``, ``sine``;
* the real data sets scikit-learn ships as files inside its package: ``digits``,
  ``iris``, ``wine``, ``breast_cancer``, ``diabetes``. They are parsed here with
  NumPy from the installed package folder, so scikit-learn must be installed but is
  never imported;
* user files: ``csv`` and ``npz`` with ``path=`` (see :func:`load_file`).

NPZ files are always read with ``allow_pickle=False``: a file holding object arrays
is refused rather than unpickled, because unpickling runs arbitrary code.

Modules: :mod:`.types` (:class:`Dataset`, :class:`DatasetError`), :mod:`.synthetic`,
:mod:`.bundled` (scikit-learn's files), :mod:`.files` (CSV/NPZ) with
:mod:`.inference` (task inference). Each of the three kinds keeps the registry of its
names (``GENERATORS``, ``BUNDLED``, ``FORMATS``); the name lists below derive from them.
"""
from __future__ import annotations

import os

from .bundled import BUNDLED, SHAPES
from .files import FORMATS, FileLimits, load_file, load_path
from .inference import MAX_INFERRED_CLASSES
from .synthetic import GENERATORS, generate
from .types import TASKS, Dataset, DatasetError, refuse

__all__ = ["DATASET_NAMES", "FILE_NAMES", "MAX_INFERRED_CLASSES", "REAL_NAMES", "SYNTHETIC_NAMES", "TASKS",
           "Dataset", "DatasetError", "FileLimits", "dataset_shape", "load_dataset", "load_file"]

SYNTHETIC_NAMES: tuple[str, ...] = tuple(sorted(GENERATORS))
REAL_NAMES: tuple[str, ...] = tuple(sorted(BUNDLED))
FILE_NAMES: tuple[str, ...] = tuple(sorted(set(FORMATS.values())))
DATASET_NAMES: list[str] = sorted(SYNTHETIC_NAMES + REAL_NAMES + FILE_NAMES)


def load_dataset(name: str, *, n_samples: int | None = None, noise: float | None = None,
                 seed: int = 0, path: str | os.PathLike | None = None,
                 target: int | str | None = None, task: str | None = None,
                 limits: FileLimits | None = None) -> Dataset:
    """Load a data set by name.

    Parameters
    ----------
    name : str
        One of :data:`DATASET_NAMES`.
    n_samples : int, optional
        Synthetic sets only. Defaults: moons, circles, sine 200; blobs 300; spirals 400.
        ``xor``, ``and``, ``or`` give their 4 truth-table rows (00, 01, 10, 11) by
        default; with ``n_samples`` (>= 4) those rows are repeated cyclically in that
        order.
    noise : float, optional
        Synthetic sets only: standard deviation of Gaussian noise. Defaults: xor, and,
        or 0 (the exact truth table; noise is added to X only, labels stay exact);
        moons 0.1; circles 0.05; spirals 0.05; sine 0.1 (added to y); blobs 1.0 (the
        cluster standard deviation).
    seed : int, default 0
        Seed of the generator for synthetic sets; ignored by real sets and files,
        which are fixed.
    path : str or path-like, optional
        Required for ``csv`` and ``npz``, refused otherwise.
    target, task, limits
        For ``csv``/``npz`` only; see :func:`load_file`.

    Returns
    -------
    Dataset
        Synthetic sets: ``moons``, ``circles``, ``spirals``, ``xor``, ``and``, ``or`` are
        binary with X (n, 2); ``blobs`` is 3-class with X (n, 2); ``sine`` is
        regression with X (n, 1) and y (n, 1). Two-class sets are balanced: n // 2
        samples of class 0 and the rest of class 1 (blobs: sizes differ by at most 1).

        Real sets, identical to scikit-learn's ``load_*()`` with default arguments:
        digits (1797, 64) 10 classes, iris (150, 4) 3, wine (178, 13) 3,
        breast_cancer (569, 30) 2, diabetes (442, 10) regression with y (442, 1).
        Diabetes features are therefore scikit-learn's default ``scaled=True``
        version: each column mean-centred and divided by its standard deviation times
        sqrt(n_samples); the target is the raw disease-progression measure.
    """
    if not isinstance(name, str) or name not in DATASET_NAMES:
        raise DatasetError("name", f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    if name in FORMATS.values():
        refuse(name, " (a user file)", n_samples=n_samples, noise=noise)
        if path is None:
            raise DatasetError("path", f"dataset {name!r} needs `path`, the file to read")
        return load_path(path, name, target=target, task=task, limits=limits)
    refuse(name, " (only csv and npz read files)", path=path, target=target, task=task)
    if name in BUNDLED:
        refuse(name, " (a fixed data set)", n_samples=n_samples, noise=noise)
        return BUNDLED[name]()
    return generate(name, n_samples, noise, seed)


def dataset_shape(name: str, n_samples: int | None = None) -> tuple[int, int]:
    """``(n_samples, n_features)`` of a synthetic or scikit-learn set, without drawing
    or reading it (a job is sized before it runs); ``n_samples`` as for :func:`load_dataset`."""
    if name in SHAPES:
        return SHAPES[name]
    if name not in GENERATORS:
        raise DatasetError("name", f"dataset {name!r} has no fixed shape; known: {', '.join(sorted(GENERATORS))}, "
                                   f"{', '.join(sorted(SHAPES))}")
    g = GENERATORS[name]
    return (n_samples or g.default_n or 4), g.n_features
