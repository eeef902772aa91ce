"""Every response of the app says ``X-Content-Type-Options: nosniff`` and
``Referrer-Policy: no-referrer``: successes, the dashboard and the docs, and every
kind of error (404, 405, 401, 422, 413, 400), against the API in this process."""
from __future__ import annotations

import pytest

API_SETTINGS = {"max_upload_bytes": 10_000}


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("GET", "/api/v1/health", {}, 200),
    ("GET", "/api/v1/openapi.json", {}, 200),
    ("GET", "/api/v1/docs", {}, 200),
    ("GET", "/", {}, 200),
    ("GET", "/dashboard/app.js", {}, 200),
    ("GET", "/dashboard/vendor/swagger-ui-bundle.js", {}, 200),
    ("GET", "/api/v1/jobs", {"user": "alice"}, 200),
    ("GET", "/api/v1/nowhere", {}, 404),
    ("GET", "/api/v1/jobs/999999", {"user": "alice"}, 404),
    ("GET", "/api/v1/jobs/999999/stream", {"user": "alice"}, 404),
    ("DELETE", "/api/v1/health", {}, 405),
    ("GET", "/api/v1/jobs", {}, 401),
    ("POST", "/api/v1/jobs", {"user": "alice", "json": {"spec": {"model": {"layers": []}}}}, 422),
    ("POST", "/api/v1/jobs", {"user": "alice", "data": b"{not json", "headers": {"Content-Type": "application/json"}},
     400),
    ("POST", "/api/v1/datasets", {"user": "alice", "files": {"file": ("big.csv", b"1,2\n" * 5000)}}, 413),
])
def test_every_response_says_nosniff_and_no_referrer(api_server, method, path, kwargs, status):
    kwargs = dict(kwargs)
    session = api_server.session(kwargs.pop("user", None))
    r = session.request(method, api_server.url + path, **kwargs)
    assert r.status_code == status, r.text[:300]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    if status >= 400:
        assert r.headers["Content-Type"] == "application/problem+json"
