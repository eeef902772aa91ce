"""User files: a ``.csv`` or ``.npz`` file read into a :class:`Dataset`.

Every error is a :class:`DatasetError` whose ``field`` says what to fix: ``"file"``
(missing, unreadable, or contents that are not a data set), ``"target"`` (the
``target`` argument names no usable column) or ``"task"``.

NPZ files are always read with ``allow_pickle=False``: a file holding object arrays
is refused rather than unpickled, because unpickling runs arbitrary code.

A file's size says little about what reading it costs: an NPZ archive of half a
megabyte can inflate to gigabytes, and one CSV line of empty cells becomes millions of
Python objects. So every file is measured against :class:`FileLimits` before it is
read: an NPZ archive by its zip directory and the ``.npy`` headers of ``X`` and ``y``
alone, a CSV file line by line as it streams, so that memory stays a small multiple
of the file's size and a file past a limit is refused as soon as it is seen to be.
"""
from __future__ import annotations

import csv
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from io import BytesIO
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from ..spec import DEFAULT_LIMITS
from .inference import make_dataset
from .types import TASKS, Dataset, DatasetError, plural, refuse

#: file extension -> format; the formats are also the dataset names that read a file
FORMATS = {".csv": "csv", ".npz": "npz"}

#: Characters a CSV record may take per column it is allowed. Any number fits in far
#: fewer (``-1.2345678901234567e-308`` is 24); the bound is there so that one line
#: cannot hold millions of empty cells, which csv would make one string each.
CSV_CHARS_PER_COLUMN = 256
# numpy's own default for np.load's max_header_size
_MAX_NPY_HEADER = 10_000
# bytes a zip member may declare beyond what its .npy header accounts for
_NPY_SLACK = 4096
# small enough not to count in the memory a file costs, large enough to count fast
_COUNT_CHUNK = 1 << 18
_ZIP_PREFIXES = (b"PK\x03\x04", b"PK\x05\x06")
#: an archive's members and central directory, read before zipfile parses it: np.savez
#: writes one member per array, and zipfile holds an object per member in memory
#: (200,000 empty members cost it ~136 MiB and a second)
MAX_MEMBERS = 256
MAX_DIRECTORY_BYTES = 1 << 20
_EOCD = b"PK\x05\x06"
#: names shown when an archive lacks X or y
_SHOWN_NAMES = 10


@dataclass(frozen=True)
class FileLimits:
    """Bounds on a user file, checked before its contents cost memory.

    Attributes
    ----------
    max_rows : int
        Samples: CSV data rows (the header not counted), the first axis of NPZ arrays.
        Default: ``nncore.spec.DEFAULT_LIMITS["max_samples"]``.
    max_features : int
        Feature columns: all CSV columns but the target; for NPZ, the values per sample
        of ``X`` (the product of its shape after the first axis), and the targets per
        sample of ``y``. No network takes more inputs than the widest layer a spec
        allows, hence the default ``DEFAULT_LIMITS["max_units"]``.
    max_cells : int
        Values in all: CSV rows times columns (target included), NPZ rows times
        features of ``X`` (and rows times targets of ``y``). An NPZ array may also
        declare at most :attr:`max_bytes` bytes of data. Default 2**25, 256 MiB of
        float64.
    """

    max_rows: int = DEFAULT_LIMITS["max_samples"]
    max_features: int = DEFAULT_LIMITS["max_units"]
    max_cells: int = 2**25

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"FileLimits.{f.name} must be a whole number >= 1, got {value!r}")

    @property
    def max_columns(self) -> int:
        """CSV columns a row may have: the features and the target."""
        return self.max_features + 1

    @property
    def max_record_chars(self) -> int:
        """Characters one CSV record (line endings included) may take."""
        return (self.max_columns + 1) * CSV_CHARS_PER_COLUMN

    @property
    def max_bytes(self) -> int:
        """Data bytes one NPZ array may declare: :attr:`max_cells` float64 values. Text
        labels count too, so ``y`` cannot hide gigabytes in a few long strings."""
        return self.max_cells * 8


