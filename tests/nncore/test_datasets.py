import io
import pathlib
import re
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest

from nncore.datasets import DATASET_NAMES, Dataset, DatasetError, FileLimits, load_dataset, load_file
from nncore.spec import DEFAULT_LIMITS

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


# -- bounds on user files: refused before they cost memory ----------------------------------

MiB = 1 << 20
DEFAULT_CELLS = f"{FileLimits().max_cells:,}"  # "33,554,432"


def npy_header(shape: tuple[int, ...], descr: str) -> bytes:
    """The .npy header numpy would write for an array of ``shape`` and ``descr``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def deflated(head: bytes, zeros: int = 0) -> tuple[bytes, int, int]:
    """A raw deflate stream of ``head`` followed by ``zeros`` zero bytes, with its CRC-32
    and inflated size, without compressing every megabyte of a bomb: after a full flush
    deflate starts afresh, so each further MiB of zeros compresses to the same bytes."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(MiB)
    first = min(zeros, MiB)
    parts = [comp.compress(head + block[:first]), comp.flush(zlib.Z_FULL_FLUSH)]
    crc = zlib.crc32(head + block[:first])
    whole, rest = divmod(zeros - first, MiB)
    if whole:
        parts.append((comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)) * whole)
        for _ in range(whole):
            crc = zlib.crc32(block, crc)
    parts += [comp.compress(block[:rest]), comp.flush()]
    crc = zlib.crc32(block[:rest], crc)
    return b"".join(parts), crc, len(head) + zeros


def write_zip(path: pathlib.Path, members: dict[str, bytes | tuple[bytes, int, int]]) -> pathlib.Path:
    """A zip archive of deflated members (``deflated``'s triples, or bytes to deflate),
    written by hand because zipfile would compress a bomb's every byte."""
    central, offset = [], 0
    with open(path, "wb") as out:
        for name, member in members.items():
            data, crc, size = deflated(member) if isinstance(member, bytes) else member
            raw = name.encode()
            fields = (20, 0, 8, 0, 0x21, crc, len(data), size, len(raw))  # deflate, 1980-01-01
            out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields, 0) + raw + data)
            central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, 0, offset) + raw)
            offset += 30 + len(raw) + len(data)
        directory = b"".join(central)
        out.write(directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central),
                                          len(directory), offset, 0))
    return path


def npz_bomb(path: pathlib.Path, rows: int = 8 * MiB, cols: int = 8, descr: str = "<f8") -> pathlib.Path:
    """X of ``rows`` x ``cols`` zeros (512 MiB of float64 by default) and y of zeros, in
    an archive of about half a megabyte."""
    itemsize = np.dtype(descr).itemsize
    return write_zip(path, {"X.npy": deflated(npy_header((rows, cols), descr), rows * cols * itemsize),
                            "y.npy": deflated(npy_header((rows,), "|i1"), rows)})


