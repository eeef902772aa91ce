import pathlib
import subprocess
import sys

import numpy as np
import pytest

from nncore.datasets import DATASET_NAMES, Dataset, load_dataset, load_file

# name -> (n_samples, n_features, task, n_classes) with default arguments
EXPECTED = {
    "xor": (4, 2, "binary", 2),
    "and": (4, 2, "binary", 2),
    "or": (4, 2, "binary", 2),
    "moons": (200, 2, "binary", 2),
    "circles": (200, 2, "binary", 2),
    "spirals": (400, 2, "binary", 2),
    "blobs": (300, 2, "multiclass", 3),
    "sine": (200, 1, "regression", None),
    "digits": (1797, 64, "multiclass", 10),
    "iris": (150, 4, "multiclass", 3),
    "wine": (178, 13, "multiclass", 3),
    "breast_cancer": (569, 30, "binary", 2),
    "diabetes": (442, 10, "regression", None),
}
SYNTHETIC = ["xor", "and", "or", "moons", "circles", "spirals", "blobs", "sine"]
RANDOM_SYNTHETIC = ["moons", "circles", "spirals", "blobs", "sine"]
TRUTH_X = [[0, 0], [0, 1], [1, 0], [1, 1]]


def test_names_are_sorted_and_all_covered():
    assert DATASET_NAMES == sorted(DATASET_NAMES)
    assert set(DATASET_NAMES) == set(EXPECTED) | {"csv", "npz"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shapes_tasks_dtypes(name):
    n, f, task, k = EXPECTED[name]
    d = load_dataset(name)
    assert isinstance(d, Dataset)
    assert d.name == name
    assert (d.n_samples, d.n_features, d.task, d.n_classes) == (n, f, task, k)
    assert d.X.shape == (n, f) and d.X.dtype == np.float64
    assert np.isfinite(d.X).all()
    # every built-in set names its features
    assert d.feature_names is not None and len(d.feature_names) == f
    if task == "regression":
        assert d.y.shape == (n, 1) and d.y.dtype == np.float64
    else:
        assert d.y.shape == (n,) and d.y.dtype == np.int64
        np.testing.assert_array_equal(np.unique(d.y), np.arange(k))
        assert len(d.target_names) == k


@pytest.mark.parametrize("name, labels", [
    ("xor", [0, 1, 1, 0]), ("and", [0, 0, 0, 1]), ("or", [0, 1, 1, 1]),
])
def test_truth_tables_exact(name, labels):
    d = load_dataset(name, seed=123)
    np.testing.assert_array_equal(d.X, TRUTH_X)
    np.testing.assert_array_equal(d.y, labels)

    tiled = load_dataset(name, n_samples=10)
    np.testing.assert_array_equal(tiled.X, np.array(TRUTH_X * 3)[:10])
    np.testing.assert_array_equal(tiled.y, (labels * 3)[:10])

    noisy = load_dataset(name, noise=0.1, seed=1)
    np.testing.assert_array_equal(noisy.y, labels)
    assert 0 < np.abs(noisy.X - TRUTH_X).max() < 1


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_deterministic_per_seed(name):
    kw = {"noise": 0.1} if name in ("xor", "and", "or") else {}
    a = load_dataset(name, seed=7, **kw)
    b = load_dataset(name, seed=7, **kw)
    c = load_dataset(name, seed=8, **kw)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)


@pytest.mark.parametrize("name", RANDOM_SYNTHETIC)
def test_synthetic_n_samples_and_noise(name):
    d = load_dataset(name, n_samples=51, noise=0.0)
    assert d.n_samples == 51 and d.y.shape[0] == 51