def load_file(path: str | os.PathLike, target: int | str | None = None,
              task: str | None = None, *, source: str | None = None,
              limits: FileLimits | None = None) -> Dataset:
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
    limits : FileLimits, optional
        Rows, features and values the file may hold; default ``FileLimits()``. A file
        past one is refused (field ``"file"``) with a message naming the limit, before
        it is read into memory.

    Returns
    -------
    Dataset
    """
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FORMATS:
        shown = os.fspath(path) if source is None else source
        raise DatasetError("file", f"cannot tell the format of {shown!r} from its extension "
                                   f"{ext or '(none)'!r}; use a .csv or .npz file")
    return load_path(path, FORMATS[ext], target=target, task=task, source=source, limits=limits)


def load_path(path: str | os.PathLike, kind: str, *, target: int | str | None,
              task: str | None, source: str | None = None, limits: FileLimits | None = None) -> Dataset:
    """Read ``path`` as a file of format ``kind`` (a value of :data:`FORMATS`); see :func:`load_file`."""
    if task is not None and task not in (*TASKS, "classification"):
        raise DatasetError("task", f"`task` must be one of binary, multiclass, classification, regression, "
                                   f"got {task!r}")
    limits = FileLimits() if limits is None else limits
    fspath = os.fspath(path)
    shown = fspath if source is None else source
    if not os.path.exists(fspath):
        raise DatasetError("file", f"file not found: {shown!r}")
    if not os.path.isfile(fspath):
        raise DatasetError("file", f"not a file: {shown!r}")
    name = os.path.splitext(os.path.basename(shown))[0]
    if kind == "csv":
        return _read_csv(fspath, f"CSV file {shown!r}", name, target, task, limits)
    refuse("npz", " (X and y are separate arrays)", target=target)
    return _read_npz(fspath, f"NPZ file {shown!r}", name, task, limits)


def _parse_float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


# -- CSV ---------------------------------------------------------------------------------

def _count_lines(path: str) -> int:
    """An upper bound on the records of a text file: its physical lines, counted in
    binary chunks, so the feature array can be allocated once and never grown."""
    newlines = returns = pairs = 0
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(_COUNT_CHUNK):
            newlines += chunk.count(b"\n")
            returns += chunk.count(b"\r")
            # a CRLF split across two chunks counts twice: still an upper bound
            pairs += chunk.count(b"\r\n")
    return newlines + returns - pairs + 1


class _Lines:
    """The physical lines of a CSV file, as ``csv.reader`` pulls them, measured before
    csv splits them: the cost of a record is known while it is still one string."""

    def __init__(self, fh: IO[str], where: str, limits: FileLimits) -> None:
        self._fh = fh
        self._where = where
        self._limits = limits
        self.number = 0  # physical lines handed out, as csv's line_num counts them
        self._chars = 0  # of the record being read
        self._lines = 0  # of the record being read: past the first, csv is inside quotes

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        limit = self._limits.max_record_chars
        # readline's size: a line longer than the limit is never read whole
        text = self._fh.readline(limit + 1 - self._chars)
        if not text:
            raise StopIteration
        self.number += 1
        self._chars += len(text)
        if self._chars > limit:
            raise DatasetError("file", f"{self._where}: row {self.number} is longer than {limit:,} characters, "
                                       f"the limit for one row ({CSV_CHARS_PER_COLUMN} per column, for at most "
                                       f"{self._limits.max_features:,} feature columns and the target)")
        if self._lines == 0 and '"' not in text:
            # unquoted, csv would split it into exactly this many cells
            _check_columns(text.count(",") + 1, self.number, self._where, self._limits)
        self._lines += 1
        return text

    def record_done(self) -> None:
        self._chars = self._lines = 0


def _check_columns(width: int, line: int, where: str, limits: FileLimits) -> None:
    if width > limits.max_columns:
        raise DatasetError("file", f"{where} has more than {limits.max_features:,} feature columns (row {line} "
                                   f"has {width:,} columns); the limit is {limits.max_features:,} feature "
                                   "columns and the target")


class _TargetColumn:
    """The target cells, kept as numbers while every cell may be one and as text while
    every filled cell is text, so neither costs a Python string per row. Errors are
    kept to be raised after the features', which come first."""

    def __init__(self, rows: int, where: str, column: str, limits: FileLimits) -> None:
        self.values = np.empty(rows)
        self._column = column
        self.labels: list[str] | None = []
        self._interned: dict[str, str] = {}
        self._longest = 0
        self._where = where
        self._limits = limits
        self.first_text: str | None = None
        self.first_empty: int | None = None
        self.numeric_error: DatasetError | None = None

    def add(self, i: int, line: int, cell: str) -> None:
        """Take the cell of row ``i``, line ``line`` of the file."""
        value = _parse_float(cell) if cell else None
        if value is not None:
            self.values[i] = value
            self.labels = None  # a number: this is not a column of text labels
        else:
            if not cell and self.first_empty is None:
                self.first_empty = line
            if cell and self.first_text is None:
                self.first_text = cell
        if self.numeric_error is None and (value is None or not math.isfinite(value)):
            try:
                _number(cell, f"{self._where}: row {line}, {self._column}")
            except DatasetError as exc:
                self.numeric_error = exc
        if self.labels is not None:
            # class labels repeat: one string per distinct label, not per row
            self.labels.append(self._interned.setdefault(cell, cell))
            self._longest = max(self._longest, len(cell))
            # the labels become an array of fixed-width (4 bytes a character) strings
            size = len(self.labels) * 4 * self._longest
            if size > self._limits.max_bytes:
                raise DatasetError("file", f"{self._where}: the text labels of the target column would take "
                                           f"{size:,} bytes by row {line} (labels of up to {self._longest:,} "
                                           f"characters); the limit is {self._limits.max_bytes:,} bytes")


