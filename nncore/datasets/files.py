"""User files: a ``.csv`` or ``.npz`` file read into a :class:`Dataset`.

Every error is a :class:`DatasetError` whose ``field`` says what to fix: ``"file"``
(missing, unreadable, or contents that are not a data set), ``"target"`` (the
``target`` argument names no usable column) or ``"task"``.

NPZ files are always read with ``allow_pickle=False``: a file holding object arrays
is refused rather than unpickled, because unpickling runs arbitrary code.
"""
from __future__ import annotations

import csv
import math
import os
import zipfile

import numpy as np

from .inference import make_dataset
from .types import TASKS, Dataset, DatasetError, plural, refuse

#: file extension -> format; the formats are also the dataset names that read a file
FORMATS = {".csv": "csv", ".npz": "npz"}


def load_file(path: str | os.PathLike, target: int | str | None = None,
              task: str | None = None, *, source: str | None = None) -> Dataset:
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
    source : str, optional
        What to call the file in error messages and the data set's name, e.g. the name
        a client uploaded it under when ``path`` is a temporary file; default ``path``.

    Returns
    -------
    Dataset
    """
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FORMATS:
        shown = os.fspath(path) if source is None else source
        raise DatasetError("file", f"cannot tell the format of {shown!r} from its extension "
                                   f"{ext or '(none)'!r}; use a .csv or .npz file")
    return load_path(path, FORMATS[ext], target=target, task=task, source=source)


def load_path(path: str | os.PathLike, kind: str, *, target: int | str | None,
              task: str | None, source: str | None = None) -> Dataset:
    """Read ``path`` as a file of format ``kind`` (a value of :data:`FORMATS`); see :func:`load_file`."""
    if task is not None and task not in (*TASKS, "classification"):
        raise DatasetError("task", f"`task` must be one of binary, multiclass, classification, regression, "
                                   f"got {task!r}")
    fspath = os.fspath(path)
    shown = fspath if source is None else source
    if not os.path.exists(fspath):
        raise DatasetError("file", f"file not found: {shown!r}")
    if not os.path.isfile(fspath):
        raise DatasetError("file", f"not a file: {shown!r}")
    name = os.path.splitext(os.path.basename(shown))[0]
    if kind == "csv":
        return _read_csv(fspath, f"CSV file {shown!r}", name, target, task)
    refuse("npz", " (X and y are separate arrays)", target=target)
    return _read_npz(fspath, f"NPZ file {shown!r}", name, task)


def _parse_float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _read_csv(path: str, where: str, name: str, target: int | str | None, task: str | None) -> Dataset:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            rows = []
            for cells in reader:
                if any(c.strip() for c in cells):
                    rows.append((reader.line_num, [c.strip() for c in cells]))
    except UnicodeDecodeError as exc:
        raise DatasetError("file", f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DatasetError("file", f"{where} is not valid CSV: {exc}") from None
    if not rows:
        raise DatasetError("file", f"{where} is empty")
    width = len(rows[0][1])
    if width < 2:
        raise DatasetError("file", f"{where} has {width} column; it needs at least one feature column "
                                   "and one target column")
    for line, cells in rows:
        if len(cells) != width:
            raise DatasetError("file", f"{where}: row {line} has {plural(len(cells), 'column')} but "
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
        raise DatasetError("file", f"{where} has a header row but no data rows")

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
            raise DatasetError("task", f"{where}: target {column(col)} holds text labels such as "
                                       f"{filled[0]!r}, which cannot be a regression target")
        for line, cells in rows:
            if not cells[col]:
                raise DatasetError("file", f"{where}: row {line}, {column(col)} is empty; every sample "
                                           "needs a label")
        y_values: np.ndarray = np.array([cells[col] for _, cells in rows])
    else:
        y_values = np.empty(len(rows))
        for i, (line, cells) in enumerate(rows):
            y_values[i] = _number(cells[col], f"{where}: row {line}, {column(col)}")
    target_label = header[col] if header else None
    feature_names = tuple(header[j] for j in feature_cols) if header else None
    return make_dataset(name, X, y_values, task, feature_names, target_label, where)


def _column_index(target: int | str | None, width: int, header: list[str] | None,
                  where: str) -> int:
    if target is None:
        return width - 1
    if isinstance(target, str):
        if header is None:
            raise DatasetError("target", f"{where} has no header row, so `target` must be a column index, "
                                         f"got {target!r}")
        matches = [j for j, h in enumerate(header) if h == target]
        if not matches:
            raise DatasetError("target", f"{where} has no column named {target!r}; columns: "
                                         f"{', '.join(repr(h) for h in header)}")
        if len(matches) > 1:
            raise DatasetError("target", f"{where} has {len(matches)} columns named {target!r}; "
                                         "pass `target` as a column index")
        return matches[0]
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        # DatasetError (a ValueError) like every other bad argument here, so callers
        # map all invalid input to one error.
        raise DatasetError(  # noqa: TRY004
            "target", f"`target` must be a column index or a header name, got {target!r}")
    if not -width <= target < width:
        raise DatasetError("target", f"`target` must be a column index in {-width}..{width - 1} "
                                     f"({where} has {width} columns), got {target!r}")
    return int(target) % width


def _number(cell: str, where: str) -> float:
    if not cell:
        raise DatasetError("file", f"{where} is empty; every cell must hold a number")
    value = _parse_float(cell)
    if value is None:
        raise DatasetError("file", f"{where} holds {cell!r}, which is not a number")
    if not math.isfinite(value):
        raise DatasetError("file", f"{where} holds {cell!r}; NaN and infinite values are not allowed")
    return value


def _read_npz(path: str, where: str, name: str, task: str | None) -> Dataset:
    arrays: dict[str, np.ndarray] = {}
    try:
        # allow_pickle=False: an object array would otherwise be unpickled, which can
        # run arbitrary code from the file.
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise DatasetError("file", f"{where} is a single .npy array, not an archive of arrays "
                                           "'X' and 'y'")
            missing = [k for k in ("X", "y") if k not in npz.files]
            if missing:
                raise DatasetError("file", f"{where} must contain arrays 'X' and 'y'; it has: "
                                           f"{', '.join(repr(k) for k in npz.files) or 'no arrays'}")
            for key in ("X", "y"):
                try:
                    arrays[key] = npz[key]
                except ValueError as exc:
                    if "pickle" in str(exc) or "Object arrays" in str(exc):
                        raise DatasetError(
                            "file", f"{where}: array {key!r} holds Python objects; such arrays are "
                            "refused because loading them means unpickling, which can run code. "
                            "Save numeric (or string-label) arrays instead") from None
                    raise DatasetError("file", f"{where}: cannot read array {key!r}: {exc}") from None
    except DatasetError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            # np.load falls back to unpickling anything that is neither .npy nor .npz.
            raise DatasetError("file", f"{where} is not an NPZ archive, and reading it would mean "
                                       "unpickling, which is refused because it can run code") from None
        raise DatasetError("file", f"{where} cannot be read: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError("file", f"{where} is not a readable NPZ archive: {exc}") from None

    X, y = arrays["X"], arrays["y"]
    if X.dtype.kind not in "biuf":
        raise DatasetError("file", f"{where}: 'X' must be numeric, got dtype {X.dtype}")
    if X.ndim == 0:
        raise DatasetError("file", f"{where}: 'X' must have one row per sample, got a scalar")
    if X.size == 0 or y.size == 0:
        raise DatasetError("file", f"{where} holds no data: 'X' has shape {X.shape}, 'y' {y.shape}")
    X = X.reshape(X.shape[0], -1).astype(np.float64)
    if y.dtype.kind not in "biufUS":
        raise DatasetError("file", f"{where}: 'y' must be numeric or text labels, got dtype {y.dtype}")
    if y.ndim == 0 or y.ndim > 2:
        raise DatasetError("file", f"{where}: 'y' must have shape (n_samples,) or (n_samples, n_targets), "
                                   f"got {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise DatasetError("file", f"{where}: 'X' has {X.shape[0]} samples but 'y' has {y.shape[0]}")
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DatasetError("file", f"{where}: 'X' holds {X[i, j]} at row {i}, column {j} (0-based); "
                                   "NaN and infinite values are not allowed")
    if y.dtype.kind in "US":
        y = y.astype(str)
        if task == "regression":
            raise DatasetError("task", f"{where}: 'y' holds text labels, which cannot be a regression target")
    else:
        y = y.astype(np.float64)
        bad_y = ~np.isfinite(y)
        if bad_y.any():
            i = np.argwhere(bad_y)[0][0]
            raise DatasetError("file", f"{where}: 'y' holds a NaN or infinite value at row {i} (0-based)")
    return make_dataset(name, X, y, task, None, None, where)

