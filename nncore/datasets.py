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
"""
from __future__ import annotations

import csv
import gzip
import importlib.util
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .registry import check_number

TASKS = ("binary", "multiclass", "regression")
SYNTHETIC_NAMES = ("and", "blobs", "circles", "moons", "or", "sine", "spirals", "xor")
REAL_NAMES = ("breast_cancer", "diabetes", "digits", "iris", "wine")
FILE_NAMES = ("csv", "npz")
DATASET_NAMES: list[str] = sorted(SYNTHETIC_NAMES + REAL_NAMES + FILE_NAMES)

# Above this many distinct values an integer target is taken to be a quantity, not a label.
MAX_INFERRED_CLASSES = 20


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
            raise ValueError(f"`X` must be a 2-D float64 array, got {_describe(X)}")
        if not isinstance(y, np.ndarray) or y.shape[:1] != X.shape[:1]:
            raise ValueError(
                f"`y` must be an array with one row per sample ({X.shape[0]}), got {_describe(y)}"
            )
        if self.task == "regression":
            if self.n_classes is not None:
                raise ValueError(f"`n_classes` must be None for regression, got {self.n_classes!r}")
            if y.ndim != 2 or y.dtype != np.float64:
                raise ValueError(
                    f"regression `y` must be a 2-D float64 array (n_samples, n_targets), got {_describe(y)}"
                )
        else:
            k = self.n_classes
            if isinstance(k, bool) or not isinstance(k, int) or k < 2:
                raise ValueError(f"`n_classes` must be an integer >= 2 for {self.task}, got {k!r}")
            if (self.task == "binary") != (k == 2):
                raise ValueError(f"task {self.task!r} does not fit n_classes={k}")
            if y.ndim != 1 or y.dtype != np.int64:
                raise ValueError(f"class labels `y` must be a 1-D int64 array, got {_describe(y)}")
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
                    f"dataset {self.name!r} has {_plural(t, 'regression target')} but the output "
                    f"layer has {_plural(units, 'unit')}; use {_plural(t, 'unit')} "
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
            f"{_plural(units, 'unit')}; {hint}"
        )


def load_dataset(name: str, *, n_samples: int | None = None, noise: float | None = None,
                 seed: int = 0, path: str | os.PathLike | None = None,
                 target: int | str | None = None, task: str | None = None) -> Dataset:
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
    target, task
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
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    if name in FILE_NAMES:
        _refuse(name, " (a user file)", n_samples=n_samples, noise=noise)
        if path is None:
            raise ValueError(f"dataset {name!r} needs `path`, the file to read")
        return _load_path(path, name, target=target, task=task)
    _refuse(name, " (only csv and npz read files)", path=path, target=target, task=task)
    if name in REAL_NAMES:
        _refuse(name, " (a fixed data set)", n_samples=n_samples, noise=noise)
        return _REAL[name]()
    seed = check_number("seed", seed, low=0, integer=True)
    rng = np.random.default_rng(seed)
    make, default_n, default_noise, min_n = _SYNTHETIC[name]
    n = default_n if n_samples is None else check_number("n_samples", n_samples, low=min_n, integer=True)
    sd = default_noise if noise is None else check_number("noise", noise, low=0)
    return make(n, sd, rng)


def load_file(path: str | os.PathLike, target: int | str | None = None,
              task: str | None = None) -> Dataset:
    """Load a user's ``.csv`` or ``.npz`` file, chosen by extension.

    CSV: comma-separated numbers, one sample per row. The first row is taken as a
    header of column names when one of its feature cells is not a number (any cell,
    when ``target`` is a name); a header of numbers alone is read as data. The target
    is the column ``target`` (index, negative counts from the end, or header name;
    default the last column); all other columns are features. The target column may
    hold text labels (then the task is classification, classes in sorted order).
    Blank lines are skipped; empty, non-numeric, NaN and infinite cells are errors
    that name the row (as numbered in a spreadsheet, header included) and column.

    NPZ: arrays ``X`` (n_samples, n_features) numeric -- 1-D X is one feature, more
    than 2 dimensions are flattened per sample -- and ``y`` (n_samples,) or
    (n_samples, n_targets), numeric or text labels. Other arrays are ignored.

    Parameters
    ----------
    path : str or path-like
    target : int or str, optional
        CSV only.
    task : {"binary", "multiclass", "classification", "regression"}, optional
        Overrides the inference: integer-valued single-column targets with between 2
        and 20 distinct values, and 2 values or at most n_samples / 2 of them, are
        classification (labels remapped to 0..k-1 in sorted order, ``target_names``
        holding the original values), anything else is regression.
        ``"classification"`` picks binary or multiclass from the number of classes.

    Returns
    -------
    Dataset
    """
    ext = os.path.splitext(os.fspath(path))[1].lower()
    kinds = {".csv": "csv", ".npz": "npz"}
    if ext not in kinds:
        raise ValueError(f"cannot tell the format of {os.fspath(path)!r} from its extension "
                         f"{ext or '(none)'!r}; use a .csv or .npz file")
    return _load_path(path, kinds[ext], target=target, task=task)


# -- helpers ------------------------------------------------------------------------


def _describe(a: Any) -> str:
    if isinstance(a, np.ndarray):
        return f"shape {a.shape} dtype {a.dtype}"
    return type(a).__name__


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _refuse(name: str, why: str = "", **given: Any) -> None:
    for key, value in given.items():
        if value is not None:
            raise ValueError(f"`{key}` does not apply to dataset {name!r}{why}, got {value!r}")


def _shuffled(X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # Generators emit samples class by class; shuffle so that slicing off a validation
    # split keeps both classes.
    perm = rng.permutation(len(y))
    return X[perm], y[perm]


def _add_noise(X: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    if sd > 0:
        X = X + rng.normal(0.0, sd, size=X.shape)
    return X


def _classification(name: str, X: np.ndarray, y: np.ndarray, target_names: tuple[str, ...],
                    feature_names: tuple[str, ...] | None = ("x1", "x2")) -> Dataset:
    k = len(target_names)
    return Dataset(name=name, X=np.ascontiguousarray(X, dtype=np.float64),
                   y=np.ascontiguousarray(y, dtype=np.int64),
                   task="binary" if k == 2 else "multiclass", n_classes=k,
                   feature_names=feature_names, target_names=target_names)


# -- synthetic ----------------------------------------------------------------------

_TRUTH_INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


def _truth_table(name: str, labels: list[int]) -> Callable[..., Dataset]:
    def make(n: int | None, sd: float, rng: np.random.Generator) -> Dataset:
        rows = np.arange(4 if n is None else n) % 4
        X = _add_noise(_TRUTH_INPUTS[rows], sd, rng)
        y = np.array(labels, dtype=np.int64)[rows]
        return _classification(name, X, y, ("0", "1"))
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
    return _classification("moons", _add_noise(X, sd, rng), y, ("upper", "lower"))


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
    return _classification("circles", _add_noise(X, sd, rng), y, ("outer", "inner"))


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
    return _classification("spirals", _add_noise(X, sd, rng), y, ("arm_0", "arm_1"))


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
    return _classification("blobs", _add_noise(X, sd, rng), y, ("blob_0", "blob_1", "blob_2"))


def _sine(n: int, sd: float, rng: np.random.Generator) -> Dataset:
    x = rng.uniform(-np.pi, np.pi, size=(n, 1))
    y = _add_noise(np.sin(x), sd, rng)
    return Dataset(name="sine", X=x, y=y, task="regression", n_classes=None,
                   feature_names=("x",), target_names=("sin(x)",))


# name -> (generator, default n_samples, default noise, minimum n_samples)
_SYNTHETIC: dict[str, tuple[Callable[..., Dataset], int | None, float, int]] = {
    "xor": (_truth_table("xor", [0, 1, 1, 0]), None, 0.0, 4),
    "and": (_truth_table("and", [0, 0, 0, 1]), None, 0.0, 4),
    "or": (_truth_table("or", [0, 1, 1, 1]), None, 0.0, 4),
    "moons": (_moons, 200, 0.1, 2),
    "circles": (_circles, 200, 0.05, 2),
    "spirals": (_spirals, 400, 0.05, 2),
    "blobs": (_blobs, 300, 1.0, 3),
    "sine": (_sine, 200, 0.1, 1),
}


# -- real data sets shipped with scikit-learn --------------------------------------------


def _sklearn_data_dir() -> str:
    # find_spec locates a top-level package without importing it.
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.origin:
        raise ValueError(
            "the real data sets (digits, iris, wine, breast_cancer, diabetes) are read from "
            "the files bundled with scikit-learn, which is not installed; "
            "install the package `scikit-learn` (pip install scikit-learn)"
        )
    return os.path.join(os.path.dirname(spec.origin), "datasets", "data")


def _sklearn_file(filename: str) -> str:
    path = os.path.join(_sklearn_data_dir(), filename)
    if not os.path.isfile(path):
        raise ValueError(f"scikit-learn is installed but its data file {path!r} is missing; "
                         "reinstall the package `scikit-learn`")
    return path


def _sklearn_csv(name: str, filename: str, feature_names: tuple[str, ...]) -> Dataset:
    # Header row: n_samples, n_features, class names; then features..., label per row.
    path = _sklearn_file(filename)
    with open(path, encoding="utf-8") as fh:
        head = next(csv.reader(fh))
        data = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)
    n, f = int(head[0]), int(head[1])
    class_names = tuple(head[2:])
    if data.shape != (n, f + 1) or len(feature_names) != f:
        raise ValueError(f"{path!r} does not have the expected {n} rows of {f} features and a label; "
                         "reinstall the package `scikit-learn`")
    return _classification(name, data[:, :-1], data[:, -1].astype(np.int64), class_names,
                           feature_names)


def _iris() -> Dataset:
    return _sklearn_csv("iris", "iris.csv", ("sepal length (cm)", "sepal width (cm)",
                                             "petal length (cm)", "petal width (cm)"))


def _wine() -> Dataset:
    return _sklearn_csv("wine", "wine_data.csv", (
        "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols",
        "flavanoids", "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
        "od280/od315_of_diluted_wines", "proline"))


def _breast_cancer() -> Dataset:
    stats = ("radius", "texture", "perimeter", "area", "smoothness", "compactness",
             "concavity", "concave points", "symmetry", "fractal dimension")
    names = tuple(f"mean {s}" for s in stats) + tuple(f"{s} error" for s in stats) \
        + tuple(f"worst {s}" for s in stats)
    return _sklearn_csv("breast_cancer", "breast_cancer.csv", names)


def _gz_table(filename: str, delimiter: str | None) -> np.ndarray:
    with gzip.open(_sklearn_file(filename), mode="rt", encoding="utf-8") as fh:
        return np.loadtxt(fh, delimiter=delimiter, dtype=np.float64)


def _digits() -> Dataset:
    # 64 pixel intensities (0..16) of an 8x8 image, then the digit.
    data = _gz_table("digits.csv.gz", ",")
    names = tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8))
    return _classification("digits", data[:, :-1], data[:, -1].astype(np.int64),
                           tuple(str(d) for d in range(10)), names)


def _diabetes() -> Dataset:
    X = _gz_table("diabetes_data_raw.csv.gz", None)
    y = _gz_table("diabetes_target.csv.gz", None).reshape(-1, 1)
    # scikit-learn's default (scaled=True): sklearn.preprocessing.scale, i.e. centre and
    # divide by the population std, then divide by sqrt(n) so each column has unit norm.
    # Both statistics come from the raw data, in sklearn's order, so the result is
    # bit-identical to load_diabetes().
    mean, std = X.mean(axis=0), X.std(axis=0)
    X -= mean
    X /= std
    X /= X.shape[0] ** 0.5
    return Dataset(name="diabetes", X=X, y=y, task="regression", n_classes=None,
                   feature_names=("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"),
                   target_names=("disease_progression",))


_REAL: dict[str, Callable[[], Dataset]] = {
    "breast_cancer": _breast_cancer, "diabetes": _diabetes, "digits": _digits,
    "iris": _iris, "wine": _wine,
}


# -- user files -----------------------------------------------------------------------


def _load_path(path: str | os.PathLike, kind: str, *, target: int | str | None,
               task: str | None) -> Dataset:
    if task is not None and task not in (*TASKS, "classification"):
        raise ValueError(f"`task` must be one of binary, multiclass, classification, regression, "
                         f"got {task!r}")
    fspath = os.fspath(path)
    if not os.path.exists(fspath):
        raise ValueError(f"file not found: {fspath!r}")
    if not os.path.isfile(fspath):
        raise ValueError(f"not a file: {fspath!r}")
    name = os.path.splitext(os.path.basename(fspath))[0]
    if kind == "csv":
        return _read_csv(fspath, name, target, task)
    _refuse("npz", " (X and y are separate arrays)", target=target)
    return _read_npz(fspath, name, task)


def _parse_float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _read_csv(path: str, name: str, target: int | str | None, task: str | None) -> Dataset:
    where = f"CSV file {path!r}"
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            rows = []
            for cells in reader:
                if any(c.strip() for c in cells):
                    rows.append((reader.line_num, [c.strip() for c in cells]))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ValueError(f"{where} is not valid CSV: {exc}") from None
    if not rows:
        raise ValueError(f"{where} is empty")
    width = len(rows[0][1])
    if width < 2:
        raise ValueError(f"{where} has {width} column; it needs at least one feature column "
                         "and one target column")
    for line, cells in rows:
        if len(cells) != width:
            raise ValueError(f"{where}: row {line} has {_plural(len(cells), 'column')} but "
                             f"row {rows[0][0]} has {width}")

    first = rows[0][1]
    if isinstance(target, str):
        is_header = any(_parse_float(c) is None for c in first)
    else:
        col = _column_index(target, width, None, where)
        # The target may hold text labels, so only the feature cells decide.
        is_header = any(_parse_float(c) is None for j, c in enumerate(first) if j != col)
    header = first if is_header else None
    if is_header:
        rows = rows[1:]
    col = _column_index(target, width, header, where)
    if not rows:
        raise ValueError(f"{where} has a header row but no data rows")

    def column(j: int) -> str:
        return f"column {j + 1} ({header[j]!r})" if header else f"column {j + 1}"

    feature_cols = [j for j in range(width) if j != col]
    X = np.empty((len(rows), width - 1))
    for i, (line, cells) in enumerate(rows):
        for out_j, j in enumerate(feature_cols):
            X[i, out_j] = _number(cells[j], f"{where}: row {line}, {column(j)}")

    filled = [cells[col] for _, cells in rows if cells[col]]
    if filled and all(_parse_float(c) is None for c in filled):
        # Text labels (e.g. "setosa") make the target a class column. A column that
        # mixes text and numbers falls through to the numeric parse, whose error names
        # the first text cell, since that is more likely a typo than a label.
        if task == "regression":
            raise ValueError(f"{where}: target {column(col)} holds text labels such as "
                             f"{filled[0]!r}, which cannot be a regression target")
        for line, cells in rows:
            if not cells[col]:
                raise ValueError(f"{where}: row {line}, {column(col)} is empty; every sample "
                                 "needs a label")
        y_values: np.ndarray = np.array([cells[col] for _, cells in rows])
    else:
        y_values = np.empty(len(rows))
        for i, (line, cells) in enumerate(rows):
            y_values[i] = _number(cells[col], f"{where}: row {line}, {column(col)}")
    target_label = header[col] if header else None
    feature_names = tuple(header[j] for j in feature_cols) if header else None
    return _make_dataset(name, X, y_values, task, feature_names, target_label, where)


def _column_index(target: int | str | None, width: int, header: list[str] | None,
                  where: str) -> int:
    if target is None:
        return width - 1
    if isinstance(target, str):
        if header is None:
            raise ValueError(f"{where} has no header row, so `target` must be a column index, "
                             f"got {target!r}")
        matches = [j for j, h in enumerate(header) if h == target]
        if not matches:
            raise ValueError(f"{where} has no column named {target!r}; columns: "
                             f"{', '.join(repr(h) for h in header)}")
        if len(matches) > 1:
            raise ValueError(f"{where} has {len(matches)} columns named {target!r}; "
                             "pass `target` as a column index")
        return matches[0]
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        # ValueError like every other bad argument here (cf. registry.check_number),
        # so callers map all invalid input to one error.
        raise ValueError(  # noqa: TRY004
            f"`target` must be a column index or a header name, got {target!r}")
    if not -width <= target < width:
        raise ValueError(f"`target` must be a column index in {-width}..{width - 1} "
                         f"({where} has {width} columns), got {target!r}")
    return int(target) % width


def _number(cell: str, where: str) -> float:
    if not cell:
        raise ValueError(f"{where} is empty; every cell must hold a number")
    value = _parse_float(cell)
    if value is None:
        raise ValueError(f"{where} holds {cell!r}, which is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{where} holds {cell!r}; NaN and infinite values are not allowed")
    return value


def _read_npz(path: str, name: str, task: str | None) -> Dataset:
    where = f"NPZ file {path!r}"
    arrays: dict[str, np.ndarray] = {}
    try:
        # allow_pickle=False: an object array would otherwise be unpickled, which can
        # run arbitrary code from the file.
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise ValueError(f"{where} is a single .npy array, not an archive of arrays "
                                 "'X' and 'y'")
            missing = [k for k in ("X", "y") if k not in npz.files]
            if missing:
                raise ValueError(f"{where} must contain arrays 'X' and 'y'; it has: "
                                 f"{', '.join(repr(k) for k in npz.files) or 'no arrays'}")
            for key in ("X", "y"):
                try:
                    arrays[key] = npz[key]
                except ValueError as exc:
                    if "pickle" in str(exc) or "Object arrays" in str(exc):
                        raise ValueError(
                            f"{where}: array {key!r} holds Python objects; such arrays are "
                            "refused because loading them means unpickling, which can run code. "
                            "Save numeric (or string-label) arrays instead") from None
                    raise ValueError(f"{where}: cannot read array {key!r}: {exc}") from None
    except ValueError as exc:
        if str(exc).startswith(where):
            raise
        if "pickle" in str(exc):
            # np.load falls back to unpickling anything that is neither .npy nor .npz.
            raise ValueError(f"{where} is not an NPZ archive, and reading it would mean "
                             "unpickling, which is refused because it can run code") from None
        raise ValueError(f"{where} cannot be read: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{where} is not a readable NPZ archive: {exc}") from None

    X, y = arrays["X"], arrays["y"]
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{where}: 'X' must be numeric, got dtype {X.dtype}")
    if X.ndim == 0:
        raise ValueError(f"{where}: 'X' must have one row per sample, got a scalar")
    if X.size == 0 or y.size == 0:
        raise ValueError(f"{where} holds no data: 'X' has shape {X.shape}, 'y' {y.shape}")
    X = X.reshape(X.shape[0], -1).astype(np.float64)
    if y.dtype.kind not in "biufUS":
        raise ValueError(f"{where}: 'y' must be numeric or text labels, got dtype {y.dtype}")
    if y.ndim == 0 or y.ndim > 2:
        raise ValueError(f"{where}: 'y' must have shape (n_samples,) or (n_samples, n_targets), "
                         f"got {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"{where}: 'X' has {X.shape[0]} samples but 'y' has {y.shape[0]}")
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{where}: 'X' holds {X[i, j]} at row {i}, column {j} (0-based); "
                         "NaN and infinite values are not allowed")
    if y.dtype.kind in "US":
        y = y.astype(str)
        if task == "regression":
            raise ValueError(f"{where}: 'y' holds text labels, which cannot be a regression target")
    else:
        y = y.astype(np.float64)
        bad_y = ~np.isfinite(y)
        if bad_y.any():
            i = np.argwhere(bad_y)[0][0]
            raise ValueError(f"{where}: 'y' holds a NaN or infinite value at row {i} (0-based)")
    return _make_dataset(name, X, y, task, None, None, where)


def _make_dataset(name: str, X: np.ndarray, y: np.ndarray, task: str | None,
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
        raise ValueError(f"{where}: classification needs one label per sample, but 'y' has "
                         f"shape {y.shape}")
    classes, labels = np.unique(y, return_inverse=True)
    k = len(classes)
    if k < 2:
        raise ValueError(f"{where}: classification needs at least 2 classes, the target has {k}")
    if task == "binary" and k != 2:
        raise ValueError(f"{where}: task 'binary' needs exactly 2 classes, the target has {k}")
    if task == "multiclass" and k < 3:
        raise ValueError(f"{where}: task 'multiclass' needs at least 3 classes, the target has "
                         f"{k}; use task 'binary'")
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