@pytest.mark.parametrize("name", ["moons", "circles", "spirals"])
@pytest.mark.parametrize("n", [200, 37])
def test_two_class_sets_are_balanced(name, n):
    d = load_dataset(name, n_samples=n, seed=3)
    assert d.task == "binary" and d.n_classes == 2
    counts = np.bincount(d.y, minlength=2)
    assert counts.tolist() == [n // 2, n - n // 2]
    # shuffled, not class-sorted, so a tail split holds both classes
    assert len(np.unique(d.y[-n // 4:])) == 2


def test_moons_and_circles_geometry_without_noise():
    m = load_dataset("moons", noise=0.0)
    upper = m.X[m.y == 0]
    np.testing.assert_allclose(np.hypot(*upper.T), 1.0)
    assert (upper[:, 1] >= -1e-12).all()
    lower = m.X[m.y == 1]
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1.0)

    c = load_dataset("circles", noise=0.0)
    r = np.hypot(*c.X.T)
    np.testing.assert_allclose(r[c.y == 0], 1.0)
    np.testing.assert_allclose(r[c.y == 1], 0.5)


def test_blobs_centres_depend_on_seed_only():
    a = load_dataset("blobs", seed=2, n_samples=300, noise=0.0)
    b = load_dataset("blobs", seed=2, n_samples=30, noise=0.5)
    for k in range(3):
        centre = a.X[a.y == k][0]
        np.testing.assert_allclose(a.X[a.y == k], np.broadcast_to(centre, (100, 2)))
        np.testing.assert_allclose(b.X[b.y == k].mean(axis=0), centre, atol=1.0)
    assert np.bincount(load_dataset("blobs", n_samples=31).y).tolist() == [11, 10, 10]


def test_sine_is_noisy_sine():
    d = load_dataset("sine", n_samples=2000, noise=0.1)
    assert (np.abs(d.X) <= np.pi).all()
    residual = d.y[:, 0] - np.sin(d.X[:, 0])
    assert abs(residual.std() - 0.1) < 0.01
    exact = load_dataset("sine", noise=0.0)
    np.testing.assert_array_equal(exact.y, np.sin(exact.X))


# -- real data sets: identical to scikit-learn's loaders --------------------------------

@pytest.mark.parametrize("name, loader", [
    ("iris", "load_iris"), ("wine", "load_wine"), ("breast_cancer", "load_breast_cancer"),
    ("digits", "load_digits"),
])
def test_real_classification_sets_equal_sklearn(name, loader):
    skd = pytest.importorskip("sklearn.datasets")
    ref = getattr(skd, loader)()
    d = load_dataset(name)
    np.testing.assert_array_equal(d.X, ref.data)
    np.testing.assert_array_equal(d.y, ref.target)
    assert list(d.feature_names) == list(ref.feature_names)
    assert list(d.target_names) == [str(t) for t in ref.target_names]


def test_diabetes_equals_sklearn_default_scaled():
    skd = pytest.importorskip("sklearn.datasets")
    ref = skd.load_diabetes()  # scaled=True by default, as documented in load_dataset
    d = load_dataset("diabetes")
    np.testing.assert_array_equal(d.X, ref.data)
    np.testing.assert_array_equal(d.y[:, 0], ref.target)
    assert list(d.feature_names) == list(ref.feature_names)
    np.testing.assert_allclose(np.linalg.norm(d.X, axis=0), 1.0)
    # and the raw file's values are recovered by undoing the scaling
    raw = skd.load_diabetes(scaled=False).data
    np.testing.assert_allclose(d.X, (raw - raw.mean(0)) / raw.std(0) / np.sqrt(442))


def test_real_sets_refuse_synthetic_arguments():
    with pytest.raises(ValueError, match=r"`n_samples` does not apply to dataset 'iris'.*got 10"):
        load_dataset("iris", n_samples=10)
    with pytest.raises(ValueError, match=r"`noise` does not apply to dataset 'digits'"):
        load_dataset("digits", noise=0.1)


def test_missing_sklearn_gives_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sklearn" else real(name, *a))
    with pytest.raises(ValueError, match=r"install the package `scikit-learn`"):
        load_dataset("iris")


# -- targets() ---------------------------------------------------------------------------

def test_targets_one_hot_and_binary_column():
    iris = load_dataset("iris")
    onehot = iris.targets(3)
    assert onehot.shape == (150, 3) and onehot.dtype == np.float64
    np.testing.assert_array_equal(onehot.argmax(axis=1), iris.y)
    np.testing.assert_array_equal(onehot.sum(axis=1), 1.0)

    xor = load_dataset("xor")
    col = xor.targets(1, dtype=np.float32)
    assert col.dtype == np.float32
    np.testing.assert_array_equal(col, [[0], [1], [1], [0]])
    np.testing.assert_array_equal(xor.targets(2), [[1, 0], [0, 1], [0, 1], [1, 0]])

    sine = load_dataset("sine")
    np.testing.assert_array_equal(sine.targets(1), sine.y)


def test_targets_mismatch_errors():
    with pytest.raises(ValueError, match=(
            r"dataset 'iris' has 3 classes but the output layer has 2 units; use 3 units "
            r"with softmax, or 1 unit with sigmoid for 2 classes")):
        load_dataset("iris").targets(2)
    with pytest.raises(ValueError, match=r"'iris' has 3 classes but the output layer has 1 unit;"):
        load_dataset("iris").targets(1)
    with pytest.raises(ValueError, match=r"'moons' has 2 classes but the output layer has 3 units; "
                                         r"use 1 unit with sigmoid, or 2 units with softmax"):
        load_dataset("moons").targets(3)
    with pytest.raises(ValueError, match=r"'diabetes' has 1 regression target but the output "
                                         r"layer has 10 units; use 1 unit"):
        load_dataset("diabetes").targets(10)
    with pytest.raises(ValueError, match=r"`output_units` must be >= 1, got 0"):
        load_dataset("iris").targets(0)


def test_dataset_rejects_inconsistent_fields():
    X = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"class labels must lie in 0..1"):
        Dataset("d", X, np.array([0, 1, 2]), "binary", 2)
    with pytest.raises(ValueError, match=r"`task` must be one of"):
        Dataset("d", X, np.array([0, 1, 0]), "classification", 2)
    with pytest.raises(ValueError, match=r"regression `y` must be a 2-D float64"):
        Dataset("d", X, np.zeros(3), "regression", None)


# -- argument validation -----------------------------------------------------------------

def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; known: and, blobs, "
                                         r"breast_cancer, circles, csv, diabetes, digits"):
        load_dataset("mnist")


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "moons", "noise": -1}, r"`noise` must be >= 0, got -1"),
    ({"name": "moons", "n_samples": 1}, r"`n_samples` must be >= 2, got 1"),
    ({"name": "xor", "n_samples": 3}, r"`n_samples` must be >= 4, got 3"),
    ({"name": "blobs", "n_samples": 2.5}, r"`n_samples` must be an integer, got 2.5"),
    ({"name": "sine", "seed": -3}, r"`seed` must be >= 0, got -3"),
    ({"name": "moons", "path": "x.csv"}, r"`path` does not apply to dataset 'moons'"),
    ({"name": "csv"}, r"dataset 'csv' needs `path`"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(**kwargs)


# -- user files ------------------------------------------------------------------------

def write(path, text):
    path.write_text(text)
    return path


def test_csv_with_header_default_last_column(tmp_path):
    p = write(tmp_path / "pts.csv", "a,b,label\n1,2,0\n3,4.5,1\n\n5,6,1\n7,8,0\n")
    d = load_dataset("csv", path=str(p))
    assert d.name == "pts" and d.task == "binary" and d.n_classes == 2
    np.testing.assert_array_equal(d.X, [[1, 2], [3, 4.5], [5, 6], [7, 8]])
    np.testing.assert_array_equal(d.y, [0, 1, 1, 0])
    assert d.feature_names == ("a", "b") and d.target_names == ("0", "1")


def test_csv_without_header(tmp_path):
    p = write(tmp_path / "raw.csv", "1,2,0\n3,4,1\n5,6,1\n7,8,0\n")
    d = load_file(p)
    assert d.feature_names is None and d.n_samples == 4
    np.testing.assert_array_equal(d.X, [[1, 2], [3, 4], [5, 6], [7, 8]])
    np.testing.assert_array_equal(d.y, [0, 1, 1, 0])


def test_csv_target_by_name_and_index(tmp_path):
    p = write(tmp_path / "t.csv", "y,x1,x2\n0.5,1,2\n1.5,3,4\n2.5,5,6\n")
    by_name = load_file(p, target="y")
    by_index = load_file(p, target=0)
    by_negative = load_file(p, target=-3)
    for d in (by_name, by_index, by_negative):
        assert d.task == "regression" and d.n_classes is None
        np.testing.assert_array_equal(d.X, [[1, 2], [3, 4], [5, 6]])
        np.testing.assert_array_equal(d.y, [[0.5], [1.5], [2.5]])
        assert d.feature_names == ("x1", "x2") and d.target_names == ("y",)


def test_csv_labels_remapped_and_text_labels(tmp_path):
    p = write(tmp_path / "c.csv", "f,cls\n" + "".join(f"{i},{c}\n" for i, c in
                                                       enumerate([3, 7, 5, 3, 7, 5, 3])))
    d = load_file(p)
    assert d.task == "multiclass" and d.n_classes == 3 and d.target_names == ("3", "5", "7")
    np.testing.assert_array_equal(d.y, [0, 2, 1, 0, 2, 1, 0])
    assert load_file(p, task="regression").task == "regression"

    p = write(tmp_path / "flowers.csv", "5.1,3.5,setosa\n7.0,3.2,versicolor\n6.3,3.3,setosa\n")
    d = load_file(p)
    assert d.feature_names is None and d.n_samples == 3
    assert d.target_names == ("setosa", "versicolor")
    np.testing.assert_array_equal(d.y, [0, 1, 0])


def test_csv_task_inference_and_override(tmp_path):
    rng = np.random.default_rng(0)
    many = "\n".join(f"{i},{v}" for i, v in enumerate(rng.integers(0, 40, size=100))) + "\n"
    p = write(tmp_path / "counts.csv", many)
    assert load_file(p).task == "regression"  # more than 20 distinct integers
    p = write(tmp_path / "two.csv", "1,0\n2,1\n3,1\n")
    assert load_file(p).task == "binary"
    assert load_file(p, task="regression").task == "regression"
    with pytest.raises(ValueError, match=r"task 'multiclass' needs at least 3 classes"):
        load_file(p, task="multiclass")
    with pytest.raises(ValueError, match=r"`task` must be one of .*got 'clustering'"):
        load_file(p, task="clustering")


@pytest.mark.parametrize("text, match", [
    ("a,b,y\n1,2,0\n3,x,1\n", r"row 3, column 2 \('b'\) holds 'x', which is not a number"),
    ("1,2,0\n3,4,1\n5,abc,1\n", r"row 3, column 2 holds 'abc', which is not a number"),
    ("a,b,y\n1,nan,0\n3,4,1\n", r"row 2, column 2 \('b'\) holds 'nan'; NaN and infinite"),
    ("a,b,y\n1,2,0\n3,inf,1\n", r"row 3, column 2 \('b'\) holds 'inf'"),
    ("a,b,y\n1,,0\n", r"row 2, column 2 \('b'\) is empty"),
    ("a,b,y\n1,2,0\n3,4,cat\n", r"row 3, column 3 \('y'\) holds 'cat', which is not a number"),
    ("a,b,y\n1,2,0\n3,4\n", r"row 3 has 2 columns but row 1 has 3"),
    ("a,b,y\n", r"has a header row but no data rows"),
    ("\n\n", r"is empty"),
    ("1\n2\n", r"needs at least one feature column"),
])
def test_csv_errors_name_row_and_column(tmp_path, text, match):
    p = write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=match):
        load_file(p)


