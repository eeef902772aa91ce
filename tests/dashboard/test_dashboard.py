"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright),
against a real API server and a real worker: sign in, the jobs table, a running job's
loss curve growing, the workers view, cancel from the page, a checkpoint download; and,
on a server without workers, a long series written through the store: its band, zoom to
raw points, the log scale, live growth. Every page must load without a console error;
a screenshot of each is saved under build/screenshots (or $TRAINYARD_SCREENSHOTS)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import requests

from service.store import lifecycle
from service.store.db import make_engine, make_sessionmaker
from service.store.results import insert_metric_points
from service.store.status import JobStatus
from tests.conftest import ApiServer, start_api_server, stop_api_server
from tests.worker.conftest import Workers

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
SHOTS = Path(os.environ.get("TRAINYARD_SCREENSHOTS", ROOT / "build" / "screenshots"))

XOR = json.loads((ROOT / "examples/xor.json").read_text())
# long enough to watch (one sample per step, checkpoints every epoch); cancelled by the test
SLOW = {"name": "digits-sgd", "model": {"input_dim": 64, "layers": [{"units": 64, "activation": "relu"},
                                                                    {"units": 10, "activation": "softmax"}]},
        "loss": "categorical_cross_entropy", "optimizer": {"name": "sgd", "lr": 0.01},
        "data": {"dataset": "digits", "validation_split": 0.2, "standardize": True},
        "batch_size": 1, "epochs": 500, "seed": 1, "checkpoint_every": 1}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[ApiServer, Workers]]:
    tmp = tmp_path_factory.mktemp("dashboard")
    server = start_api_server("sqlite", tmp, None)
    workers = Workers(server, tmp)
    workers.start(concurrency=2)
    yield server, workers
    workers.stop_all()
    stop_api_server(server)


@pytest.fixture(scope="module")
def quiet(tmp_path_factory) -> Iterator[ApiServer]:
    """An API server with no worker: its jobs move only as the test moves them."""
    server = start_api_server("sqlite", tmp_path_factory.mktemp("quiet"), None)
    yield server
    stop_api_server(server)


def has_stream(server: ApiServer) -> bool:
    """Whether this server has the live stream (GET /jobs/<id>/stream) yet: its OpenAPI
    document lists it (asking the stream itself would hold one of its threads)."""
    paths = requests.get(f"{server.api}/openapi.json", timeout=10).json()["paths"]
    return "/api/v1/jobs/{job_id}/stream" in paths


