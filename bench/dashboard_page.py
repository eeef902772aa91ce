"""What a person sees of a long job in the dashboard: the job page's first load, a zoom
and a new step reaching the chart while the job runs, in a real headless Chromium
(Debian's, through Playwright, as tests/dashboard drives it), on SQLite and PostgreSQL.

For each database a throwaway ``trainyard api`` is started as in bench/dashboard.py and
one job is made to look running (an attempt claims it, no worker exists), with a
history written through the store's own :class:`SeriesWriter` (1 M steps per flush and
commit): ``--steps`` steps of the four step series (loss, lr, grad_norm,
samples_per_s; every raw point kept, the server's default) and about 100 epochs of
epoch_loss and val_loss. Then, signed in once on the jobs page:

* **first load**: ``page.goto`` of the job page (a fresh document each time: about:blank
  between loads) until every chart with data has drawn it, median of 5; beside it the
  server time of its ``/metrics`` request from Resource Timing (responseEnd -
  requestStart) and, for the median load, where the time goes, request by request;
* **zoom**: ``window.__trainyard.zoom('loss', a, b)`` over the middle 1% of the steps
  until the chart shows that range (timed in the page), median of 5;
* **step to dashboard**: a writer loop in this process appends 1,000 steps every 0.5 s
  as the worker's writer does (append, then ``write_outputs``: fence, flush, progress,
  commit) while the page follows the job over its event stream; the page is polled
  every 20 ms for the largest step its loss chart holds. Commit -> drawn over 20
  writes, and "step recorded -> drawn": that plus the worker's flush interval
  (``METRIC_FLUSH_S``), the longest a step waits in the worker's buffer.

Usage:  python bench/dashboard_page.py [--steps 10000000] [--only sqlite,postgresql]
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
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from nncore.series import BY_NAME  # noqa: E402
from service.store import lifecycle  # noqa: E402
from service.store.db import make_engine, make_sessionmaker  # noqa: E402
from service.store.metrics import SeriesWriter  # noqa: E402
from service.store.results import write_outputs  # noqa: E402
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, start_api_server, stop_api_server, throwaway_postgres  # noqa: E402
from tests.dashboard.test_dashboard import Page  # noqa: E402
from worker.attempt import METRIC_FLUSH_S  # noqa: E402

XOR = json.loads((ROOT / "examples/xor.json").read_text())
STEP_SERIES = ("loss", "lr", "grad_norm", "samples_per_s")
EPOCH_SERIES = ("epoch_loss", "val_loss")
EPOCHS = 100
CHUNK = 1_000_000
LOADS = ZOOMS = 5
WRITES = 20
STEPS_PER_WRITE = 1000  # 2,000 steps/s: a small model training fast
POLL_S = 0.02
#: the charts the written series are drawn in, from the catalog
CHARTS = sorted({BY_NAME[n].group for n in STEP_SERIES + EPOCH_SERIES})
TARGETS = {"load": 300.0, "live": 1000.0}

DRAWN = """(ids) => {
    const t = window.__trainyard;
    if (!t) return false;
    for (const id of ids) {
        const c = t.charts[id];
        if (!c || !c.plot || !c.plot.data[0].length) return false;
    }
    return performance.now();
}"""
TIMING = """() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const res = performance.getEntriesByType('resource').map((e) => ({
        name: e.name, start: e.startTime, requestStart: e.requestStart, responseStart: e.responseStart,
        responseEnd: e.responseEnd, size: e.encodedBodySize }));
    return { nav: { requestStart: nav.requestStart, responseStart: nav.responseStart, responseEnd: nav.responseEnd,
                    dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd }, res };
}"""
LAST_LOSS_STEP = """() => {
    const c = window.__trainyard && window.__trainyard.charts.loss;
    const b = c && c.buckets.loss;
    return b && b.length ? b[b.length - 1].last_step : -1;
}"""


def steps_per_epoch(steps: int) -> int:
    return max(1, steps // EPOCHS)


def step_values(rng: np.random.Generator, s: np.ndarray, total: int) -> dict[str, np.ndarray]:
    """A falling noisy loss, a cosine learning rate, a grad norm and a throughput."""
    n = len(s)
    return {"loss": 2.0 / (1 + s / 1e6) * rng.uniform(0.9, 1.1, n),
            "lr": 1e-5 + 0.005 * (1 + np.cos(np.pi * np.minimum(s, total) / total)),
            "grad_norm": 1.0 + 0.5 * rng.random(n),
            "samples_per_s": 2000.0 * rng.uniform(0.95, 1.05, n)}


def append_steps(writer: SeriesWriter, rng: np.random.Generator, lo: int, hi: int, total: int,
                 times: np.ndarray) -> None:
    s = np.arange(lo, hi, dtype=np.int64)
    epochs = s // steps_per_epoch(total) + 1
    for name, values in step_values(rng, s, total).items():
        writer.append(name, s, epochs, times, values)


def fill(sessions, job_id: int, steps: int, rng: np.random.Generator) -> tuple[lifecycle.Lease, SeriesWriter, int,
                                                                               float]:
    """Claim the job and write its history; return the lease, the writer (holding the
    open blocks, to go on with), the points written and the seconds it took."""
    spe = steps_per_epoch(steps)
    t0 = time.perf_counter()
    start = time.time() - steps / 2000
    with sessions() as session:
        lease = lifecycle.claim(session, job_id, "bench", 3600)
        assert lease is not None
        writer = SeriesWriter(job_id)
        points = 0
        for lo in range(0, steps, CHUNK):
            hi = min(steps, lo + CHUNK)
            append_steps(writer, rng, lo, hi, steps, start + np.arange(lo, hi) / 2000)
            points += len(STEP_SERIES) * (hi - lo)
            ends = np.arange(lo // spe, hi // spe + 1, dtype=np.int64) * spe + spe - 1  # an epoch's last step
            ends = ends[(ends >= lo) & (ends < hi)]
            if len(ends):
                e = ends // spe + 1
                for name in EPOCH_SERIES:
                    writer.append(name, ends, e, start + ends / 2000, 1.0 / e + (0.1 if name == "val_loss" else 0))
                points += len(EPOCH_SERIES) * len(ends)
            writer.flush(session)
            session.commit()
            writer.written()
    return lease, writer, points, time.perf_counter() - t0


def breakdown(timing: dict, drawn_at: float) -> list[tuple[str, float, float, float, float, int]]:
    """(what, start, first byte, server, end, bytes) per request of one load, ms from
    navigation start; first byte and server from requestStart."""
    nav = timing["nav"]
    rows = [("document /", 0.0, nav["responseStart"] - nav["requestStart"], nav["responseEnd"] - nav["requestStart"],
             nav["responseEnd"], 0)]
    for e in sorted(timing["res"], key=lambda e: e["start"]):
        if e["responseEnd"] <= 0 or e["start"] > drawn_at:
            continue  # a stream still open, or a request after the charts were drawn
        url = urlsplit(e["name"])
        path = url.path.replace("/api/v1", "") + ("?" + url.query if url.query else "")
        since = e["requestStart"]
        rows.append((path[:44], e["start"], e["responseStart"] - since, e["responseEnd"] - since, e["responseEnd"],
                     e["size"]))
    rows.append(("charts drawn", drawn_at, 0.0, 0.0, drawn_at, 0))
    return rows


def metrics_server_ms(timing: dict, want: str) -> float:
    entries = [e for e in timing["res"] if "/metrics?" in e["name"] and want in e["name"] and e["responseEnd"] > 0]
    e = entries[-1]
    return e["responseEnd"] - e["requestStart"]


def first_loads(ui: Page, job_url: str) -> dict:
    stream_status: list[int] = []
    ui.page.on("response", lambda r: "/stream?" in r.url and stream_status.append(r.status))
    loads = []
    for _ in range(LOADS):
        ui.page.goto("about:blank")
        t0 = time.perf_counter()
        ui.page.goto(job_url, wait_until="commit")
        drawn_at = ui.page.wait_for_function(DRAWN, arg=CHARTS, timeout=120_000).json_value()
        wall = 1000 * (time.perf_counter() - t0)
        timing = ui.page.evaluate(TIMING)
        loads.append({"wall": wall, "drawn_at": drawn_at, "metrics": metrics_server_ms(timing, "max_points="),
                      "timing": timing})
    median = sorted(loads, key=lambda x: x["wall"])[len(loads) // 2]
    return {"wall": [x["wall"] for x in loads], "page": [x["drawn_at"] for x in loads],
            "metrics": [x["metrics"] for x in loads], "breakdown": breakdown(median["timing"], median["drawn_at"]),
            "streams_refused": stream_status.count(503), "streams": len(stream_status)}


def zooms(ui: Page, steps: int) -> dict:
    a, b = steps // 2 - steps // 200, steps // 2 + steps // 200
    page_ms, wall_ms, server_ms = [], [], []
    for _ in range(ZOOMS):
        t0 = time.perf_counter()
        ui.page.evaluate(f"() => {{ window.__z0 = performance.now(); window.__trainyard.zoom('loss', {a}, {b}); }}")
        shown = f"document.querySelector('#chart-loss').dataset.zoom === '{a}-{b}'"
        took = ui.page.wait_for_function(f"() => {shown} && performance.now() - window.__z0",
                                         timeout=60_000).json_value()
        wall_ms.append(1000 * (time.perf_counter() - t0))
        page_ms.append(took)
        server_ms.append(metrics_server_ms(ui.page.evaluate(TIMING), "before_step="))
        points = ui.page.evaluate("() => window.__trainyard.charts.loss.buckets.loss.length")
        ui.page.evaluate("() => window.__trainyard.reset('loss')")
        ui.page.wait_for_function("() => document.querySelector('#chart-loss').dataset.zoom === ''")
    return {"page": page_ms, "wall": wall_ms, "metrics": server_ms, "range": (a, b), "buckets": points}


def open_streaming(ui: Page, job_url: str, deadline_s: float = 90.0) -> int:
    """Load the job page until it follows the job over its stream: the streams of the
    loads before may still hold the server's slots (until a write to them fails).
    Returns how many loads that took."""
    deadline = time.monotonic() + deadline_s
    tries = 0
    while True:
        tries += 1
        ui.page.goto("about:blank")
        ui.page.goto(job_url, wait_until="commit")
        ui.page.wait_for_function(DRAWN, arg=CHARTS, timeout=120_000)
        time.sleep(1.0)  # the streams start after the events' first read
        if ui.page.evaluate("() => window.__trainyard.live()") == "stream":
            return tries
        if time.monotonic() > deadline:
            raise RuntimeError("the job page did not get a stream")
        time.sleep(5)


def live(ui: Page, sessions, lease: lifecycle.Lease, writer: SeriesWriter, steps: int,
         rng: np.random.Generator) -> dict:
    """Commit -> drawn (ms) of WRITES writes of STEPS_PER_WRITE steps, 0.5 s apart."""
    spe = steps_per_epoch(steps)
    pending: list[tuple[int, float]] = []
    latencies: list[float] = []
    write_ms: list[float] = []
    step = steps
    next_write = time.monotonic()
    written = 0
    deadline = None
    while written < WRITES or pending:
        if written < WRITES and time.monotonic() >= next_write:
            hi = step + STEPS_PER_WRITE
            t = time.perf_counter()
            append_steps(writer, rng, step, hi, steps, time.time() + np.zeros(hi - step))
            progress = {"epoch": (hi - 1) // spe, "step": hi - 1, "epochs": 2 * EPOCHS, "steps_per_epoch": spe,
                        "eta_s": None, "metrics": {}}
            with sessions() as session:
                write_outputs(session, lease, writer, (), progress)
            committed = time.time()
            write_ms.append(1000 * (time.perf_counter() - t))
            pending.append((hi - 1, committed))
            step, written = hi, written + 1
            next_write += METRIC_FLUSH_S
            if written == WRITES:
                deadline = time.monotonic() + 10
        drawn = ui.page.evaluate(LAST_LOSS_STEP)
        seen = time.time()
        while pending and pending[0][0] <= drawn:
            latencies.append(1000 * (seen - pending.pop(0)[1]))
        if deadline is not None and time.monotonic() > deadline:
            raise RuntimeError(f"steps {[p[0] for p in pending]} were never drawn (last drawn: {drawn})")
        time.sleep(POLL_S)
    return {"latency": latencies, "write": write_ms, "mode": ui.page.evaluate("() => window.__trainyard.live()")}


def bench_backend(kind: str, pg_url: str | None, steps: int, browser) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"ty-bench-page-{kind}-"))
    server = start_api_server(kind, tmp, pg_url)
    engine = make_engine(server.database_url)
    try:
        alice = server.session("alice")
        job_id = alice.post(f"{server.api}/jobs", json={"spec": {**XOR, "name": f"long-{steps}"}}).json()["id"]
        sessions = make_sessionmaker(engine)
        rng = np.random.default_rng(7)
        lease, writer, points, secs = fill(sessions, job_id, steps, rng)
        print(f"{kind}: {points:,} points written in {secs:.1f} s", flush=True)
        ui = Page(browser, server.url, stream_refused=(503,))
        ui.sign_in(server.tokens["alice"])
        job_url = f"{server.url}/#/jobs/{job_id}"
        out = {"load": first_loads(ui, job_url)}
        out["zoom"] = zooms(ui, steps)
        out["stream_tries"] = open_streaming(ui, job_url)
        out["live"] = live(ui, sessions, lease, writer, steps, rng)
        out["errors"] = list(ui.errors)
        ui.context.close()
        return out
    finally:
        engine.dispose()
        stop_api_server(server)
        shutil.rmtree(tmp, ignore_errors=True)


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def show(results: dict[str, dict]) -> None:
    kinds = list(results)
    flush = 1000 * METRIC_FLUSH_S

    def row(label: str, values: list[float], target: str = "") -> None:
        print(f"{label:<50}" + "".join(f"{v:>12.0f}" for v in values) + f"   {target}")

    print()
    print(f"{'ms':<50}" + "".join(f"{k:>12}" for k in kinds) + "   target")
    row("first load: goto -> every chart drawn (median of 5)", [med(r["load"]["wall"]) for r in results.values()],
        f"<= {TARGETS['load']:.0f}")
    row("  same, in the page: navigation start -> drawn", [med(r["load"]["page"]) for r in results.values()])
    row("  its /metrics?max_points: responseEnd-requestStart", [med(r["load"]["metrics"]) for r in results.values()])
    row("zoom to the middle 1%: call -> shown (median of 5)", [med(r["zoom"]["page"]) for r in results.values()],
        f"<= {TARGETS['load']:.0f} (as the first load)")
    row("  same, from Python (evaluate -> wait_for_function)", [med(r["zoom"]["wall"]) for r in results.values()])
    row("  its /metrics?before_step: responseEnd-requestStart", [med(r["zoom"]["metrics"]) for r in results.values()])
    n = len(next(iter(results.values()))["live"]["latency"])
    row(f"live: commit -> drawn, median of {n}", [med(r["live"]["latency"]) for r in results.values()],
        f"< {TARGETS['live']:.0f}")
    row("live: commit -> drawn, max", [max(r["live"]["latency"]) for r in results.values()], f"< {TARGETS['live']:.0f}")
    row(f"step recorded -> drawn (+{flush:.0f} ms worker flush), median",
        [med(r["live"]["latency"]) + flush for r in results.values()], f"< {TARGETS['live']:.0f}")
    row(f"step recorded -> drawn (+{flush:.0f} ms worker flush), max",
        [max(r["live"]["latency"]) + flush for r in results.values()], f"< {TARGETS['live']:.0f}")
    row("  the writer's write_outputs (fence+flush+commit), median",
        [med(r["live"]["write"]) for r in results.values()])

    for kind, r in results.items():
        ld, z, lv = r["load"], r["zoom"], r["live"]
        print(f"\n{kind}: first loads (goto -> drawn) " + ", ".join(f"{v:.0f}" for v in ld["wall"])
              + " ms; their /metrics " + ", ".join(f"{v:.0f}" for v in ld["metrics"]) + " ms")
        print(f"{kind}: zooms to steps {z['range'][0]:,}-{z['range'][1]:,} " + ", ".join(f"{v:.0f}" for v in z["page"])
              + f" ms ({z['buckets']} loss buckets shown); their /metrics "
              + ", ".join(f"{v:.0f}" for v in z["metrics"]) + " ms")
        print(f"{kind}: commit -> drawn " + ", ".join(f"{v:.0f}" for v in lv["latency"]) + f" ms (followed by "
              f"{lv['mode']}; the 5 loads' streams: {ld['streams_refused']} of {ld['streams']} refused 503, "
              f"{r['stream_tries']} load(s) to get a stream for the live part)")
        if r["errors"]:
            print(f"{kind}: console errors: {r['errors'][:5]}")
        print(f"{kind}: where the median first load goes (ms from navigation start; from requestStart: first "
              f"byte = responseStart, server = responseEnd; bytes: encoded body, 0 for a 304)")
        print(f"  {'request':<46}{'start':>8}{'1st byte':>9}{'server':>8}{'end':>8}{'bytes':>10}")
        for what, start, first, server, end, size in ld["breakdown"]:
            print(f"  {what:<46}{start:>8.1f}{first:>9.1f}{server:>8.1f}{end:>8.1f}{size:>10,}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=10_000_000, help="steps of history of the job")
    ap.add_argument("--only", default="sqlite,postgresql")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        print(f"dashboard job page: Python {platform.python_version()}, {os.cpu_count()} CPUs, Chromium "
              f"{browser.version} headless, 1360x900, gunicorn 2 processes; {args.steps:,} steps x "
              f"{len(STEP_SERIES)} step series + {EPOCHS} epochs x {len(EPOCH_SERIES)}; load average "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        for kind in [k.strip() for k in args.only.split(",") if k.strip()]:
            if kind == "postgresql":
                with throwaway_postgres() as url:
                    results[kind] = bench_backend(kind, url, args.steps, browser)
            else:
                results[kind] = bench_backend(kind, None, args.steps, browser)
        browser.close()
    show(results)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