def test_csv_target_errors(tmp_path):
    p = write(tmp_path / "t.csv", "a,b,y\n1,2,0\n3,4,1\n")
    with pytest.raises(ValueError, match=r"no column named 'z'; columns: 'a', 'b', 'y'"):
        load_file(p, target="z")
    with pytest.raises(ValueError, match=r"column index in -3..2 .* got 3"):
        load_file(p, target=3)
    p = write(tmp_path / "nh.csv", "1,2,0\n3,4,1\n")
    with pytest.raises(ValueError, match=r"no header row, so `target` must be a column index"):
        load_file(p, target="y")


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    y = rng.integers(0, 3, size=30)
    p = tmp_path / "data.npz"
    np.savez(p, X=X, y=y, extra=np.arange(3))
    for d in (load_file(p), load_dataset("npz", path=p)):
        assert d.name == "data" and d.task == "multiclass" and d.n_classes == 3
        np.testing.assert_array_equal(d.X, X)
        np.testing.assert_array_equal(d.y, y)

    Y = rng.normal(size=(30, 2))
    np.savez(p, X=X.astype(np.float32), y=Y)
    d = load_file(p)
    assert d.task == "regression" and d.y.shape == (30, 2) and d.X.dtype == np.float64
    np.testing.assert_array_equal(d.y, Y)
    np.testing.assert_array_equal(d.targets(2), Y)


