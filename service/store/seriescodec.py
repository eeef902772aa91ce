"""Metric series as packed blocks: raw points, and rollups kept at write time.

A series is stored at several *levels*. Level 0 holds the raw points, in blocks of
``RAW_SPAN`` consecutive steps. Level ``l >= 1`` holds *buckets* of ``WIDTHS[l]``
steps (count, min, max, first, last, sum, first and last step, first epoch, latest
write time), ``BUCKETS`` of them to a block. Block ``b`` of a level covers steps
``[b * span, (b + 1) * span)`` with ``span = block_span(level)``: a step's block at
every level is known without looking anything up, and a block is rewritten whole
(an idempotent overwrite keyed by series, level and block) each time it changes.

Everything here is NumPy on whole arrays; nothing is per point in Python. The SQL
side is ``service.store.metrics``.

Encoding (``FORMAT`` 1): a header, then integer columns as deltas (mostly zeros or a
constant, so zlib shrinks them to almost nothing) and float columns byte-shuffled
(the four planes of a float32, sign-and-exponent bytes together) before zlib, which
halves a smooth loss curve. Step series are float32 (4 bytes a point before
compression); epoch series are few and keep float64.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, fields

import numpy as np

FORMAT = 1
RAW_SPAN = 4096
#: bucket width of each level; level 0 is the raw points
WIDTHS = (1, 256, 4096, 65536, 1 << 20, 1 << 24)
BUCKETS = 256
LEVELS = range(1, len(WIDTHS))

# format, level, value bytes (4|8), integer bytes (1|2|4|8), n, base step, base epoch, base time
_HEADER = struct.Struct("<BBBBIqqd")
_INTS = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}
_ZLEVEL = 1


def block_span(level: int) -> int:
    return RAW_SPAN if level == 0 else WIDTHS[level] * BUCKETS


@dataclass
class Buckets:
    """Parallel arrays, sorted by ``key`` (the bucket number: ``first_step // width``;
    for raw points the step itself). A raw point is a bucket of count 1."""

    key: np.ndarray
    count: np.ndarray
    first_step: np.ndarray
    last_step: np.ndarray
    first_epoch: np.ndarray
    time: np.ndarray  # the latest write time in the bucket, seconds since the epoch
    vmin: np.ndarray
    vmax: np.ndarray
    first: np.ndarray
    last: np.ndarray
    total: np.ndarray

    def __len__(self) -> int:
        return len(self.key)

    def take(self, index: np.ndarray | slice) -> Buckets:
        return Buckets(*(getattr(self, f)[index] for f in _FIELDS))

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.count

    @staticmethod
    def points(steps: np.ndarray, epochs: np.ndarray, times: np.ndarray, values: np.ndarray) -> Buckets:
        steps = np.asarray(steps, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        return Buckets(steps, np.ones(len(steps), np.int64), steps, steps, np.asarray(epochs, np.int64),
                       np.asarray(times, np.float64), values, values, values, values, values)

    @staticmethod
    def empty() -> Buckets:
        return Buckets.points(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0))


_FIELDS = tuple(f.name for f in fields(Buckets))


def concat(parts: list[Buckets]) -> Buckets:
    parts = [p for p in parts if len(p)]
    if not parts:
        return Buckets.empty()
    if len(parts) == 1:
        return parts[0]
    return Buckets(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


def _run_starts(key: np.ndarray) -> np.ndarray:
    """Where each run of equal values of the sorted ``key`` starts."""
    if len(key) == 1:
        return np.zeros(1, np.intp)
    # not np.r_: its indexing machinery costs more than the comparison on short arrays
    return np.concatenate(([0], np.flatnonzero(key[1:] != key[:-1]) + 1))


def combine(b: Buckets, key: np.ndarray) -> Buckets:
    """Merge runs of equal ``key`` (sorted) into one bucket each: the aggregate of
    aggregates, exact for every field."""
    if len(b) == 0:
        return b
    starts = _run_starts(key)
    if len(starts) == len(b):
        return Buckets(key, *(getattr(b, f) for f in _FIELDS[1:]))
    ends = np.append(starts[1:], len(b)) - 1
    return Buckets(key[starts], np.add.reduceat(b.count, starts), b.first_step[starts], b.last_step[ends],
                   b.first_epoch[starts], np.maximum.reduceat(b.time, starts), np.minimum.reduceat(b.vmin, starts),
                   np.maximum.reduceat(b.vmax, starts), b.first[starts], b.last[ends],
                   np.add.reduceat(b.total, starts))


def rollup(b: Buckets, width: int) -> Buckets:
    """``b`` (points or finer buckets) in buckets of ``width`` steps."""
    return combine(b, b.first_step // width)


# -- encoding -------------------------------------------------------------------------------

def _shuffle(a: np.ndarray) -> bytes:
    return a.view(np.uint8).reshape(-1, a.itemsize).T.tobytes()


def _unshuffle(raw: bytes, dtype: np.dtype, n: int) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    planes = np.frombuffer(raw, np.uint8).reshape(itemsize, n)
    return planes.T.copy().view(dtype).reshape(n)


def _deltas(a: np.ndarray, base: int) -> np.ndarray:
    out = np.empty(len(a), np.int64)
    if len(a):
        out[0] = a[0] - base
        np.subtract(a[1:], a[:-1], out=out[1:])
    return out


def encode(level: int, b: Buckets, value_bytes: int) -> bytes:
    """One block's payload. ``value_bytes`` 4 stores values as float32 (min, max,
    first and last of a bucket; the sum stays float64)."""
    n = len(b)
    vt = np.float32 if value_bytes == 4 else np.float64
    base_step = int(b.first_step[0]) if n else 0
    base_epoch = int(b.first_epoch[0]) if n else 0
    base_time = float(b.time.min()) if n else 0.0
    ms = np.round((b.time - base_time) * 1000).astype(np.int64)
    if level == 0:
        ints = [_deltas(b.first_step, base_step), _deltas(b.first_epoch, base_epoch), _deltas(ms, 0)]
        floats = _shuffle(b.first.astype(vt))
    else:
        width = WIDTHS[level]
        ints = [_deltas(b.key, base_step // width), b.count, b.first_step - b.key * width,
                b.last_step - b.first_step, _deltas(b.first_epoch, base_epoch), _deltas(ms, 0)]
        floats = b"".join([_shuffle(b.vmin.astype(vt)), _shuffle(b.vmax.astype(vt)), _shuffle(b.first.astype(vt)),
                           _shuffle(b.last.astype(vt)), _shuffle(b.total.astype(np.float64))])
    ints_all = np.concatenate(ints)
    # the narrowest integer that holds every delta: zlib then reads an eighth as much
    int_bytes = next(size for size, t in _INTS.items()
                     if not len(ints_all) or (ints_all.min() >= np.iinfo(t).min and ints_all.max() <= np.iinfo(t).max))
    body = zlib.compress(ints_all.astype(_INTS[int_bytes]).tobytes(), _ZLEVEL)
    head = _HEADER.pack(FORMAT, level, value_bytes, int_bytes, n, base_step, base_epoch, base_time)
    return head + struct.pack("<I", len(body)) + body + zlib.compress(floats, _ZLEVEL)


def decode(payload: bytes) -> Buckets:
    out = _decode(payload)
    return Buckets.points(*out) if isinstance(out, tuple) else out


def decode_points(payloads: list[bytes]) -> tuple[np.ndarray, ...]:
    """The raw points of level-0 blocks, concatenated: (steps, epochs, times, values).
    Four columns instead of a bucket's eleven, for queries that read many blocks."""
    parts = [_decode(p) for p in payloads]
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0)
    return tuple(np.concatenate([part[i] for part in parts]) for i in range(4))  # type: ignore[index]


