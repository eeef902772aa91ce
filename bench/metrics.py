"""The metric store against the designs it replaces and competes with: ingest rate,
bytes per point on disk and the server time of a downsampled read, on SQLite and
PostgreSQL side by side.

Three designs, each in a database of its own (a file in a temporary folder; a database
in one throwaway PostgreSQL cluster):

  trainyard  ``service.store.metrics``: packed blocks with rollups written by a
             :class:`SeriesWriter`, appended per series and flushed + committed every
             20,000 steps (a fast job's 0.5 s worth), read with ``downsample``;
  old        the previous row per point, ``old_metrics(id, job_id, name, step, epoch,
             value, time)`` indexed on (job_id, name, step) and (job_id, step), written
             with one driver-level executemany a batch, read with one GROUP BY per
             series (equal step ranges, count/mean/min/max each, as ``downsample``
             returns them) after an index lookup of the series' extent;
  mlflow     MLflow's own SqlAlchemyStore through ``MlflowClient``: ``log_batch`` of
             1,000 metrics (its limit), read with ``get_metric_history`` (every point)
             and ``SqlAlchemyStore.get_metric_history_bulk_interval`` (what the UI's
             ``ajax-api/2.0/mlflow/metrics/get-history-bulk-interval`` calls: NTILE
             sampling in SQL, ``max_results`` per run).

Four step series (loss, lr, grad_norm, samples_per_s) of N steps each: a noisy
decaying loss, a cosine learning rate, a noisy gradient norm and throughput, 20,000
steps per 0.5 s of write time. Query times are the median of ``--runs`` warm calls of
the store function (no HTTP), 4 series x 1,000 points over the whole job and over a
1 % window in its middle; trainyard's are for a job of ``--query-steps`` steps
appended straight from NumPy (no training), the others' for the N they ingested.

Usage:  python bench/metrics.py [--quick] [--only sqlite,postgresql] [--designs trainyard,old,mlflow]
        [--steps trainyard=2000000,old=2000000,mlflow=50000] [--pg-steps ...] [--query-steps 10000000]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, create_engine, text  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from service.store.db import make_engine, make_sessionmaker  # noqa: E402
from service.store.metrics import SeriesWriter, downsample  # noqa: E402
from service.store.models import Base, BigId, Job, User, UTCDateTime  # noqa: E402
from tests.conftest import throwaway_postgres  # noqa: E402

SERIES = ("loss", "lr", "grad_norm", "samples_per_s")
BATCH_STEPS = 20_000  # a fast job's 0.5 s of steps: what the worker's writer thread flushes at once
STEP_S = 0.5 / BATCH_STEPS
STEPS_PER_EPOCH = 1000
MAX_POINTS = 1000
MLFLOW_BATCH = 1000  # log_batch's limit on metrics per call
T0 = 1.78e9
DESIGNS = ("trainyard", "old", "mlflow")
LABELS = {"trainyard": "trainyard blocks", "old": "old row per point", "mlflow": "MLflow"}
DEFAULT_STEPS = {"sqlite": {"trainyard": 2_000_000, "old": 2_000_000, "mlflow": 50_000},
                 "postgresql": {"trainyard": 2_000_000, "old": 500_000, "mlflow": 50_000}}
QUICK_STEPS = {"trainyard": 100_000, "old": 50_000, "mlflow": 5_000}
TARGETS = {"ingest": 5e6, "bytes": 6.0, "rollups": 0.02, "query": 50.0, "zoom": 50.0}


# -- the points ------------------------------------------------------------------------------

def points(first: int, stop: int, total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Steps ``first..stop-1`` of a ``total``-step job: steps, epochs, write times and
    each series' values, the same for every design (seeded by the first step)."""
    rng = np.random.default_rng(first)
    steps = np.arange(first, stop, dtype=np.int64)
    epochs = (steps - 1) // STEPS_PER_EPOCH + 1
    times = T0 + steps * STEP_S + rng.uniform(0, STEP_S, len(steps))
    x = steps / total
    values = {
        "loss": (0.05 + 2.0 * np.exp(-5 * x)) * (1 + 0.15 * rng.standard_normal(len(steps))),
        "lr": 1e-5 + 0.5 * (0.01 - 1e-5) * (1 + np.cos(np.pi * x)),
        "grad_norm": np.abs(1.0 + 0.3 * rng.standard_normal(len(steps))) * (0.2 + np.exp(-3 * x)),
        "samples_per_s": 48_000 * (1 + 0.05 * rng.standard_normal(len(steps))),
    }
    return steps, epochs, times, values