def peak_bytes(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``'s peak traced memory (numpy's buffers included) and its
    result, or the exception it raised."""
    tracemalloc.start()
    try:
        try:
            outcome = fn(*args, **kwargs)
        except Exception as exc:  # the outcome under test
            outcome = exc
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


def test_file_limits_default_to_the_spec_limits_and_refuse_nonsense():
    limits = FileLimits()
    assert (limits.max_rows, limits.max_features, limits.max_cells) == (
        DEFAULT_LIMITS["max_samples"], DEFAULT_LIMITS["max_units"], 2**25)
    assert limits.max_columns == 16_385 and limits.max_bytes == 2**28
    for bad in ({"max_rows": 0}, {"max_cells": 1.5}, {"max_features": True}):
        with pytest.raises(ValueError, match=r"FileLimits\.max_\w+ must be a whole number >= 1"):
            FileLimits(**bad)


def test_an_npz_bomb_is_refused_from_its_headers_without_inflating_it(tmp_path):
    import zipfile

    p = npz_bomb(tmp_path / "bomb.npz")
    assert p.stat().st_size < MiB
    with zipfile.ZipFile(p) as zf:
        assert zf.getinfo("X.npy").file_size > 512 * MiB
    peak, outcome = peak_bytes(load_file, p)
    assert isinstance(outcome, DatasetError) and outcome.field == "file"
    assert str(outcome) == (f"NPZ file '{p}': array 'X' holds 67,108,864 values (8,388,608 rows of 8 "
                            f"features); the limit is {DEFAULT_CELLS} values")
    assert peak < 4 * MiB, f"{peak:,} bytes traced: the archive was inflated"


@pytest.mark.parametrize("x_shape, x_descr, y_shape, y_descr, match", [
    # 8 TiB of float64, in a header of 128 bytes
    ((2**40, 1), "<f8", (2**40,), "<f8", r"array 'X' has 1,099,511,627,776 rows \(shape \(1099511627776, 1\)\); "
                                         r"the limit is 10,000,000 rows"),
    ((10, 2**40), "<f8", (10,), "<f8", r"array 'X' has 1,099,511,627,776 features per sample .*the limit is 16,384"),
    ((10, 4, 5000), "<f8", (10,), "<f8", r"array 'X' has 20,000 features per sample \(shape \(10, 4, 5000\)\)"),
    ((9_000_000, 16), "<f8", (9_000_000,), "<f8", rf"array 'X' holds 144,000,000 values \(9,000,000 rows of 16 "
                                                  rf"features\); the limit is {DEFAULT_CELLS} values"),
    ((3, 2), "<f8", (2**40,), "<f8", r"array 'y' has 1,099,511,627,776 rows"),
    ((3, 2), "<f8", (3, 20_000), "<f8", r"array 'y' has 20,000 targets per sample"),
    # three labels of 100 M characters: 1.2 GB of fixed-width text
    ((3, 2), "<f8", (3,), "<U100000000", r"array 'y' declares 1,200,000,000 bytes of data \(shape \(3,\), dtype "
                                         r"<U100000000\); the limit is 268,435,456 bytes"),
    ((3, 2), "<U5", (3,), "<f8", r"'X' must be numeric, got dtype <U5"),
    ((3, 2), "<f8", (3,), "<M8[s]", r"'y' must be numeric or text labels, got dtype datetime64\[s\]"),
    ((3, 2), "|O", (3,), "<f8", r"array 'X' holds Python objects; such arrays are refused"),
])
def test_npz_headers_past_a_limit_are_refused_before_the_data_is_read(tmp_path, x_shape, x_descr, y_shape,
                                                                      y_descr, match):
    # the headers alone: a loader that read past them would fail on missing data instead
    p = write_zip(tmp_path / "big.npz", {"X.npy": npy_header(x_shape, x_descr),
                                         "y.npy": npy_header(y_shape, y_descr)})
    peak, outcome = peak_bytes(load_file, p)
    assert isinstance(outcome, DatasetError) and outcome.field == "file", repr(outcome)
    assert re.search(match, str(outcome)), str(outcome)
    assert peak < MiB


def test_npz_limits_can_be_tightened(tmp_path):
    p = tmp_path / "small.npz"
    np.savez(p, X=np.zeros((6, 3)), y=np.arange(6) % 2)
    assert load_file(p).n_samples == 6
    for limits, match in [(FileLimits(max_rows=5), r"array 'X' has 6 rows \(shape \(6, 3\)\); the limit is 5 rows"),
                          (FileLimits(max_features=2), r"array 'X' has 3 features per sample .*the limit is 2$"),
                          (FileLimits(max_cells=17), r"array 'X' holds 18 values \(6 rows of 3 features\); the "
                                                     r"limit is 17 values")]:
        with pytest.raises(DatasetError, match=match):
            load_file(p, limits=limits)


@pytest.mark.parametrize("member, match", [
    (b"this is not an array", r"'X.npy' is not a NumPy .npy array \(it does not start with the .npy signature\)"),
    (b"\x93NUMPY\x01\x00\x10", r"'X.npy' is not a NumPy .npy array \(its header is cut short\)"),
    # version 2.0 may declare a header of 4 GiB: refused before it is read
    (b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1), r"its header is 4,294,967,295 bytes long; numpy reads "
                                                           r"at most 10,000"),
    (npy_header((3, 2), "<f8").replace(b"(3, 2)", b"(3,-2)"), r"its header declares the shape \(3, -2\)"),
    (npy_header((3, 2), "<f8").replace(b"'descr'", b"'descX'"), r"'X.npy' is not a NumPy .npy array \(Header does "
                                                                r"not contain the correct keys"),
    (b"\x93NUMPY\x03\x00" + npy_header((3, 2), "<f8")[8:], r"uses .npy format version 3.0"),
])
def test_an_npz_member_that_is_not_an_array_is_refused(tmp_path, member, match):
    p = write_zip(tmp_path / "odd.npz", {"X.npy": member, "y.npy": npy_header((3,), "<f8") + bytes(24)})
    with pytest.raises(DatasetError, match=match) as info:
        load_file(p)
    assert info.value.field == "file"


def test_an_npz_member_inflating_past_its_header_is_refused(tmp_path):
    x = npy_header((3, 2), "<f8") + np.arange(6.0).tobytes()
    y = npy_header((3,), "<f8") + np.zeros(3).tobytes()
    ok = write_zip(tmp_path / "ok.npz", {"X.npy": x, "y.npy": y})
    np.testing.assert_array_equal(load_file(ok).X, np.arange(6.0).reshape(3, 2))
    # np.load would read the 48 bytes the header declares and never inflate the rest:
    # refused anyway, since numpy writes no such member and a bomb would
    p = write_zip(tmp_path / "padded.npz", {"X.npy": deflated(x, 100 * MiB), "y.npy": y})
    with pytest.raises(DatasetError, match=(r"'X.npy' inflates to 104,857,776 bytes, more than the 176 its .npy header "
                                            r"accounts for; the archive is inconsistent")):
        load_file(p)


def test_a_single_npy_file_declaring_terabytes_is_refused_unread(tmp_path):
    p = tmp_path / "huge.npz"
    p.write_bytes(npy_header((2**40,), "<f8") + bytes(64))
    with pytest.raises(DatasetError, match=r"is a single .npy array, not an archive of arrays 'X' and 'y'"):
        load_file(p)


def csv_text(rows: int, cols: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, cols - 1))
    lines = [",".join(f"f{j}" for j in range(cols - 1)) + ",label"]
    lines += [",".join(f"{v:.8f}" for v in row) + f",{'ab'[i % 2]}" for i, row in enumerate(X)]
    return "\n".join(lines) + "\n"


def test_a_legal_csv_is_parsed_in_a_small_multiple_of_its_size(tmp_path):
    p = write(tmp_path / "legal.csv", csv_text(5000, 10))
    size = p.stat().st_size
    peak, d = peak_bytes(load_file, p)
    assert isinstance(d, Dataset), d
    assert (d.n_samples, d.n_features, d.task, d.target_names) == (5000, 9, "binary", ("a", "b"))
    np.testing.assert_array_equal(d.X, np.loadtxt(p, delimiter=",", skiprows=1, usecols=range(9)))
    # X itself is 360 kB of float64 for a 600 kB file; a list of strings per row is ~8x
    assert peak < 2 * size, f"peak {peak:,} bytes for a file of {size:,}"


def test_csv_streaming_keeps_csv_semantics(tmp_path):
    # BOM, CRLF, quoted names holding commas, blank and whitespace-only lines, a quoted
    # label spanning two lines, a numeric header read as data when `target` is an index
    p = tmp_path / "q.csv"
    p.write_bytes('\ufeff"a,1",b,y\r\n1,2,cat\r\n\r\n , ,\r\n3," 4 ","two\nlines"\r\n5,6,cat\r\n'.encode())
    d = load_file(p)
    assert d.feature_names == ("a,1", "b") and d.target_names == ("cat", "two\nlines")
    np.testing.assert_array_equal(d.X, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(d.y, [0, 1, 0])
    # old Mac line ends: one physical line each, so the row count bound still holds
    d = load_file(write(tmp_path / "cr.csv", "1,2,0\r3,4,1\r5,6,1\r"))
    np.testing.assert_array_equal(d.X, [[1, 2], [3, 4], [5, 6]])
    d = load_file(write(tmp_path / "idx.csv", "0.5,1,2\n1.5,3,4\n2.5,5,6\n"), target=0)
    np.testing.assert_array_equal(d.y, [[0.5], [1.5], [2.5]])


def test_a_ten_megabyte_line_is_refused_before_it_is_split(tmp_path):
    p = write(tmp_path / "long.csv", "0," * 5_000_000 + "1\n")
    peak, outcome = peak_bytes(load_file, p)
    assert isinstance(outcome, DatasetError) and outcome.field == "file"
    assert str(outcome) == (f"CSV file '{p}': row 1 is longer than 4,194,816 characters, the limit for one row "
                            "(256 per column, for at most 16,384 feature columns and the target)")
    # the 4 MB read up to the limit, not 5 M cells of ~60 bytes each
    assert peak < 24 * MiB, f"{peak:,} bytes traced"
    # a record spanning many short lines inside quotes is one record
    p = write(tmp_path / "quoted.csv", "1,2,0\n3,\"" + "x\n" * 2000 + "\",0\n")
    # 5 characters on line 2, then 2 a line: past 3,072 on line 1,536
    with pytest.raises(DatasetError, match=r"row 1536 is longer than 3,072 characters"):
        load_file(p, limits=FileLimits(max_features=10))


def test_too_many_columns_are_refused_on_the_raw_line(tmp_path):
    p = write(tmp_path / "wide.csv", ("0," * 99_999 + "1\n") * 3)
    with pytest.raises(DatasetError, match=(r"^CSV file '.*wide.csv' has more than 16,384 feature columns \(row 1 has "
                                            r"100,000 columns\); the limit is 16,384 feature columns and the "
                                            r"target$")):
        load_file(p)
    # 1.3 M cells of two characters would be 1.3 M new strings if csv split the line
    p = write(tmp_path / "cells.csv", "10," * 1_300_000 + "1\n")
    peak, outcome = peak_bytes(load_file, p)
    assert "(row 1 has 1,300,001 columns)" in str(outcome)
    assert peak < 24 * MiB, f"{peak:,} bytes traced: the line was split"
    # a later row, and rows with quotes (only csv can count those cells)
    limits = FileLimits(max_features=3)
    with pytest.raises(DatasetError, match=r"more than 3 feature columns \(row 3 has 5 columns\); the limit is 3"):
        load_file(write(tmp_path / "later.csv", "1,2,0\n3,4,1\n1,2,3,4,5\n"), limits=limits)
    with pytest.raises(DatasetError, match=r"more than 3 feature columns \(row 1 has 5 columns\)"):
        load_file(write(tmp_path / "quoted.csv", '"a","b","c","d","y"\n1,2,3,4,5\n'), limits=limits)
    assert load_file(write(tmp_path / "fits.csv", '"a,b",c,d,y\n1,2,3,4\n5,6,7,8\n'), limits=limits).n_features == 3


def test_csv_rows_cells_and_label_bytes_are_refused_as_soon_as_exceeded(tmp_path):
    body = "".join(f"{i},{i + 1},{i % 2}\n" for i in range(1000))
    # a bad row far below the limit: the limit is reported, so reading stopped there
    p = write(tmp_path / "rows.csv", "a,b,y\n" + body + "1,2\n")
    with pytest.raises(DatasetError, match=(r"has more than 5 rows of data \(row 7 is one too many\); the limit is "
                                            r"5$")):
        load_file(p, limits=FileLimits(max_rows=5))
    with pytest.raises(DatasetError, match=(r"has more than 20 cells \(7 rows of 3 columns by row 8\); the limit is 20 "
                                            r"cells$")):
        load_file(p, limits=FileLimits(max_cells=20))
    assert load_file(write(tmp_path / "ok.csv", "a,b,y\n" + body)).n_samples == 1000
    labels = write(tmp_path / "labels.csv", "".join(f"{i},{'label' * 2}{i}\n" for i in range(3)))
    with pytest.raises(DatasetError, match=(r"the text labels of the target column would take 88 bytes by row 2 "
                                            r"\(labels of up to 11 characters\); the limit is 80 bytes$")):
        load_file(labels, limits=FileLimits(max_cells=10))


def test_csv_errors_keep_their_order(tmp_path):
    # a row of the wrong width is reported before an earlier bad cell, and a bad
    # feature cell before a bad target, as when every row was read first
    with pytest.raises(DatasetError, match=r"row 4 has 2 columns but row 1 has 3"):
        load_file(write(tmp_path / "w.csv", "a,b,y\n1,x,0\n2,3,1\n4,5\n"))
    with pytest.raises(DatasetError, match=r"row 3, column 1 \('a'\) holds 'x'"):
        load_file(write(tmp_path / "c.csv", "a,b,y\n1,2,z\nx,3,1\n4,5,0\n"))
    with pytest.raises(DatasetError, match=r"no column named 'q'"):
        load_file(write(tmp_path / "t.csv", "a,b,y\n1,x,0\n"), target="q")


def test_an_archive_of_very_many_members_is_refused_from_its_end_record(tmp_path):
    from nncore.datasets.files import MAX_MEMBERS

    members = {f"m{i}.npy": b"" for i in range(20_000)}
    members.update({"X.npy": npy_header((2, 1), "<f8") + bytes(16), "y.npy": npy_header((2,), "<f8") + bytes(16)})
    path = write_zip(tmp_path / "many.npz", members)
    peak, outcome = peak_bytes(load_file, path)
    assert isinstance(outcome, DatasetError) and outcome.field == "file"
    assert f"has 20,002 members; an archive of arrays 'X' and 'y' may have at most {MAX_MEMBERS}" in str(outcome)
    # zipfile never built its 20,000 member objects (~14 MB)
    assert peak < 1 << 20, peak


def test_an_archive_without_x_names_only_its_first_members(tmp_path):
    path = write_zip(tmp_path / "no-x.npz", {f"a{i}.npy": b"" for i in range(40)})
    with pytest.raises(DatasetError, match=r"it has: 'a0', 'a1', .*'a9' and 30 more$"):
        load_file(path)