def test_npz_object_array_refused_without_unpickling(tmp_path, monkeypatch):
    import pickle

    p = tmp_path / "evil.npz"
    np.savez(p, X=np.array([[1, {"a": 1}]], dtype=object), y=np.array([0]), allow_pickle=True)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("load_file tried to unpickle")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    with pytest.raises(ValueError, match=r"array 'X' holds Python objects.*refused"):
        load_file(p)


@pytest.mark.parametrize("arrays, match", [
    ({"data": np.zeros((3, 2)), "target": np.zeros(3)},
     r"must contain arrays 'X' and 'y'; it has: 'data', 'target'"),
    ({"X": np.zeros((3, 2)), "y": np.zeros(4)}, r"'X' has 3 samples but 'y' has 4"),
    ({"X": np.zeros((0, 2)), "y": np.zeros(0)}, r"holds no data"),
    ({"X": np.array([[1.0, np.nan]]), "y": np.zeros(1)}, r"NaN and infinite values"),
    ({"X": np.array([["a", "b"]]), "y": np.zeros(1)}, r"'X' must be numeric, got dtype <U1"),
])
def test_npz_errors(tmp_path, arrays, match):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(ValueError, match=match):
        load_file(p)


def test_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"file not found: .*nope.csv"):
        load_file(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match=r"use a .csv or .npz file"):
        load_file(write(tmp_path / "d.xlsx", "x"))
    with pytest.raises(ValueError, match=r"is not an NPZ archive.*unpickling"):
        load_file(write(tmp_path / "fake.npz", "1,2,3\n"))


@pytest.mark.integration
def test_loading_never_imports_sklearn():
    # A fresh interpreter: this test process has imported sklearn already.
    code = ("import sys\nfrom nncore.datasets import DATASET_NAMES, load_dataset\n"
            "for n in DATASET_NAMES:\n    if n not in ('csv', 'npz'): load_dataset(n)\n"
            "assert not any(m == 'sklearn' or m.startswith('sklearn.') for m in sys.modules)\n")
    root = pathlib.Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
