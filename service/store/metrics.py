"""A job's metric series in SQL: written as packed blocks with their rollups, cut back
to a checkpoint when an attempt resumes, and read at the resolution asked.

Exactly once: an attempt's :class:`SeriesWriter` holds the open block of each series
at each level and rewrites whole blocks (an upsert keyed by job, series, level and
block), so writing the same points twice changes nothing. The points up to a
checkpoint's step are written in the transaction that lists the checkpoint, with
:meth:`SeriesWriter.cut` (each series' last bucket at every level) stored on its row.
A resumed attempt first calls :func:`cut_series`: everything past the checkpoint's
step goes and the bucket that straddles it becomes the one stored in the cut, exact
even where raw points are not kept. Every write of an attempt is fenced by its lease
(``service.store.results``), so a stale attempt writes nothing.

Reads (:func:`list_points`, :func:`downsample`) touch only the blocks of the level
that answers: the coarsest whose buckets still give the number of points asked.
"""
from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import and_, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from nncore.series import BY_NAME

from .errors import FieldProblem, Invalid
from .models import MetricBlock
from .seriescodec import (
    LEVELS,
    RAW_SPAN,
    WIDTHS,
    Buckets,
    block_span,
    combine,
    concat,
    decode,
    decode_points,
    encode,
    rollup,
    split_blocks,
)

MAX_METRIC_NAME = 64
MAX_METRICS_PAGE = 10_000
MAX_POINTS = 10_000
MIN_POINTS = 4
_BUCKET_FIELDS = ("key", "count", "first_step", "last_step", "first_epoch", "time", "vmin", "vmax", "first", "last",
                  "total")


def value_bytes(name: str) -> int:
    """Step series are float32; epoch series (and series the catalog does not know)
    are few points and keep float64."""
    known = BY_NAME.get(name)
    return 4 if known is not None and known.per == "step" else 8


# -- writing --------------------------------------------------------------------------------

@dataclass
class _Series:
    name: str
    value_bytes: int
    last_step: int = -1
    raw_block: int = -1
    raw: Buckets = field(default_factory=Buckets.empty)
    #: level -> (block number, its buckets): the open block of each rollup level
    open: dict[int, tuple[int, Buckets]] = field(default_factory=dict)
    #: level -> its first block number: a level above is kept once the one below it
    #: moves past its first block (until then the level below holds the whole series in
    #: one block, which any query reads in one go)
    first_block: dict[int, int] = field(default_factory=dict)
    raw_floor: int = 0