class Page:
    """A page that records console errors and uncaught exceptions. ``stream_refused``:
    the statuses the live stream is expected to be refused with (404: the server has
    none, 503: at capacity), whose report by the browser is no error: the page polls."""

    def __init__(self, browser, base_url: str, stream_refused: tuple[int, ...] = ()) -> None:
        self.context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.base_url = base_url
        self.errors: list[str] = []
        self.stream_refused = stream_refused
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def _console(self, m) -> None:
        url = (m.location or {}).get("url", "")
        if m.type != "error" or ("/stream?" in url and any(str(c) in m.text for c in self.stream_refused)):
            return
        self.errors.append(f"console: {m.text} ({url})")

    def sign_in(self, token: str) -> None:
        self.page.goto(self.base_url + "/")
        self.page.fill("form input[name=token]", token)
        self.page.click("form button[type=submit]")
        self.page.wait_for_selector("#jobs tbody tr")

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000, f"{path} looks empty"
        return path

    def points(self, chart: str) -> int:
        return int(self.page.get_attribute(f"#chart-{chart}", "data-points") or 0)

    def last_x(self, chart: str) -> int:
        return int(self.page.get_attribute(f"#chart-{chart}", "data-last-x") or -1)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_dashboard_end_to_end(stack, browser):
    server, _ = stack
    alice = server.session("alice")
    quick = alice.post(f"{server.api}/jobs", json={"spec": XOR}).json()

    streaming = has_stream(server)
    ui = Page(browser, server.url, stream_refused=() if streaming else (404,))
    page = ui.page
    page.goto(server.url + "/")
    page.wait_for_selector("form input[name=token]")
    ui.shot("01-sign-in")
    page.fill("form input[name=token]", server.tokens["alice"])
    page.click("form button[type=submit]")
    page.wait_for_selector(f"#jobs tr[data-id='{quick['id']}']")
    assert page.inner_text("#who") == "alice"
    # the quick job may have written a checkpoint already: the figure is its size or 0
    assert re.fullmatch(r"storage [\d.]+ (B|KiB) of 50\.0 GiB", page.inner_text("#storage"))
    assert "reserved by unfinished jobs" in page.get_attribute("#storage", "title")

    # the quick job finishes; the table updates by itself and shows its result
    page.wait_for_selector(f"#jobs tr[data-id='{quick['id']}'][data-status='succeeded']", timeout=30_000)
    row = page.inner_text(f"#jobs tr[data-id='{quick['id']}']")
    assert "xor" in row and "alice" in row and "accuracy 1" in row

    slow = alice.post(f"{server.api}/jobs", json={"spec": SLOW}).json()
    page.wait_for_selector(f"#jobs tr[data-id='{slow['id']}'][data-status='running']", timeout=30_000)
    ui.shot("02-jobs")

    # the running job's page: its loss curve grows while we watch
    page.click(f"#jobs tr[data-id='{slow['id']}'] a")
    page.wait_for_selector("#chart-loss canvas", timeout=20_000)
    first = ui.last_x("loss")
    assert first > 0 and ui.points("loss") > 0
    wait_until(lambda: ui.last_x("loss") > first, 20, "the loss curve to grow")
    # followed through the stream where the server has one, else by polling
    assert page.evaluate("() => window.__trainyard.live()") == ("stream" if streaming else "poll")
    wait_until(lambda: "val_loss" in (page.get_attribute("#chart-loss", "data-series") or ""), 30,
               "the first epoch's validation loss")
    assert ui.points("lr") > 0
    # the step series (float32) and the epoch series (float64) of a constant learning
    # rate differ by rounding only: the chart still has a y range to draw them in
    wait_until(lambda: "epoch_lr" in (page.get_attribute("#chart-lr", "data-series") or ""), 10,
               "the first epoch's learning rate")
    lr_scale = page.evaluate("() => window.__trainyard.charts.lr.plot.scales.y")
    assert lr_scale["min"] < 0.01 < lr_scale["max"], lr_scale
    assert "digits-sgd" in page.inner_text("h1")
    assert '"batch_size": 1' in page.inner_text("pre.spec")
    assert "running" in page.inner_text("#events")
    ui.shot("03-job-running")

    # the workers view: one alive worker, training the job; the job page's stream ends
    aborted: list[str] = []
    page.on("requestfailed", lambda r: "/stream?" in r.url and aborted.append(r.failure or ""))
    page.click("nav a[data-nav=workers]")
    page.wait_for_selector("#workers tr[data-state=alive]")
    worker_row = page.inner_text("#workers tr[data-state=alive]")
    assert f"#{slow['id']}" in worker_row and "1 / 2" in worker_row
    ui.shot("04-workers")
    if streaming:
        wait_until(lambda: bool(aborted), 5, "the stream to be closed")

    # cancel from the page; checkpoints stay and download with the listed sha256
    page.go_back()
    page.wait_for_selector("button.danger:has-text('Cancel job')")
    page.wait_for_selector("#checkpoints a.download", timeout=30_000)
    page.click("button.danger:has-text('Cancel job')")
    page.wait_for_selector(".toolbar .badge.cancelled", timeout=20_000)
    assert alice.get(f"{server.api}/jobs/{slow['id']}").json()["status"] == "cancelled"
    listed = alice.get(f"{server.api}/jobs/{slow['id']}/checkpoints").json()["items"]
    newest = max(listed, key=lambda c: c["epoch"])
    # the table catches up with the checkpoints written while the cancel took effect
    newest_link = f"#checkpoints a.download[href$='/checkpoints/{newest['epoch']}']"
    page.wait_for_selector(newest_link)
    with page.expect_download() as info:
        page.click(newest_link)
    saved = Path(info.value.path())
    assert info.value.suggested_filename == f"job-{slow['id']}-epoch-{newest['epoch']:05d}.npz"
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == newest["sha256"]
    ui.shot("05-job-cancelled")

    # a finished classifier: accuracy per epoch is drawn
    page.goto(f"{server.url}/#/jobs/{quick['id']}")
    page.wait_for_selector("#chart-accuracy canvas")
    assert ui.points("accuracy") > 0 and "epoch_accuracy" in page.get_attribute("#chart-accuracy", "data-series")
    ui.shot("06-job-succeeded")

    # polled raw points fold into the buckets a series is shown in (aligned ranges of
    # their width); a bucket the stream sends again replaces the one shown
    folded = page.evaluate("""() => { const l = [];
        for (let s = 0; s < 10; s++) foldPoint(l, {step: s, epoch: 0, value: s === 7 ? 9 : 1}, 4);
        return l.map((b) => [b.step, b.last_step, b.count, b.max]); }""")
    assert folded == [[0, 3, 4, 1], [4, 7, 4, 9], [8, 9, 2, 1]]
    put = page.evaluate("""() => { const l = [{step: 0}, {step: 4, count: 2}];
        putBucket(l, {step: 4, count: 4}); putBucket(l, {step: 8, count: 1}); return l; }""")
    assert put == [{"step": 0}, {"step": 4, "count": 4}, {"step": 8, "count": 1}]

    assert ui.errors == [], ui.errors