def _decode(payload: bytes) -> Buckets | tuple[np.ndarray, ...]:
    fmt, level, value_bytes, int_bytes, n, base_step, base_epoch, base_time = _HEADER.unpack_from(payload)
    if fmt != FORMAT:
        raise ValueError(f"metric block format {fmt} is not one this version reads ({FORMAT})")
    at = _HEADER.size
    (length,) = struct.unpack_from("<I", payload, at)
    at += 4
    ints = np.frombuffer(zlib.decompress(payload[at:at + length]), _INTS[int_bytes]).astype(np.int64)
    floats = zlib.decompress(payload[at + length:])
    vt = np.dtype(np.float32 if value_bytes == 4 else np.float64)
    if level == 0:
        steps = np.cumsum(ints[:n]) + base_step
        epochs = np.cumsum(ints[n:2 * n]) + base_epoch
        times = np.cumsum(ints[2 * n:3 * n]) / 1000 + base_time
        return steps, epochs, times, _unshuffle(floats, vt, n).astype(np.float64)
    width = WIDTHS[level]
    col = [ints[i * n:(i + 1) * n] for i in range(6)]
    key = np.cumsum(col[0]) + base_step // width
    first_step = col[2] + key * width
    size = vt.itemsize * n
    vals = [_unshuffle(floats[i * size:(i + 1) * size], vt, n).astype(np.float64) for i in range(4)]
    total = _unshuffle(floats[4 * size:], np.dtype(np.float64), n)
    return Buckets(key, col[1].copy(), first_step, first_step + col[3], np.cumsum(col[4]) + base_epoch,
                   np.cumsum(col[5]) / 1000 + base_time, *vals, total)


def block_of(b: Buckets, level: int) -> np.ndarray:
    """Each entry's block number at ``level``."""
    return b.first_step // block_span(level)


def split_blocks(b: Buckets, level: int) -> list[tuple[int, Buckets]]:
    """``b`` cut into the blocks of ``level`` it falls in."""
    if len(b) == 0:
        return []
    blocks = block_of(b, level)
    starts = _run_starts(blocks)
    ends = np.append(starts[1:], len(b))
    return [(int(blocks[s]), b.take(slice(s, e))) for s, e in zip(starts, ends, strict=False)]
