"""The real data sets scikit-learn ships as files inside its package: digits, iris,
wine, breast_cancer, diabetes.

They are parsed with NumPy from the installed package folder, so scikit-learn must be
installed but is never imported (``importlib.util.find_spec`` locates it). Each is
identical to scikit-learn's ``load_*()`` with default arguments. :data:`BUNDLED` is
the registry of their names.
"""
from __future__ import annotations

import csv
import gzip
import importlib.util
import os
from collections.abc import Callable

import numpy as np

from .types import Dataset, classification


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
    return classification(name, data[:, :-1], data[:, -1].astype(np.int64), class_names,
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
    return classification("digits", data[:, :-1], data[:, -1].astype(np.int64),
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


#: (n_samples, n_features) of each, so a job can be sized without reading the file
SHAPES: dict[str, tuple[int, int]] = {
    "breast_cancer": (569, 30), "diabetes": (442, 10), "digits": (1797, 64), "iris": (150, 4), "wine": (178, 13),
}

BUNDLED: dict[str, Callable[[], Dataset]] = {
    "breast_cancer": _breast_cancer, "diabetes": _diabetes, "digits": _digits,
    "iris": _iris, "wine": _wine,
}
