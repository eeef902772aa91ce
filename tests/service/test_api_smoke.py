"""The API answers over HTTP as a real gunicorn process, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
XOR = json.loads((Path(__file__).parents[2] / "examples/xor.json").read_text())


def test_health_submit_get_and_a_problem_document(live_api_server):
    s = live_api_server.session("alice")
    health = s.get(live_api_server.api + "/health")
    assert health.status_code == 200 and health.json()["database"] == "ok"
    r = s.post(live_api_server.api + "/jobs", json={"spec": XOR})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["owner"] == "alice" and r.headers["Location"].endswith(f"/{job['id']}")
    assert s.get(live_api_server.api + f"/jobs/{job['id']}").json()["spec"]["epochs"] == 300
    bad = s.post(live_api_server.api + "/jobs", json={"spec": {**XOR, "epochs": 0}})
    assert bad.status_code == 422 and bad.headers["Content-Type"] == "application/problem+json"
    assert bad.json()["errors"] == [{"path": "spec.epochs", "pointer": "/spec/epochs",
                                     "message": "must be >= 1, got 0"}]
