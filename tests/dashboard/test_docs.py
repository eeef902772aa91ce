"""The API's documentation page (/api/v1/docs) in a real headless Chromium: Swagger UI,
vendored, renders every operation of the OpenAPI document under the dashboard's CSP,
with no request leaving the server's origin (it works offline), no console error and no
CSP violation, also once an operation is opened and tried. Its screenshot is saved with
the dashboard's (build/screenshots or $TRAINYARD_SCREENSHOTS)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from service.api.dashboard import CSP
from tests.conftest import ApiServer, start_api_server, stop_api_server
from tests.dashboard.test_dashboard import SHOTS

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# a listener that is there before any script of the page runs (Playwright's init scripts
# are not subject to the page's CSP)
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", e =>
  window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ApiServer]:
    s = start_api_server("sqlite", tmp_path_factory.mktemp("docs"), None)
    yield s
    stop_api_server(s)


def test_docs_page_is_served_from_here_under_the_dashboards_csp(server):
    r = requests.get(server.api + "/docs", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert r.headers["Content-Security-Policy"] == CSP
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in r.text and "cdn" not in r.text.lower() and "style=" not in r.text
    for asset in ("/dashboard/vendor/swagger-ui-bundle.js", "/dashboard/vendor/swagger-ui.css", "/dashboard/docs.js"):
        assert asset in r.text
        got = requests.get(server.url + asset, timeout=10)
        assert got.status_code == 200 and got.headers["X-Content-Type-Options"] == "nosniff", asset


def test_docs_render_every_operation_offline_without_errors(server, browser):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    requested: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.add_init_script(RECORD_VIOLATIONS)
    try:
        page.goto(server.api + "/docs")
        page.wait_for_selector(".opblock-summary-path[data-path='/api/v1/jobs']", timeout=20_000)

        spec = requests.get(server.api + "/openapi.json", timeout=10).json()
        operations = {(method.upper(), path) for path, item in spec["paths"].items() for method in item
                      if method in ("get", "post", "put", "patch", "delete")}
        shown = set()
        for block in page.query_selector_all(".opblock"):
            method = block.query_selector(".opblock-summary-method").inner_text().strip()
            path = block.query_selector(".opblock-summary-path").get_attribute("data-path")
            shown.add((method, path))
        assert ("POST", "/api/v1/jobs") in shown
        assert shown == operations
        assert "trainyard API" in page.inner_text(".info .title")

        # open one operation and try it: Swagger UI's request goes to this server (401: no token)
        page.click(".opblock-get .opblock-summary-path[data-path='/api/v1/jobs']")
        page.click(".opblock.is-open button.try-out__btn")
        with page.expect_response(lambda r: r.url.startswith(server.api + "/jobs")) as answer:
            page.click(".opblock.is-open button.execute")
        assert answer.value.status == 401
        page.wait_for_selector(".opblock.is-open .responses-table.live-responses-table")
        # the browser logs the 401 of that request as a console error: it is no fault of the page
        errors[:] = [e for e in errors if "401" not in e]

        SHOTS.mkdir(parents=True, exist_ok=True)
        shot = SHOTS / "docs.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000

        violations = page.evaluate("() => window.__violations")
    finally:
        context.close()
    foreign = [u for u in requested if not u.startswith(server.url + "/") and not u.startswith("data:")]
    assert foreign == [], "every request of the docs page goes to its own server"
    assert violations == [] and errors == [], (violations, errors)
