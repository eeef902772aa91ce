"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright),
against a real API server and a real worker: sign in, the jobs table, a running job's
loss curve growing, the workers view, cancel from the page, a checkpoint download.
Every page must load without a console error; a screenshot of each is saved under
build/screenshots (or $TRAINYARD_SCREENSHOTS)."""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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


class Page:
    """A page that records console errors and uncaught exceptions."""

    def __init__(self, browser, base_url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.base_url = base_url
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

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

    ui = Page(browser, server.url)
    page = ui.page
    page.goto(server.url + "/")
    page.wait_for_selector("form input[name=token]")
    ui.shot("01-sign-in")
    page.fill("form input[name=token]", server.tokens["alice"])
    page.click("form button[type=submit]")
    page.wait_for_selector(f"#jobs tr[data-id='{quick['id']}']")
    assert page.inner_text("#who") == "alice"

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
    wait_until(lambda: "val_loss" in (page.get_attribute("#chart-loss", "data-series") or ""), 30,
               "the first epoch's validation loss")
    assert ui.points("lr") > 0
    assert "digits-sgd" in page.inner_text("h1")
    assert '"batch_size": 1' in page.inner_text("pre.spec")
    assert "running" in page.inner_text("#events")
    ui.shot("03-job-running")

    # the workers view: one alive worker, training the job
    page.click("nav a[data-nav=workers]")
    page.wait_for_selector("#workers tr[data-state=alive]")
    worker_row = page.inner_text("#workers tr[data-state=alive]")
    assert f"#{slow['id']}" in worker_row and "1 / 2" in worker_row
    ui.shot("04-workers")

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

    # the page's own reduction of long series: first, last and each range's extremes
    kept = page.evaluate("""() => downsample(Array.from({length: 10000},
        (_, i) => [i, Math.floor(i / 100), i === 4321 ? 50 : i === 777 ? -1 : 1 / (i + 1)]), 100).map((p) => p[0])""")
    assert kept[0] == 0 and kept[-1] == 9999 and 4321 in kept and 777 in kept
    assert len(kept) <= 100 and kept == sorted(kept)

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
