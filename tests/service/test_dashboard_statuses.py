"""The dashboard takes its job statuses from /api/v1/meta: the jobs filter lists what the
server serves, and which statuses are final (no Cancel button) comes from there too.
Shown by answering /meta with a status the page has never heard of. Headless Chromium
against the app served from this process (no worker: the job stays queued)."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from service.api import create_app
from service.shared.settings import Settings
from service.store.status import JobStatus

pytestmark = [pytest.mark.browser, pytest.mark.integration]

XOR = json.loads((Path(__file__).parents[2] / "examples/xor.json").read_text())
FILTER = "select[aria-label=Status] option"


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, str, int]]:
    """(base URL, alice's token, the id of her queued job)."""
    from service.store.db import make_engine, make_sessionmaker
    from service.store.migrate import upgrade
    from service.store.users import create_token

    tmp = tmp_path_factory.mktemp("dashboard-statuses")
    settings = Settings(database_url=f"sqlite:///{tmp / 'db.sqlite'}", broker_url=f"sqla+sqlite:///{tmp / 'b.sqlite'}",
                        artifact_dir=tmp / "artifacts")
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as session:
        token = create_token(session, "alice")
    engine.dispose()
    app = create_app(settings)
    job_id = app.test_client().post("/api/v1/jobs", json={"spec": XOR},
                                    headers={"Authorization": f"Bearer {token}"}).get_json()["id"]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", token, job_id
    server.shutdown()


def _open(browser: Any, base: str, token: str, meta: dict[str, Any] | None = None) -> tuple[Any, list[str]]:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    if meta is not None:
        page.route("**/api/v1/meta", lambda route: route.fulfill(status=200, content_type="application/json",
                                                                 body=json.dumps(meta)))
    page.goto(base + "/")
    page.fill("form input[name=token]", token)
    page.click("form button[type=submit]")
    page.wait_for_selector("#jobs tbody tr[data-id]")
    return page, errors


def test_the_filter_and_final_statuses_come_from_the_server(served, browser):
    base, token, job_id = served
    page, errors = _open(browser, base, token)
    assert page.eval_on_selector_all(FILTER, "els => els.map((e) => e.value)") == ["all", *JobStatus]
    assert page.get_attribute(f"{FILTER}[value=queued]", "title") == JobStatus.QUEUED.description
    page.goto(f"{base}/#/jobs/{job_id}")
    page.wait_for_selector("button.danger:has-text('Cancel job')")  # queued is not final
    assert errors == []

    # a server with a status this page was never told of, and queued made final
    real = page.evaluate("() => fetch('/api/v1/meta').then((r) => r.json())")
    statuses = [{**s, "finished": s["finished"] or s["name"] == "queued"} for s in real["job_statuses"]]
    statuses.insert(1, {"name": "paused", "finished": False, "description": "held by its owner"})
    page, errors = _open(browser, base, token, {**real, "job_statuses": statuses})
    assert page.eval_on_selector_all(FILTER, "els => els.map((e) => e.value)") == \
        ["all", "queued", "paused", "running", "succeeded", "failed", "cancelled"]
    page.goto(f"{base}/#/jobs/{job_id}")
    page.wait_for_selector(".toolbar .badge.queued")
    page.wait_for_timeout(300)  # a render that would show the button has run by now
    assert page.is_hidden("button.danger:has-text('Cancel job')"), "a final status offers no cancel"
    assert errors == []