def _read_csv(path: str, where: str, name: str, target: int | str | None, task: str | None,
              limits: FileLimits) -> Dataset:
    try:
        upper = _count_lines(path)
        with open(path, newline="", encoding="utf-8-sig") as fh:
            lines = _Lines(fh, where, limits)
            return _parse_csv(lines, upper, where, name, target, task, limits)
    except UnicodeDecodeError as exc:
        raise DatasetError("file", f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DatasetError("file", f"{where} is not valid CSV: {exc}") from None


def _parse_csv(lines: _Lines, upper: int, where: str, name: str, target: int | str | None,
               task: str | None, limits: FileLimits) -> Dataset:
    reader = csv.reader(lines)

    def records() -> Iterator[tuple[int, list[str]]]:
        for cells in reader:
            lines.record_done()
            if any(map(str.strip, cells)):
                yield reader.line_num, cells

    stream = records()
    first_line, first = next(stream, (0, None))
    if first is None:
        raise DatasetError("file", f"{where} is empty")
    first = [c.strip() for c in first]
    width = len(first)
    if width < 2:
        raise DatasetError("file", f"{where} has {width} column; it needs at least one feature column "
                                   "and one target column")
    _check_columns(width, first_line, where, limits)

    # An error found from here on is held until every row's width has been checked, the
    # order errors were always reported in; once one is held, no further cell is parsed.
    pending: DatasetError | None = None
    header: list[str] | None = None
    col = width - 1
    try:
        if isinstance(target, str):
            is_header = any(_parse_float(c) is None for c in first)
        else:
            col = _column_index(target, width, None, where)
            # The target may hold text labels, so only the feature cells decide.
            is_header = any(_parse_float(c) is None for j, c in enumerate(first) if j != col)
        header = first if is_header else None
        col = _column_index(target, width, header, where)
    except DatasetError as exc:
        pending = exc
        is_header = False

    def column(j: int) -> str:
        return f"column {j + 1} ({header[j]!r})" if header else f"column {j + 1}"

    feature_cols = [j for j in range(width) if j != col]
    # np.empty does not touch the pages it never writes: blank lines cost nothing
    rows = min(upper, limits.max_rows, limits.max_cells // width)
    X = np.empty((rows, width - 1))
    y = _TargetColumn(rows, where, column(col), limits)

    data = stream if is_header else _prepend((first_line, first), stream)
    n = 0
    for line, cells in data:
        if len(cells) != width:
            raise DatasetError("file", f"{where}: row {line} has {plural(len(cells), 'column')} but "
                                       f"row {first_line} has {width}")
        if n >= limits.max_rows:
            raise DatasetError("file", f"{where} has more than {limits.max_rows:,} rows of data (row {line} is "
                                       f"one too many); the limit is {limits.max_rows:,}")
        if (n + 1) * width > limits.max_cells:
            raise DatasetError("file", f"{where} has more than {limits.max_cells:,} cells ({n + 1:,} rows of "
                                       f"{width:,} columns by row {line}); the limit is {limits.max_cells:,} "
                                       "cells")
        if pending is None:
            pending = _parse_row(X, n, line, cells, col, feature_cols, where, column)
            y.add(n, line, cells[col].strip())
        n += 1
    if pending is not None:
        raise pending
    if n == 0:
        raise DatasetError("file", f"{where} has a header row but no data rows")

    if y.labels is not None and y.first_text is not None:
        # Text labels (e.g. "setosa") make the target a class column. A column that
        # mixes text and numbers falls through to the numeric parse, whose error names
        # the first text cell, since that is more likely a typo than a label.
        if task == "regression":
            raise DatasetError("task", f"{where}: target {column(col)} holds text labels such as "
                                       f"{y.first_text!r}, which cannot be a regression target")
        if y.first_empty is not None:
            raise DatasetError("file", f"{where}: row {y.first_empty}, {column(col)} is empty; every sample "
                                       "needs a label")
        y_values: np.ndarray = np.array(y.labels)
    elif y.numeric_error is not None:
        raise y.numeric_error
    else:
        y_values = y.values[:n]
    target_label = header[col] if header else None
    feature_names = tuple(header[j] for j in feature_cols) if header else None
    return make_dataset(name, X[:n], y_values, task, feature_names, target_label, where)


def _prepend(item: tuple[int, list[str]], rest: Iterator[tuple[int, list[str]]]
             ) -> Iterator[tuple[int, list[str]]]:
    yield item
    yield from rest


def _parse_row(X: np.ndarray, i: int, line: int, cells: list[str], col: int, feature_cols: list[int],
               where: str, column: Callable[[int], str]) -> DatasetError | None:
    """Fill ``X[i]`` from a row's feature cells; the error of its first bad cell, if any."""
    feats = cells[:col] + cells[col + 1:]
    try:
        # float() in C over the whole row; the per-cell parse below only names a bad cell
        values = list(map(float, feats))
    except ValueError:
        values = None
    # a sum that is not finite flags NaN or infinity in one pass (or a harmless overflow)
    if values is not None and math.isfinite(sum(values)):
        X[i] = values
        return None
    for out_j, j in enumerate(feature_cols):
        try:
            X[i, out_j] = _number(cells[j].strip(), f"{where}: row {line}, {column(j)}")
        except DatasetError as exc:
            return exc
    return None


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


# -- NPZ ---------------------------------------------------------------------------------

def _objects_refused(where: str, key: str) -> DatasetError:
    return DatasetError("file", f"{where}: array {key!r} holds Python objects; such arrays are "
                                "refused because loading them means unpickling, which can run code. "
                                "Save numeric (or string-label) arrays instead")


def _npy_header(fh: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the ``.npy`` header at the start of ``fh``, reading the
    header only; ValueError saying why it is not one."""
    magic = fh.read(npy_format.MAGIC_LEN)
    if not magic.startswith(npy_format.MAGIC_PREFIX) or len(magic) != npy_format.MAGIC_LEN:
        raise ValueError("it does not start with the .npy signature")
    major, minor = magic[-2:]
    if (major, minor) not in ((1, 0), (2, 0)):
        # 3.0 exists only for structured dtypes with non-Latin-1 field names, never a data set
        raise ValueError(f"it uses .npy format version {major}.{minor}; save it with numpy.savez")
    size_format = "<H" if major == 1 else "<I"
    raw = fh.read(struct.calcsize(size_format))
    if len(raw) != struct.calcsize(size_format):
        raise ValueError("its header is cut short")
    (length,) = struct.unpack(size_format, raw)
    # checked before reading: version 2.0 may declare a header of 4 GiB
    if length > _MAX_NPY_HEADER:
        raise ValueError(f"its header is {length:,} bytes long; numpy reads at most {_MAX_NPY_HEADER:,}")
    text = fh.read(length)
    if len(text) != length:
        raise ValueError("its header is cut short")
    read_header = npy_format.read_array_header_1_0 if major == 1 else npy_format.read_array_header_2_0
    shape, _fortran_order, dtype = read_header(BytesIO(raw + text), max_header_size=_MAX_NPY_HEADER)
    if any(d < 0 for d in shape):
        raise ValueError(f"its header declares the shape {shape}")
    return tuple(int(d) for d in shape), dtype


def _check_npz(path: str, where: str, limits: FileLimits) -> None:
    """Refuse an archive whose ``X`` or ``y`` would cost more than ``limits`` allow,
    from its zip directory and their ``.npy`` headers alone: nothing is inflated past
    a header. An archive that passes holds arrays np.load reads within the limits."""
    with open(path, "rb") as fh:
        magic = fh.read(len(npy_format.MAGIC_PREFIX))
    if magic == npy_format.MAGIC_PREFIX:
        # np.load would read it whole, whatever its header declares
        raise DatasetError("file", f"{where} is a single .npy array, not an archive of arrays 'X' and 'y'")
    if not magic.startswith(_ZIP_PREFIXES):
        return  # np.load takes it for a pickle, which allow_pickle=False refuses
    _check_directory(path, where)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        # the names np.load's NpzFile gives the members: "X" is "X" or else "X.npy"
        members = {n.removesuffix(".npy"): n for n in names}
        members.update({n: n for n in names})
        missing = [k for k in ("X", "y") if k not in members]
        if missing:
            files = [n.removesuffix(".npy") for n in names]
            shown = ", ".join(repr(k) for k in files[:_SHOWN_NAMES]) or "no arrays"
            more = f" and {len(files) - _SHOWN_NAMES:,} more" if len(files) > _SHOWN_NAMES else ""
            raise DatasetError("file", f"{where} must contain arrays 'X' and 'y'; it has: {shown}{more}")
        for key in ("X", "y"):
            _check_member(zf, members[key], key, where, limits)


def _check_directory(path: str, where: str) -> None:
    """Refuse an archive of more than MAX_MEMBERS members, or a central directory over
    MAX_DIRECTORY_BYTES, from its end record alone (the last 22 bytes plus any comment,
    at most 64 KiB), before zipfile reads the directory into objects."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        fh.seek(max(0, size - (22 + 0xFFFF)))
        tail = fh.read()
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        return  # no end record: zipfile refuses it as not a zip archive
    entries, directory = struct.unpack("<HL", tail[at + 10:at + 16])
    # 0xFFFF / 0xFFFFFFFF: the true figures are in a zip64 record, and so beyond any bound here
    if entries > MAX_MEMBERS:
        raise DatasetError("file", f"{where} has {'more than 65,534' if entries == 0xFFFF else f'{entries:,}'} "
                                   f"members; an archive of arrays 'X' and 'y' may have at most {MAX_MEMBERS}")
    if directory > MAX_DIRECTORY_BYTES:
        raise DatasetError("file", f"{where} has a zip directory of {directory:,} bytes; at most "
                                   f"{MAX_DIRECTORY_BYTES:,} are read for an archive of arrays")


def _check_member(zf: zipfile.ZipFile, member: str, key: str, where: str, limits: FileLimits) -> None:
    info = zf.getinfo(member)
    with zf.open(info) as fh:
        try:
            shape, dtype = _npy_header(fh)
        except ValueError as exc:
            raise DatasetError("file", f"{where}: {member!r} is not a NumPy .npy array ({exc}); an NPZ file "
                                       "holds arrays as numpy.savez writes them") from None
        header_bytes = fh.tell()
    if dtype.hasobject:
        raise _objects_refused(where, key)
    if key == "X" and dtype.kind not in "biuf":
        raise DatasetError("file", f"{where}: 'X' must be numeric, got dtype {dtype}")
    if key == "y" and dtype.kind not in "biufUS":
        raise DatasetError("file", f"{where}: 'y' must be numeric or text labels, got dtype {dtype}")
    # Python ints throughout: a declared 8 TiB must not overflow into something small
    rows = shape[0] if shape else 1
    per_row = math.prod(shape[1:])
    what = "features" if key == "X" else "targets"
    if rows > limits.max_rows:
        raise DatasetError("file", f"{where}: array {key!r} has {rows:,} rows (shape {shape}); the limit is "
                                   f"{limits.max_rows:,} rows")
    if per_row > limits.max_features:
        raise DatasetError("file", f"{where}: array {key!r} has {per_row:,} {what} per sample (shape {shape}); "
                                   f"the limit is {limits.max_features:,}")
    if rows * per_row > limits.max_cells:
        raise DatasetError("file", f"{where}: array {key!r} holds {rows * per_row:,} values ({rows:,} rows of "
                                   f"{per_row:,} {what}); the limit is {limits.max_cells:,} values")
    data_bytes = rows * per_row * dtype.itemsize
    if data_bytes > limits.max_bytes:
        raise DatasetError("file", f"{where}: array {key!r} declares {data_bytes:,} bytes of data (shape {shape}, "
                                   f"dtype {dtype}); the limit is {limits.max_bytes:,} bytes")
    if info.file_size > header_bytes + data_bytes + _NPY_SLACK:
        # np.load would read only what the header declares, but such a member is not
        # something numpy wrote, and its excess is what a bomb would hide
        raise DatasetError("file", f"{where}: {member!r} inflates to {info.file_size:,} bytes, more than the "
                                   f"{header_bytes + data_bytes:,} its .npy header accounts for; the archive is "
                                   "inconsistent (limit: the header's size plus "
                                   f"{_NPY_SLACK:,} bytes)")


def _read_npz(path: str, where: str, name: str, task: str | None, limits: FileLimits) -> Dataset:
    arrays: dict[str, np.ndarray] = {}
    try:
        _check_npz(path, where, limits)
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
                        raise _objects_refused(where, key) from None
                    raise DatasetError("file", f"{where}: cannot read array {key!r}: {exc}") from None
    except DatasetError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            # np.load falls back to unpickling anything that is neither .npy nor .npz.
            raise DatasetError("file", f"{where} is not an NPZ archive, and reading it would mean "
                                       "unpickling, which is refused because it can run code") from None
        raise DatasetError("file", f"{where} cannot be read: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError) as exc:
        # RuntimeError: an encrypted member; NotImplementedError: a compression zipfile lacks
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
