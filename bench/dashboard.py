"""What the dashboard's polling costs: latency of the requests its pages repeat every
2 s, for jobs with 10k to 1M steps of metrics.

For each database (SQLite, PostgreSQL) a throwaway ``trainyard api`` is started as in
bench/api.py; per size, one job gets the metric rows a worker writes (per step: loss,
lr, grad_norm, samples_per_s; per epoch of 100 steps: epoch_loss, epoch_accuracy,
val_loss, val_accuracy, epoch_lr, epoch_samples_per_s), written with the worker's own
insert function. Then each request is timed from one client thread:
the job page's first ``GET /jobs/{id}/metrics?max_points=800`` (every series
downsampled on the server) and its polls after that (``after_step``: the new points
only), the jobs table's ``GET /jobs?limit=100`` and the workers page's
``GET /workers``.

Usage:  python bench/dashboard.py [--sizes 10000,100000,1000000] [--requests 30] [--only sqlite,postgresql]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from api import drive  # noqa: E402  (bench/api.py: timed requests from client threads)

from service.store.db import make_engine, make_sessionmaker  # noqa: E402
from service.store.results import insert_metric_points  # noqa: E402
from tests.conftest import start_api_server, stop_api_server, throwaway_postgres  # noqa: E402

XOR = json.loads((ROOT / "examples/xor.json").read_text())
STEP_SERIES = ("loss", "lr", "grad_norm", "samples_per_s")
EPOCH_SERIES = ("epoch_loss", "epoch_accuracy", "val_loss", "val_accuracy", "epoch_lr", "epoch_samples_per_s")
STEPS_PER_EPOCH = 100
CHUNK = 50_000


def fill(database_url: str, job_id: int, steps: int) -> tuple[int, float]:
    """Write ``steps`` steps of metrics for the job; return (rows, seconds)."""
    engine = make_engine(database_url)
    rows = 0
    t0 = time.perf_counter()
    try:
        with make_sessionmaker(engine)() as session:
            batch: list[tuple[str, int, int, float]] = []
            for step in range(1, steps + 1):
                epoch = (step - 1) // STEPS_PER_EPOCH + 1
                value = 1.0 / step
                batch += [(name, step, epoch, value) for name in STEP_SERIES]
                if step % STEPS_PER_EPOCH == 0:
                    batch += [(name, step, epoch, value) for name in EPOCH_SERIES]
                if len(batch) >= CHUNK:
                    insert_metric_points(session, job_id, batch)
                    rows += len(batch)
                    batch = []
            if batch:
                insert_metric_points(session, job_id, batch)
                rows += len(batch)
    finally:
        engine.dispose()
    return rows, time.perf_counter() - t0


def bench_backend(kind: str, pg_url: str | None, sizes: list[int], requests: int) -> list[tuple]:
    tmp = Path(tempfile.mkdtemp(prefix=f"ty-bench-dash-{kind}-"))
    server = start_api_server(kind, tmp, pg_url)
    out = []
    try:
        alice = server.session("alice")
        for _ in range(100):  # a jobs table of 100 rows
            alice.post(f"{server.api}/jobs", json={"spec": XOR})
        for steps in sizes:
            job_id = alice.post(f"{server.api}/jobs", json={"spec": XOR}).json()["id"]
            rows, secs = fill(server.database_url, job_id, steps)
            print(f"{kind}: {rows:,} metric rows written in {secs:.1f} s ({rows / secs:,.0f} rows/s)", flush=True)
            calls = {
                "GET metrics?max_points=800": lambda s, i, j=job_id: s.get(f"{server.api}/jobs/{j}/metrics",
                                                                           params={"max_points": 800}),
                # what the job page polls after its first load: the points of the last 100 steps
                "GET metrics?after_step=N-100": lambda s, i, j=job_id, n=steps: s.get(
                    f"{server.api}/jobs/{j}/metrics", params={"after_step": n - 100, "limit": 10000}),
                "GET jobs?limit=100": lambda s, i: s.get(f"{server.api}/jobs", params={"limit": 100}),
                "GET workers": lambda s, i: s.get(f"{server.api}/workers"),
            }
            for label, call in calls.items():
                call(alice, 0)  # warm
                out.append((kind, rows, label, drive(server, 1, requests, 120, call)))
    finally:
        stop_api_server(server)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="steps of metrics per job")
    ap.add_argument("--requests", type=int, default=30, help="requests per endpoint and size")
    ap.add_argument("--only", default="sqlite,postgresql")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"dashboard polling cost: {platform.python_version()}, {os.cpu_count()} CPUs, gunicorn 2x4, loopback, "
          f"1 client thread, {args.requests} requests each", flush=True)
    rows = []
    for kind in [k.strip() for k in args.only.split(",") if k.strip()]:
        if kind == "postgresql":
            with throwaway_postgres() as url:
                rows += bench_backend(kind, url, sizes, args.requests)
        else:
            rows += bench_backend(kind, None, sizes, args.requests)
    print()
    print(f"{'database':<11}{'metric rows':>12}  {'request':<28}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for kind, n, label, r in rows:
        print(f"{kind:<11}{n:>12,}  {label:<28}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['errors']:>8}")


if __name__ == "__main__":
    main()