class SeriesWriter:
    """One attempt's series of one job, in memory as far as the open blocks go.

    ``raw_steps``: keep the raw points of every step (None), of none (0; rollups only),
    or of about the last N steps (whole blocks of ``RAW_SPAN`` go once all their steps
    are older). Epoch series always keep their raw points.
    """

    def __init__(self, job_id: int, raw_steps: int | None = None) -> None:
        self.job_id, self.raw_steps = job_id, raw_steps
        self.series: dict[str, _Series] = {}
        self._dirty: dict[tuple[str, int, int], Buckets] = {}
        self._trim: dict[str, int] = {}

    def _get(self, name: str) -> _Series:
        s = self.series.get(name)
        if s is None:
            if not isinstance(name, str) or not 0 < len(name) <= MAX_METRIC_NAME or "\x00" in name:
                raise ValueError(f"a series name must be 1 to {MAX_METRIC_NAME} characters, got {name!r}")
            s = self.series[name] = _Series(name, value_bytes(name))
        return s

    def _raw_limit(self, s: _Series) -> int | None:
        """The raw steps ``s`` keeps: epoch series (float64, few points) keep all."""
        return None if s.value_bytes == 8 else self.raw_steps

    @property
    def pending(self) -> bool:
        return bool(self._dirty or self._trim)

    def append(self, name: str, steps: np.ndarray, epochs: np.ndarray, times: np.ndarray, values: np.ndarray
               ) -> None:
        """Points of one series, steps increasing and past what it holds already."""
        s = self._get(name)
        steps = np.asarray(steps, np.int64)
        if len(steps) == 0:
            return
        if steps[0] <= s.last_step or (len(steps) > 1 and np.any(steps[1:] <= steps[:-1])):
            raise ValueError(f"series {name!r}: steps must increase past {s.last_step}")
        values = np.asarray(values, np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"series {name!r}: values must be finite")
        if s.value_bytes == 4:
            values = values.astype(np.float32).astype(np.float64)
        points = Buckets.points(steps, epochs, times, values)
        s.last_step = int(steps[-1])
        limit = self._raw_limit(s)
        if limit != 0:
            for block, part in split_blocks(points, 0):
                s.raw = concat([s.raw, part]) if block == s.raw_block else part
                s.raw_block = block
                self._dirty[(name, 0, block)] = s.raw
            if limit:
                floor = (s.last_step - limit + 1) // RAW_SPAN
                if floor > s.raw_floor:
                    s.raw_floor = self._trim[name] = floor
        finer = points  # this append's entries at the level below
        whole: Buckets | None = None  # the whole series at the level below, when it just moved past its first block
        for level in LEVELS:
            if level not in s.open:
                if level > 1:
                    if whole is None:
                        break  # not needed yet, nor any level above it
                    finer = whole
                s.first_block[level] = int(finer.first_step[0] // block_span(level))
            finer = rollup(finer, WIDTHS[level])
            before = s.open.get(level)
            single = before is not None and before[0] == s.first_block[level]
            for block, part in split_blocks(finer, level):
                current = s.open.get(level)
                if current is not None and current[0] == block:
                    both = concat([current[1], part])
                    part = combine(both, both.key)
                s.open[level] = (block, part)
                self._dirty[(name, level, block)] = part
            whole = None
            if level + 1 not in s.open and s.open[level][0] != s.first_block[level]:
                # past its first block: the level above starts, from the whole of this one
                if before is None:  # this level began with this append
                    whole = finer
                elif single:
                    both = concat([before[1], finer])
                    whole = combine(both, both.key)

    def rows(self) -> list[dict[str, Any]]:
        return [block_row(self.job_id, name, level, block, b, self.series[name].value_bytes)
                for (name, level, block), b in self._dirty.items()]

    def flush(self, session: Any) -> int:
        """Write every changed block (and drop raw blocks past ``raw_steps``) in the
        caller's transaction; return the blocks written. The caller commits, then
        calls :meth:`written` (until then a retry writes the same blocks again)."""
        rows = self.rows()
        if rows:
            upsert_blocks(session, rows)
        for name, floor in self._trim.items():
            session.execute(delete(MetricBlock).where(MetricBlock.job_id == self.job_id, MetricBlock.name == name,
                                                      MetricBlock.level == 0, MetricBlock.block < floor))
        return len(rows)

    def written(self) -> None:
        """The last :meth:`flush` is committed."""
        self._dirty.clear()
        self._trim.clear()

    def cut(self) -> dict[str, Any]:
        """Each series' last step and last bucket at every level (see :func:`cut_series`)."""
        out = {}
        for name, s in self.series.items():
            levels = {}
            for level, (_, b) in s.open.items():
                if len(b):
                    levels[str(level)] = [_plain(getattr(b, f)[-1]) for f in _BUCKET_FIELDS]
            out[name] = {"last_step": s.last_step, "levels": levels}
        return out

    def load(self, session: Any) -> SeriesWriter:
        """Continue the series already stored: read the last block of each level."""
        last = (select(MetricBlock.name, MetricBlock.level, func.max(MetricBlock.block).label("block"),
                       func.min(MetricBlock.block).label("first"))
                .where(MetricBlock.job_id == self.job_id).group_by(MetricBlock.name, MetricBlock.level).subquery())
        rows = session.execute(select(MetricBlock.name, MetricBlock.level, MetricBlock.block, last.c.first,
                                      MetricBlock.payload)
                               .join(last, and_(MetricBlock.name == last.c.name, MetricBlock.level == last.c.level,
                                                MetricBlock.block == last.c.block))
                               .where(MetricBlock.job_id == self.job_id)).all()
        for name, level, block, first, payload in rows:
            s = self._get(name)
            b = decode(payload)
            s.last_step = max(s.last_step, int(b.last_step[-1]))
            if level == 0:
                s.raw_block, s.raw = int(block), b
            else:
                s.open[int(level)] = (int(block), b)
                s.first_block[int(level)] = int(first)
        return self


def _plain(v: Any) -> int | float:
    return v.item() if hasattr(v, "item") else v


def block_row(job_id: int, name: str, level: int, block: int, b: Buckets, value_bytes: int) -> dict[str, Any]:
    """The ``metric_blocks`` row of one block: its payload and its own aggregate."""
    return {"job_id": job_id, "name": name, "level": level, "block": block, "first_step": int(b.first_step[0]),
            "last_step": int(b.last_step[-1]), "count": int(b.count.sum()), "vmin": float(b.vmin.min()),
            "vmax": float(b.vmax.max()), "payload": encode(level, b, value_bytes)}


_UPSERTS: dict[str, Any] = {}


def upsert_blocks(session: Any, rows: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name if hasattr(session, "get_bind") else session.dialect.name
    stmt = _UPSERTS.get(dialect)
    if stmt is None:  # built once: building it costs more than a small flush
        stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(MetricBlock)
        stmt = _UPSERTS[dialect] = stmt.on_conflict_do_update(
            index_elements=["job_id", "name", "level", "block"],
            set_={c: stmt.excluded[c] for c in ("first_step", "last_step", "count", "vmin", "vmax", "payload")})
    session.execute(stmt, rows)


def cut_series(session: Any, job_id: int, step: int | None, cut: dict[str, Any] | None) -> None:
    """Make the job's series hold exactly the points up to ``step`` (None: no points),
    as the checkpoint a resumed attempt starts from saw them. ``cut`` is that
    checkpoint's :meth:`SeriesWriter.cut`; without one (a checkpoint from before cuts
    were stored), a straddling bucket is rebuilt from raw points, or dropped where
    there are none. Not committed here."""
    where = MetricBlock.job_id == job_id
    if step is None:
        session.execute(delete(MetricBlock).where(where))
        return
    levels = range(len(WIDTHS))
    for level in levels:
        session.execute(delete(MetricBlock).where(where, MetricBlock.level == level,
                                                  MetricBlock.block > step // block_span(level)))
    for name, saved in (cut or {}).items():
        # a level the series did not have yet at the checkpoint is built again, whole,
        # when the level below it next moves past its first block
        session.execute(delete(MetricBlock).where(
            where, MetricBlock.name == name, MetricBlock.level > 1,
            MetricBlock.level.not_in([int(lv) for lv in saved.get("levels", {})] or [1])))
    # the blocks that straddle the step, finest level first: a level without a stored
    # cut is rebuilt from the level below it, already cut
    for level in levels:
        block = step // block_span(level)
        found = session.execute(select(MetricBlock.name, MetricBlock.payload).where(
            where, MetricBlock.level == level, MetricBlock.block == block, MetricBlock.last_step > step)).all()
        for name, payload in found:
            b = decode(payload)
            if level == 0:
                kept = b.take(b.first_step <= step)
            else:
                width = WIDTHS[level]
                k = step // width
                kept = b.take(b.key < k)
                saved = ((cut or {}).get(name) or {}).get("levels", {}).get(str(level))
                if saved is not None and saved[0] == k:
                    kept = concat([kept, Buckets(*(np.array([v]) for v in saved))])
                elif cut is None:
                    finer = _blocks(session, job_id, name, level - 1, k * width, step)
                    kept = concat([kept, rollup(finer, width)])
            if len(kept):
                upsert_blocks(session, [block_row(job_id, name, level, block, kept, _raw_bytes(payload))])
            else:
                session.execute(delete(MetricBlock).where(where, MetricBlock.name == name,
                                                          MetricBlock.level == level, MetricBlock.block == block))


def _raw_bytes(payload: bytes) -> int:
    return payload[2]


# -- reading --------------------------------------------------------------------------------

@dataclass
class SeriesInfo:
    name: str
    count: int
    first_step: int
    last_step: int
    raw_from: int | None  # the first step raw points are kept from (None: none kept)
    top: int = 1  # the coarsest level kept


def series_info(session: Any, job_id: int, names: Sequence[str] | None = None) -> dict[str, SeriesInfo]:
    """Every series' extent and size (from its level-1 rows: one per 65,536 steps), the
    step its raw points start from and its coarsest level (index seeks)."""
    where = [MetricBlock.job_id == job_id]
    if names:
        where.append(MetricBlock.name.in_(list(names)))
    rows = session.execute(select(MetricBlock.name, func.sum(MetricBlock.count), func.min(MetricBlock.first_step),
                                  func.max(MetricBlock.last_step))
                           .where(*where, MetricBlock.level == 1).group_by(MetricBlock.name)).all()
    out = {name: SeriesInfo(name, int(count), int(lo), int(hi), None) for name, count, lo, hi in rows}
    for name, info in out.items():
        mine = (MetricBlock.job_id == job_id, MetricBlock.name == name)
        info.raw_from = session.scalar(select(MetricBlock.first_step).where(*mine, MetricBlock.level == 0)
                                       .order_by(MetricBlock.block).limit(1))
        info.top = int(session.scalar(select(func.max(MetricBlock.level)).where(*mine)))
    return out


def _blocks(session: Any, job_id: int, name: str, level: int, lo: int, hi: int) -> Buckets:
    """The buckets (points, at level 0) of ``name`` at ``level`` with steps in [lo, hi]."""
    span = block_span(level)
    payloads = session.scalars(select(MetricBlock.payload).where(
        MetricBlock.job_id == job_id, MetricBlock.name == name, MetricBlock.level == level,
        MetricBlock.block >= lo // span, MetricBlock.block <= hi // span).order_by(MetricBlock.block)).all()
    if level == 0:
        steps, epochs, times, values = decode_points(list(payloads))
        keep = (steps >= lo) & (steps <= hi)
        return Buckets.points(steps[keep], epochs[keep], times[keep], values[keep])
    b = concat([decode(p) for p in payloads])
    return b.take((b.last_step >= lo) & (b.first_step <= hi))


def downsample(session: Any, job_id: int, names: Sequence[str] | None, after_step: int | None,
               before_step: int | None, max_points: int) -> list[dict[str, Any]]:
    """Each series over ``after_step < step < before_step`` in at most ``max_points``
    buckets of equal, aligned step ranges, each with its count, mean (``value``), min,
    max, first and last: no spike is lost. Answered from the coarsest level whose
    buckets still number ``max_points`` over the range (raw points for short ranges),
    so the cost follows what is returned, not the length of the job. A bucket at
    either end may reach past the range (buckets are aligned to their level)."""
    max_points = max(MIN_POINTS, min(max_points, MAX_POINTS))
    out: list[dict[str, Any]] = []
    for info in series_info(session, job_id, names).values():
        lo = max(info.first_step, (after_step + 1) if after_step is not None else 0)
        hi = min(info.last_step, (before_step - 1) if before_step is not None else info.last_step)
        if hi < lo:
            continue
        span = hi - lo + 1
        level = min(info.top, max((lv for lv in LEVELS if WIDTHS[lv] * max_points <= span), default=0))
        raw_kept = info.raw_from is not None and info.raw_from <= lo
        if raw_kept and info.count <= max_points:
            level = 0  # a short series (an epoch series) is its points
        if level == 0 and not raw_kept:
            level = 1  # raw points of the range are not kept
        b = _blocks(session, job_id, info.name, level, lo, hi)
        if not len(b):
            continue
        width = WIDTHS[level]
        keys = b.first_step // width
        n = int(keys[-1] - keys[0]) + 1
        # a range holding no more points than asked comes as its points
        group = 1 if len(b) <= max_points and level == 0 else max(1, math.ceil(n / (max_points - 1)))
        merged = combine(b, keys // group) if group > 1 or level == 0 else b
        out += _bucket_items(info.name, merged, group * width)
    out.sort(key=lambda p: (p["step"], p["name"]))
    return out


def tail(session: Any, job_id: int, names: Sequence[str] | None, after_step: int, bucket_steps: int
         ) -> list[dict[str, Any]]:
    """What a live view needs past ``after_step``: each series' buckets of
    ``bucket_steps`` (aligned, as :func:`downsample` gave them; 1 for raw points)
    that reach past it. The first may be one already sent, now fuller: a client
    replaces a bucket by its ``step``."""
    out: list[dict[str, Any]] = []
    bucket_steps = max(1, int(bucket_steps))
    for info in series_info(session, job_id, names).values():
        if info.last_step <= after_step:
            continue
        lo = max(info.first_step, (after_step + 1) // bucket_steps * bucket_steps)
        # the coarsest level whose width divides the bucket width (raw points if kept)
        level = min(info.top, max((lv for lv in LEVELS if bucket_steps % WIDTHS[lv] == 0), default=0))
        if level == 0 and (info.raw_from is None or info.raw_from > lo):
            level = 1
        b = _blocks(session, job_id, info.name, level, lo, info.last_step)
        if len(b):
            out += _bucket_items(info.name, combine(b, b.first_step // bucket_steps), bucket_steps)
    out.sort(key=lambda p: (p["step"], p["name"]))
    return out


def _bucket_items(name: str, b: Buckets, bucket_steps: int) -> list[dict[str, Any]]:
    mean = b.mean
    cols = [b.first_step.tolist(), b.last_step.tolist(), b.first_epoch.tolist(), b.count.tolist(), mean.tolist(),
            b.vmin.tolist(), b.vmax.tolist(), b.first.tolist(), b.last.tolist(), b.time.tolist()]
    return [{"name": name, "step": s, "last_step": ls, "epoch": e, "count": c, "value": v, "min": lo, "max": hi,
             "first": f, "last": la, "time": t, "bucket_steps": bucket_steps}
            for s, ls, e, c, v, lo, hi, f, la, t in zip(*cols, strict=False)]


def list_points(session: Any, job_id: int, names: Sequence[str] | None, after_step: int | None,
                before_step: int | None, limit: int, page_token: str | None
                ) -> tuple[list[dict[str, Any]], str | None]:
    """Raw points with ``after_step < step < before_step``, ordered by (step, name), a
    page at a time; the token is the position of the last point returned, so every
    point comes exactly once however pages are cut."""
    limit = max(1, min(limit, MAX_METRICS_PAGE))
    pos = _decode_token(page_token) if page_token else ((after_step + 1, "") if after_step is not None else (0, ""))
    stop = before_step - 1 if before_step is not None else None
    out: list[dict[str, Any]] = []
    for item in _raw_from(session, job_id, names, pos, stop):
        out.append(item)
        if len(out) > limit:
            break
    token = _encode_token(out[limit - 1]) if len(out) > limit else None
    return out[:limit], token


def _raw_from(session: Any, job_id: int, names: Sequence[str] | None, pos: tuple[int, str], stop: int | None
              ) -> Iterator[dict[str, Any]]:
    """Raw points at or past ``pos`` (step, then name; a point at ``pos``'s step is
    included when its name sorts after ``pos``'s), in order, block row by block row."""
    step0, name0 = pos
    where = [MetricBlock.job_id == job_id, MetricBlock.level == 0, MetricBlock.last_step >= step0]
    if names:
        where.append(MetricBlock.name.in_(list(names)))
    if stop is not None:
        where.append(MetricBlock.first_step <= stop)
    block, batch = step0 // RAW_SPAN, 4
    while True:
        rows = session.execute(select(MetricBlock.block, MetricBlock.name, MetricBlock.payload)
                               .where(*where, MetricBlock.block >= block)
                               .order_by(MetricBlock.block, MetricBlock.name).limit(batch + 1)).all()
        if not rows:
            return
        more = len(rows) > batch
        if more:
            last = rows[-1].block
            complete = [r for r in rows if r.block != last]
            if not complete:  # one block number holds more series than a batch: widen it
                batch *= 2
                continue
            rows = complete
        parts = [decode(r.payload) for r in rows]
        names = sorted({r.name for r in rows})
        b = concat(parts)
        which = np.concatenate([np.full(len(p), names.index(r.name)) for r, p in zip(rows, parts, strict=False)])
        keep = b.first_step >= step0
        if stop is not None:
            keep &= b.first_step <= stop
        if name0:  # the page token's own step: only the names after it
            keep &= (b.first_step > step0) | (np.array(names)[which] > name0)
        order = np.flatnonzero(keep)
        order = order[np.lexsort((which[order], b.first_step[order]))]
        for i in order.tolist():
            yield {"name": names[which[i]], "step": int(b.first_step[i]), "epoch": int(b.first_epoch[i]),
                   "value": float(b.first[i]), "time": float(b.time[i])}
        if not more:
            return
        block = rows[-1].block + 1
        batch = min(batch * 2, 256)


def _encode_token(item: dict[str, Any]) -> str:
    raw = json.dumps({"step": item["step"], "name": item["name"]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str) -> tuple[int, str]:
    try:
        doc = json.loads(base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()))
        step, name = doc["step"], doc["name"]
        if not (isinstance(step, int) and not isinstance(step, bool) and 0 <= step < 2**63 and isinstance(name, str)
                and "\x00" not in name):
            raise ValueError
        return step, name
    except (ValueError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise Invalid("page_token is not one this server issued",
                      [FieldProblem("page_token", "invalid page token")]) from None


def iter_points(session: Any, job_id: int, names: Sequence[str] | None) -> Iterator[dict[str, Any]]:
    """Every raw point, in (step, name) order, for a streamed export."""
    return _raw_from(session, job_id, names, (0, ""), None)


def point_count(session: Any, job_id: int | None = None) -> int:
    """How many points the job's series (every job's: None) hold, raw kept or not."""
    stmt = select(func.coalesce(func.sum(MetricBlock.count), 0)).where(MetricBlock.level == 1)
    if job_id is not None:
        stmt = stmt.where(MetricBlock.job_id == job_id)
    return int(session.scalar(stmt))


def series_rows(session: Any, job_id: int) -> list[tuple[Any, ...]]:
    """(name, level, block) of every stored block: for tests and ``trainyard`` admin."""
    return session.execute(select(MetricBlock.name, MetricBlock.level, MetricBlock.block)
                           .where(MetricBlock.job_id == job_id)
                           .order_by(MetricBlock.name, MetricBlock.level, MetricBlock.block)).all()