def test_a_wrong_token_is_refused_and_other_peoples_jobs_stay_hidden(stack, browser):
    server, _ = stack
    bobs = server.session("bob").post(f"{server.api}/jobs", json={"spec": {**XOR, "name": "bobs-job"}}).json()
    ui = Page(browser, server.url)
    page = ui.page
    page.goto(server.url + "/")
    page.fill("form input[name=token]", "ty_not-a-token")
    page.click("form button[type=submit]")
    page.wait_for_selector(".login .error-box")
    assert "not accepted" in page.inner_text(".login .error-box")
    page.fill("form input[name=token]", server.tokens["alice"])
    page.click("form button[type=submit]")
    page.wait_for_selector("#jobs tbody tr")
    assert f"data-id=\"{bobs['id']}\"" not in page.inner_html("#jobs")
    # an admin sees everybody's jobs
    page.click("#signout")
    page.fill("form input[name=token]", server.tokens["root"])
    page.click("form button[type=submit]")
    page.wait_for_selector(f"#jobs tr[data-id='{bobs['id']}']")
    # the only console errors are the browser's report of the refused token's 401
    assert all("401" in e for e in ui.errors), ui.errors


STEPS = 200_000
SPIKE_STEP, SPIKE = 123_457, 50.0


def loss_points(steps: range, rng: np.random.Generator, spikes: dict[int, float]) -> list[tuple[str, int, int, float]]:
    """A falling, noisy batch loss with the given spikes (float32-exact values)."""
    noise = rng.uniform(0.9, 1.1, len(steps))
    return [("loss", s, s // 20_000, spikes.get(s, float(np.float32(2.0 / (1 + s / 5_000) * n))))
            for s, n in zip(steps, noise, strict=True)]


def chart_state(page, chart: str = "loss", name: str = "loss") -> dict:
    """What the uPlot instance of a chart draws for one series (window.__trainyard)."""
    return page.evaluate("""([chart, name]) => {
        const c = window.__trainyard.charts[chart];
        const col = c.layout[name];
        const d = c.plot.data;
        const finite = (i) => (i === undefined ? [] : d[i].filter((v) => v !== null && v !== undefined));
        const buckets = c.buckets[name];
        return { steps: buckets.map((b) => b.step), counts: buckets.map((b) => b.count),
                 widths: [...new Set(buckets.map((b) => b.bucket_steps))], values: finite(col.value),
                 band: col.min !== undefined, bands: (c.plot.bands || []).length,
                 bandMax: Math.max(...finite(col.max)), bandMin: Math.min(...finite(col.min)),
                 lineMax: Math.max(...finite(col.value)), distr: c.plot.scales.y.distr,
                 xmin: c.plot.scales.x.min, xmax: c.plot.scales.x.max, width: c.plot.width }; }""", [chart, name])


@pytest.mark.parametrize("refused", [False, True], ids=["streamed", "stream-refused"])
def test_a_long_series_shows_its_band_zooms_to_raw_points_and_grows(quiet, browser, refused):
    """A 200,000-step loss with a planted spike: one request for the whole job, the band
    holds the spike, a zoom fetches raw points, the log scale, live growth through the
    stream (or polling when the stream is refused: 503 as at capacity)."""
    server = quiet
    alice = server.session("alice")
    job = alice.post(f"{server.api}/jobs", json={"spec": {**XOR, "name": "long-run"}}).json()
    engine = make_engine(server.database_url)
    sessions = make_sessionmaker(engine)
    rng = np.random.default_rng(7)
    with sessions() as session:
        # the job runs, as far as the page can tell: an attempt holds it, no worker exists
        lease = lifecycle.claim(session, job["id"], "test-attempt", 3600)
        assert lease is not None
        insert_metric_points(session, job["id"], loss_points(range(STEPS), rng, {SPIKE_STEP: SPIKE}))
        insert_metric_points(session, job["id"], [("val_loss", e * 20_000 + 19_999, e, 1.0 / (e + 1))
                                                  for e in range(STEPS // 20_000)])
    streaming = has_stream(server) and not refused

    ui = Page(browser, server.url, stream_refused=() if streaming else (404, 503))
    page = ui.page
    if refused:
        page.route("**/stream?*", lambda route: route.fulfill(
            status=503, headers={"Retry-After": "5"}, content_type="application/problem+json",
            body=json.dumps({"title": "Service Unavailable", "status": 503, "detail": "at capacity"})))
    metric_requests: list[str] = []
    stream_requests: list[dict[str, list[str]]] = []
    page.on("request", lambda r: "/metrics" in r.url and metric_requests.append(r.url))
    page.on("request", lambda r: "/stream?" in r.url and stream_requests.append(parse_qs(urlsplit(r.url).query)))
    ui.sign_in(server.tokens["alice"])
    page.goto(f"{server.url}/#/jobs/{job['id']}")
    page.wait_for_selector("#chart-loss canvas")
    page.wait_for_function("() => window.__trainyard && window.__trainyard.charts.loss.plot")

    # one request for every series, at most a chart's width of buckets each
    assert len(metric_requests) == 1 and "max_points=" in metric_requests[0] and "name=" not in metric_requests[0]
    max_points = int(metric_requests[0].split("max_points=")[1].split("&")[0])
    whole = chart_state(page)
    assert 300 <= whole["width"] <= max_points + 100 and max_points <= 2000
    assert len(whole["steps"]) <= max_points and max(whole["counts"]) > 1
    # the band is drawn, and the planted spike is its maximum (the mean line hides it)
    assert whole["band"] and whole["bands"] >= 1
    assert whole["bandMax"] == SPIKE and whole["lineMax"] < SPIKE
    assert page.get_attribute("#chart-loss", "data-series") == "loss,val_loss"
    assert int(page.get_attribute("#chart-loss", "data-last-x")) == STEPS - 1
    shot = "-refused" if refused else ""
    ui.shot(f"07-long-series{shot}")

    # live from where the first load ended, each series at the bucket width it came in:
    # the loss in its buckets (with the other step series), the epoch series raw
    wait_until(lambda: len(stream_requests) >= (2 if streaming else 1), 10, "the stream requests")
    by_width = {q["bucket_steps"][0]: q for q in stream_requests}
    loss_width = str(whole["widths"][0])
    assert set(by_width) == {loss_width, "1"}, (stream_requests, metric_requests)
    assert by_width[loss_width]["after_step"] == [str(STEPS - 1)]
    assert "loss" in by_width[loss_width]["name"][0].split(",")
    assert "val_loss" in by_width["1"]["name"][0].split(",")


    # zoom around the spike (what a drag does): raw points, every step, the spike in them
    page.evaluate(f"() => window.__trainyard.zoom('loss', {SPIKE_STEP - 60}, {SPIKE_STEP + 60})")
    page.wait_for_function("() => document.querySelector('#chart-loss').dataset.zoom !== ''")
    zoomed = chart_state(page)
    assert "after_step=" in metric_requests[-1] and "before_step=" in metric_requests[-1]
    assert zoomed["steps"] == list(range(SPIKE_STEP - 60, SPIKE_STEP + 61))
    assert set(zoomed["counts"]) == {1} and not zoomed["band"]
    assert zoomed["lineMax"] == SPIKE and (zoomed["xmin"], zoomed["xmax"]) == (SPIKE_STEP - 60, SPIKE_STEP + 60)
    ui.shot(f"08-zoomed-to-raw-points{shot}")

    # double-click: the whole job again
    page.dblclick("#chart-loss .u-over")
    page.wait_for_function("() => document.querySelector('#chart-loss').dataset.zoom === ''")
    assert chart_state(page)["steps"] == whole["steps"]

    # a real drag over the middle fifth of the plot zooms in too
    box = page.locator("#chart-loss .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.4, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('#chart-loss').dataset.zoom !== ''")
    dragged = chart_state(page)
    assert 0.3 * STEPS < dragged["xmin"] < 0.5 * STEPS < dragged["xmax"] < 0.7 * STEPS
    assert len(dragged["steps"]) > len(whole["steps"]) / 5 and min(dragged["widths"]) < min(whole["widths"])
    page.click("#chart-loss >> xpath=.. >> button:has-text('Reset zoom')")
    page.wait_for_function("() => document.querySelector('#chart-loss').dataset.zoom === ''")

    # the log scale: on, off
    page.click("button[data-log=loss]")
    page.wait_for_function("() => window.__trainyard.charts.loss.plot.scales.y.distr === 3")
    logged = chart_state(page)
    assert logged["bandMax"] == SPIKE and logged["bandMin"] > 0
    assert page.get_attribute("button[data-log=loss]", "aria-pressed") == "true"
    ui.shot(f"09-log-scale{shot}")
    page.click("button[data-log=loss]")
    page.wait_for_function("() => window.__trainyard.charts.loss.plot.scales.y.distr === 1")
    # charts of series without log_scale in the catalog have no toggle
    assert page.locator("button[data-log=error]").count() == 1
    assert page.locator("button[data-log=accuracy]").count() == 0
    assert page.locator("button[data-log=throughput]").count() == 0

    # live: points written now reach the curve, a new spike in its band
    with sessions() as session:
        insert_metric_points(session, job["id"], loss_points(range(STEPS, STEPS + 3000), rng, {STEPS + 1500: 70.0}))
    wait_until(lambda: ui.last_x("loss") == STEPS + 2999, 20, "the new points on the loss chart")
    grown = chart_state(page)
    assert grown["bandMax"] == 70.0 and grown["steps"][: len(whole["steps"]) - 1] == whole["steps"][:-1]
    assert grown["widths"] == whole["widths"]
    mode = page.evaluate("() => window.__trainyard.live()")
    assert mode == ("stream" if streaming else "poll")
    # refused: polled since, the stream not asked again on this page
    assert refused is False or len(stream_requests) == 2
    ui.shot(f"10-live-grown{shot}")

    with sessions() as session:
        lifecycle.finish(session, lease, JobStatus.SUCCEEDED, result={"train": {"loss": 0.1}})
    page.wait_for_selector(".toolbar .badge.succeeded", timeout=20_000)
    assert page.evaluate("() => window.__trainyard.live()") == "poll"
    engine.dispose()
    assert ui.errors == [], ui.errors
