"""Service latency: requests/s and p50/p99 latency of POST /jobs and GET /jobs/{id}.

For each database (SQLite, PostgreSQL) this starts a throwaway ``trainyard api``
(gunicorn, 2 processes x 4 threads, the embedded SQLite broker) on loopback exactly as
the test fixtures do (tests/conftest.py), then drives it from THREADS client threads,
each with its own keep-alive connection, for REQUESTS requests per operation in all or
until SECONDS have passed. POST /jobs submits the XOR example (validated, stored,
published to the broker); GET /jobs/{id} reads back the jobs just submitted. Client
and server share this machine, so the figures include the client's own overhead.

PostgreSQL: a throwaway cluster from /usr/lib/postgresql/*/bin (as the tests), or the
server named by TRAINYARD_TEST_POSTGRES_URL.

Usage:  python bench/api.py [--requests 1000] [--threads 2] [--seconds 30] [--only sqlite,postgresql]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import (  # noqa: E402  (the fixtures' own server helpers)
    ApiServer,
    start_api_server,
    stop_api_server,
    throwaway_postgres,
)

XOR = json.loads((ROOT / "examples/xor.json").read_text())


def drive(server: ApiServer, threads: int, total: int, seconds: float,
          call: Callable[[object, int], object]) -> dict:
    """Run ``call(session, i)`` ``total`` times over ``threads`` threads (or until
    ``seconds``); return throughput, latency percentiles and the error count."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(total))
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        session = server.session("alice")
        mine, bad = [], []
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t0 = time.perf_counter()
            r = call(session, i)
            mine.append(time.perf_counter() - t0)
            if not 200 <= r.status_code < 300:
                bad.append(f"{r.status_code} {r.text[:200]}")
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - start
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {"n": len(ms), "errors": len(errors), "first_error": errors[0] if errors else None,
            "rps": len(ms) / wall, "p50": q[49], "p99": q[98], "max": ms[-1] if ms else float("nan")}


def bench_backend(kind: str, pg_url: str | None, args: argparse.Namespace) -> list[tuple[str, str, dict]]:
    tmp = Path(tempfile.mkdtemp(prefix=f"ty-bench-{kind}-"))
    server = start_api_server(kind, tmp, pg_url)
    try:
        api = server.api
        warm = server.session("alice")
        for _ in range(20):                     # connections, caches, the broker's tables
            warm.get(api + "/jobs", params={"limit": 1})
            warm.post(api + "/jobs", json={"spec": XOR})
        ids: list[int] = []

        def post(session, i):
            r = session.post(api + "/jobs", json={"spec": XOR, "priority": i % 10})
            if r.status_code == 201:
                ids.append(r.json()["id"])
            return r

        def get(session, i):
            return session.get(f"{api}/jobs/{ids[i % len(ids)]}")

        rows = [(kind, "POST /jobs", drive(server, args.threads, args.requests, args.seconds, post))]
        rows.append((kind, "GET /jobs/{id}", drive(server, args.threads, args.requests, args.seconds, get)))
        return rows
    finally:
        stop_api_server(server)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1000, help="requests per operation, all threads together")
    ap.add_argument("--threads", type=int, default=2, help="concurrent client threads")
    ap.add_argument("--seconds", type=float, default=30.0, help="wall-clock bound per operation")
    ap.add_argument("--only", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.only.split(",") if k.strip()]

    print(f"trainyard API latency: {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, gunicorn 2 processes x 4 threads, loopback, {args.threads} client threads, "
          f"up to {args.requests} requests or {args.seconds:g} s per operation", flush=True)
    rows = []
    for kind in kinds:
        if kind == "postgresql":
            with throwaway_postgres() as url:
                rows += bench_backend(kind, url, args)
        else:
            rows += bench_backend(kind, None, args)

    print()
    print(f"{'database':<11}{'operation':<16}{'requests':>9}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'max ms':>9}")
    for kind, op, r in rows:
        print(f"{kind:<11}{op:<16}{r['n']:>9}{r['errors']:>8}{r['rps']:>9.1f}{r['p50']:>9.2f}{r['p99']:>9.2f}"
              f"{r['max']:>9.1f}")
    for kind, op, r in rows:
        if r["first_error"]:
            print(f"first error, {kind} {op}: {r['first_error']}")


if __name__ == "__main__":
    main()