def batches(total: int, size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    for first in range(1, total + 1, size):
        yield points(first, min(first + size, total + 1), total)


def zoom_window(last_step: int) -> tuple[int, int]:
    """The 1 % of steps in the middle of a job of ``last_step`` steps, inclusive."""
    width = max(1, last_step // 100)
    lo = max(1, last_step // 2 - width // 2)
    return lo, lo + width - 1


def median_ms(call: Callable[[], Any], runs: int) -> tuple[float, Any]:
    result = call()  # warm: caches, plans, the connection pool
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = call()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times), result


@dataclass
class Figures:
    steps: int = 0  # per series, ingested
    seconds: float = 0.0
    cpu: float = 0.0  # this process's CPU seconds of it: a figure less moved by other load on the machine
    split: dict[str, float] = field(default_factory=dict)  # where ingest time went
    bytes: int = 0  # of the points: SQLite's file less its size before them, PostgreSQL's tables
    rollup_bytes: float | None = None
    query_steps: int = 0
    query_ms: float | None = None
    zoom_ms: float | None = None
    all_points_ms: float | None = None  # MLflow's get_metric_history
    returned: str = ""  # what a query returned, for the notes

    @property
    def points(self) -> int:
        return self.steps * len(SERIES)


# -- the databases ---------------------------------------------------------------------------

def sqlite_bytes(engine: Engine) -> int:
    """The file's size after VACUUM, the WAL folded in."""
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM")
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return Path(engine.url.database).stat().st_size


def pg_bytes(engine: Engine, tables: tuple[str, ...]) -> tuple[int, int]:
    """(as written, after VACUUM FULL) of the tables with their indexes and TOAST."""
    size = "SELECT " + " + ".join(f"pg_total_relation_size('{t}')" for t in tables)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        before = conn.exec_driver_sql(size).scalar()
        for t in tables:
            conn.exec_driver_sql(f"VACUUM FULL ANALYZE {t}")
        return before, conn.exec_driver_sql(size).scalar()


@contextlib.contextmanager
def databases(kind: str, tmp: Path) -> Iterator[Callable[[str], str]]:
    """A function giving each design's database URL on ``kind``."""
    if kind == "sqlite":
        yield lambda design: f"sqlite:///{tmp / design}.db"
        return
    with throwaway_postgres() as server:
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        made = []

        def url(design: str) -> str:
            name = f"bench_{design}_{os.getpid()}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
            made.append(name)
            return server.rsplit("/", 1)[0] + "/" + name

        try:
            yield url
        finally:
            with admin.connect() as conn:
                for name in made:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.dispose()


# -- (a) trainyard blocks --------------------------------------------------------------------

def new_job(engine: Engine) -> int:
    with make_sessionmaker(engine)() as s:
        user = s.query(User).first() or User(name="bench")
        job = Job(owner=user, spec={})
        s.add(job)
        s.commit()
        return job.id


def write_series(engine: Engine, job_id: int, steps: int, batch: int) -> dict[str, float]:
    """Append each series then flush + commit, a batch at a time; seconds by phase."""
    writer = SeriesWriter(job_id)
    split = {"append": 0.0, "flush": 0.0, "commit": 0.0, "cpu": 0.0}
    with make_sessionmaker(engine)() as s:
        for st, ep, tm, values in batches(steps, batch):
            c0, t0 = time.process_time(), time.perf_counter()
            for name in SERIES:
                writer.append(name, st, ep, tm, values[name])
            t1 = time.perf_counter()
            writer.flush(s)
            t2 = time.perf_counter()
            s.commit()
            writer.written()
            t3 = time.perf_counter()
            split["cpu"] += time.process_time() - c0
            split["append"] += t1 - t0
            split["flush"] += t2 - t1
            split["commit"] += t3 - t2
    return split


def bench_trainyard(kind: str, url: str, steps: int, query_steps: int, runs: int) -> Figures:
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    f = Figures(steps=steps)
    job_id = new_job(engine)
    empty = sqlite_bytes(engine) if kind == "sqlite" else 0
    f.split = write_series(engine, job_id, steps, BATCH_STEPS)
    f.cpu = f.split.pop("cpu")
    f.seconds = sum(f.split.values())
    print(f"  {kind}/trainyard: {f.points:,} points in {f.seconds:.2f} s", flush=True)

    payload_sql = ("SELECT level >= 1, count(*), sum(length(payload)) FROM metric_blocks WHERE job_id = :j "
                   "GROUP BY level >= 1")
    with engine.connect() as conn:
        parts = {bool(r[0]): (r[1], r[2]) for r in conn.execute(text(payload_sql), {"j": job_id})}
    if kind == "sqlite":
        f.bytes = sqlite_bytes(engine) - empty
    else:
        before, f.bytes = pg_bytes(engine, ("metric_blocks",))
        f.split["as written bytes"] = before
    f.split["rollup payload share"] = parts.get(True, (0, 0))[1] / sum(b for _, b in parts.values())
    rows = sum(n for n, _ in parts.values())
    overhead = (f.bytes - sum(b for _, b in parts.values())) / rows  # per row: columns, key index, page slack
    n_roll, b_roll = parts.get(True, (0, 0))
    f.rollup_bytes = b_roll + n_roll * overhead
    f.split["rows"], f.split["overhead per row"] = rows, overhead

    # the query job: appended from NumPy in chunks of a million steps
    t = time.perf_counter()
    query_job = new_job(engine)
    write_series(engine, query_job, query_steps, 1_000_000)
    print(f"  {kind}/trainyard: {query_steps:,}-step query job written in {time.perf_counter() - t:.1f} s",
          flush=True)
    f.query_steps = query_steps
    lo, hi = zoom_window(query_steps)
    session = make_sessionmaker(engine)
    with session() as s:
        f.query_ms, whole = median_ms(lambda: downsample(s, query_job, SERIES, None, None, MAX_POINTS), runs)
        s.rollback()
        f.zoom_ms, zoom = median_ms(lambda: downsample(s, query_job, SERIES, lo - 1, hi + 1, MAX_POINTS), runs)
    f.returned = (f"{len(whole)} buckets of {whole[0]['bucket_steps']} steps; zoom {len(zoom)} of "
                  f"{zoom[0]['bucket_steps']}")
    engine.dispose()
    return f


# -- (b) the old row per point ---------------------------------------------------------------

OLD = MetaData()
old_metrics = Table(
    "old_metrics", OLD,
    Column("id", BigId, primary_key=True),
    Column("job_id", BigInteger, nullable=False),
    Column("name", String(64), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("value", Float, nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Index("ix_old_metrics_series", "job_id", "name", "step"),
    Index("ix_old_metrics_job_step", "job_id", "step"),
)
OLD_JOB = 1


def old_insert(engine: Engine, steps: int, batch: int) -> tuple[float, float]:
    """The old worker's write: (job_id, name, step, epoch, value, time) tuples, one
    executemany and a commit a batch (the old code's one ``now`` per batch)."""
    seconds = cpu = 0.0
    with engine.connect() as conn:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        sql = f"INSERT INTO old_metrics (job_id, name, step, epoch, value, time) VALUES ({', '.join([mark] * 6)})"
        sqlite = conn.dialect.name == "sqlite"
        for st, ep, _, values in batches(steps, batch):
            c, t = time.process_time(), time.perf_counter()
            now = datetime.now(UTC)
            when: Any = now.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else now
            st_l, ep_l = st.tolist(), ep.tolist()
            rows = []
            for name in SERIES:
                rows += zip(repeat(OLD_JOB), repeat(name), st_l, ep_l, values[name].tolist(), repeat(when),
                            strict=False)
            conn.exec_driver_sql(sql, rows)
            conn.commit()
            seconds += time.perf_counter() - t
            cpu += time.process_time() - c
    return seconds, cpu


_EXTENT = "SELECT {fn}(step) FROM old_metrics WHERE job_id = :j AND name = :n AND step BETWEEN :lo AND :hi"
_BUCKETS = text(
    "SELECT (step - :lo) * CAST(:k AS BIGINT) / CAST(:span AS BIGINT) AS b, min(step), max(step), count(*), "
    "avg(value), min(value), max(value) FROM old_metrics WHERE job_id = :j AND name = :n AND step BETWEEN :lo AND :hi "
    "GROUP BY b ORDER BY b")


def old_downsample(conn: Any, job_id: int, lo: int, hi: int, max_points: int) -> list[tuple]:
    """Each series over [lo, hi] in ``max_points`` equal step ranges: its extent by two
    index lookups, then one GROUP BY over its points in the range."""
    out = []
    for name in SERIES:
        args = {"j": job_id, "n": name, "lo": lo, "hi": hi}
        first = conn.execute(text(_EXTENT.format(fn="min")), args).scalar()
        last = conn.execute(text(_EXTENT.format(fn="max")), args).scalar()
        if first is None:
            continue
        args.update(lo=first, hi=last, k=max_points, span=last - first + 1)
        out += [(name, *r) for r in conn.execute(_BUCKETS, args)]
    return out


def bench_old(kind: str, url: str, steps: int, runs: int) -> Figures:
    engine = make_engine(url)
    OLD.create_all(engine)
    f = Figures(steps=steps, query_steps=steps)
    empty = sqlite_bytes(engine) if kind == "sqlite" else 0
    f.seconds, f.cpu = old_insert(engine, steps, BATCH_STEPS)
    print(f"  {kind}/old: {f.points:,} points in {f.seconds:.2f} s", flush=True)
    if kind == "sqlite":
        f.bytes = sqlite_bytes(engine) - empty
    else:
        before, f.bytes = pg_bytes(engine, ("old_metrics",))
        f.split["as written bytes"] = before
    lo, hi = zoom_window(steps)
    with engine.connect() as conn:
        f.query_ms, whole = median_ms(lambda: old_downsample(conn, OLD_JOB, 0, 2**62, MAX_POINTS), runs)
        f.zoom_ms, zoom = median_ms(lambda: old_downsample(conn, OLD_JOB, lo, hi, MAX_POINTS), runs)
    f.returned = f"{len(whole)} buckets; zoom {len(zoom)}"
    engine.dispose()
    return f


# -- (c) MLflow ------------------------------------------------------------------------------

def mlflow_version() -> str | None:
    try:
        import mlflow
    except ImportError:
        return None
    return mlflow.__version__


def bench_mlflow(kind: str, url: str, steps: int, runs: int, tmp: Path) -> Figures:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment("bench", artifact_location=(tmp / f"mlruns-{kind}").as_uri())
    run_id = client.create_run(experiment).info.run_id
    store = client._tracking_client.store  # SqlAlchemyStore: what the tracking server's handlers call
    f = Figures(steps=steps, query_steps=steps)
    engine = store.engine
    empty = sqlite_bytes(engine) if kind == "sqlite" else 0
    per_call = MLFLOW_BATCH // len(SERIES)
    for st, _, tm, values in batches(steps, per_call):
        c, t = time.process_time(), time.perf_counter()
        ms, st_l = (tm * 1000).astype(np.int64).tolist(), st.tolist()
        metrics = [Metric(name, v, m, s) for name in SERIES
                   for v, m, s in zip(values[name].tolist(), ms, st_l, strict=True)]
        client.log_batch(run_id, metrics=metrics)
        f.seconds += time.perf_counter() - t
        f.cpu += time.process_time() - c
    print(f"  {kind}/mlflow: {f.points:,} points in {f.seconds:.2f} s", flush=True)
    if kind == "sqlite":
        f.bytes = sqlite_bytes(engine) - empty
    else:
        before, f.bytes = pg_bytes(engine, ("metrics", "latest_metrics"))
        f.split["as written bytes"] = before

    lo, hi = zoom_window(steps)

    def sampled(start: int | None, end: int | None) -> list:
        return [m for name in SERIES
                for m in store.get_metric_history_bulk_interval([run_id], name, MAX_POINTS, start, end)]

    f.query_ms, whole = median_ms(lambda: sampled(None, None), runs)
    f.zoom_ms, zoom = median_ms(lambda: sampled(lo, hi), runs)
    f.all_points_ms, every = median_ms(lambda: [client.get_metric_history(run_id, n) for n in SERIES], runs)
    f.returned = (f"{len(whole)} sampled points; zoom {len(zoom)}; get_metric_history "
                  f"{sum(len(e) for e in every):,} points")
    return f


# -- the table -------------------------------------------------------------------------------

def si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.0f}"


def mark(ok: bool) -> str:
    return " ok" if ok else " MISS"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small N everywhere: a smoke run of about a minute")
    ap.add_argument("--only", default="sqlite,postgresql", help="databases")
    ap.add_argument("--designs", default=",".join(DESIGNS))
    ap.add_argument("--steps", default="", help="steps per series ingested on SQLite, e.g. trainyard=2000000,old=...")
    ap.add_argument("--pg-steps", default="", help="the same on PostgreSQL")
    ap.add_argument("--query-steps", type=int, default=10_000_000, help="steps of trainyard's query job")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per query (the median is shown)")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.only.split(",") if k.strip()]
    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    steps = {k: dict(QUICK_STEPS if args.quick else DEFAULT_STEPS[k]) for k in kinds}
    for k, given in (("sqlite", args.steps), ("postgresql", args.pg_steps)):
        for item in filter(None, given.split(",")):
            design, n = item.split("=")
            if k in steps:
                steps[k][design.strip()] = int(n)
    query_steps = 1_000_000 if args.quick and args.query_steps == 10_000_000 else args.query_steps
    runs = 3 if args.quick and args.runs == 5 else args.runs

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    version = mlflow_version() if "mlflow" in designs else None
    if "mlflow" in designs and version is None:
        print("note: mlflow is not installed (pip install -e '.[bench]'): MLflow is skipped")
        designs.remove("mlflow")
    print(f"metric store bench: Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{len(SERIES)} series, {BATCH_STEPS:,} steps a batch, median of {runs} warm runs"
          + (f", MLflow {version}" if version else ""), flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="ty-bench-metrics-"))
    results: dict[tuple[str, str], Figures] = {}
    try:
        for kind in kinds:
            with databases(kind, tmp) as url:
                for design in designs:
                    n = steps[kind][design]
                    if design == "trainyard":
                        results[design, kind] = bench_trainyard(kind, url(design), n, query_steps, runs)
                    elif design == "old":
                        results[design, kind] = bench_old(kind, url(design), n, runs)
                    else:
                        results[design, kind] = bench_mlflow(kind, url(design), n, runs, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(results, kinds, designs, version)


def print_table(results: dict[tuple[str, str], Figures], kinds: list[str], designs: list[str],
                version: str | None) -> None:
    labels = dict(LABELS, mlflow=f"MLflow {version}")
    w0, w = 34, 24
    print()
    print(f"{'':<{w0}}" + "".join(f"{k:>{w}}" for k in kinds) + f"{'target (trainyard)':>{w}}")

    def row(label: str, design: str, cell: Callable[[Figures, str], str], target: str = "") -> None:
        cells = [cell(results[design, k], k) if (design, k) in results else "-" for k in kinds]
        print(f"{label:<{w0}}" + "".join(f"{c:>{w}}" for c in cells) + f"{target:>{w}}")

    def steps_of(n: int) -> str:
        return si(n).replace(" ", "")

    print("ingest, points/s  [steps per series]")
    for d in designs:
        def cell(f: Figures, k: str, d: str = d) -> str:
            rate = f.points / f.seconds
            ok = mark(rate >= TARGETS["ingest"]) if d == "trainyard" and k == "sqlite" else ""
            return f"{si(rate)}/s [{steps_of(f.steps)}]{ok}"
        row(f"  {labels[d]}", d, cell, ">= 5 M/s (SQLite)" if d == "trainyard" else "")
    print("bytes per point on disk  (SQLite: file after VACUUM; PostgreSQL: tables + indexes after VACUUM FULL)")
    for d in designs:
        def cell(f: Figures, k: str, d: str = d) -> str:
            b = f.bytes / f.points
            return f"{b:.2f}" + (mark(b <= TARGETS["bytes"]) if d == "trainyard" else "")
        row(f"  {labels[d]}", d, cell, "<= 6" if d == "trainyard" else "")
        if d == "trainyard":
            row("    rollups (levels >= 1), share", d,
                lambda f, k: f"{100 * f.rollup_bytes / f.bytes:.2f} %{mark(f.rollup_bytes / f.bytes <= 0.02)}",
                "<= 2 %")
    print("query: 4 x 1000 points, whole job, median ms  [job steps]")
    for d in designs:
        def cell(f: Figures, k: str, d: str = d) -> str:
            return f"{f.query_ms:.1f} [{steps_of(f.query_steps)}]" + (
                mark(f.query_ms <= TARGETS["query"]) if d == "trainyard" else "")
        row(f"  {labels[d]}" + (" (sampled)" if d == "mlflow" else ""), d, cell,
            "<= 50 ms" if d == "trainyard" else "")
    if "mlflow" in designs:
        row("  MLflow get_metric_history (all)", "mlflow",
            lambda f, k: f"{f.all_points_ms:.1f} [{steps_of(f.query_steps)}]")
    print("query: 4 x 1000 points, 1 % window in the middle, median ms  [job steps]")
    for d in designs:
        def cell(f: Figures, k: str, d: str = d) -> str:
            return f"{f.zoom_ms:.1f} [{steps_of(f.query_steps)}]" + (
                mark(f.zoom_ms <= TARGETS["zoom"]) if d == "trainyard" else "")
        row(f"  {labels[d]}" + (" (sampled)" if d == "mlflow" else ""), d, cell,
            "<= 50 ms" if d == "trainyard" else "")
    print()
    print("notes:")
    for (d, k), f in results.items():
        extra = ""
        if d == "trainyard":
            s = f.split
            extra = (f"; ingest time: append (NumPy rollups) {s['append']:.2f} s, flush (encode + SQL) "
                     f"{s['flush']:.2f} s, commit {s['commit']:.2f} s; {int(s['rows']):,} block rows, "
                     f"~{s['overhead per row']:.0f} B non-payload per row; rollups are "
                     f"{100 * s['rollup payload share']:.2f} % of the payload bytes")
        if "as written bytes" in f.split:
            extra += f"; {f.split['as written bytes'] / f.points:.2f} B/point as written, before VACUUM FULL"
        print(f"  {k}/{d}: {f.points:,} points ingested in {f.seconds:.2f} s ({f.cpu:.2f} s CPU in this process: "
              f"{si(f.points / f.cpu)} points per CPU-second), {f.bytes / 1e6:.1f} MB; "
              f"query returned {f.returned}{extra}")
    if "old" in designs or "mlflow" in designs:
        print("  the old design and MLflow are queried on the job they ingested (steps in brackets), "
              "trainyard on its own --query-steps job; ingest rates of smaller N are not extrapolated "
              "to query figures")


if __name__ == "__main__":
    main()
