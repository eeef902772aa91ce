"""trainyard.Client (service.client) against a real server."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.client import ApiError, Client

pytestmark = pytest.mark.integration
XOR = json.loads((Path(__file__).parents[2] / "examples/xor.json").read_text())


def test_client_calls_and_problem_documents(api_server, tmp_path):
    c = Client(api_server.url, api_server.tokens["alice"])
    job = c.submit(XOR, priority=5, idempotency_key="k1")
    assert job["status"] == "queued" and job["priority"] == 5
    assert c.submit(XOR, priority=5, idempotency_key="k1")["id"] == job["id"]
    assert c.job(job["id"])["name"] == "xor"
    assert job["id"] in [j["id"] for j in c.jobs(status="queued")["items"]]
    assert c.cancel(job["id"])["status"] == "cancelled"
    c.delete(job["id"])
    with pytest.raises(ApiError) as info:
        c.job(job["id"])
    assert info.value.status == 404 and info.value.problem["status"] == 404
    with pytest.raises(ApiError) as info:
        c.submit({**XOR, "epochs": 0})
    assert info.value.status == 422 and "spec.epochs: must be >= 1, got 0" in str(info.value)
    csv = tmp_path / "d.csv"
    np.savetxt(csv, np.c_[np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2], delimiter=",")
    ds = c.upload_dataset(csv, name="toy")
    assert ds["n_features"] == 3 and c.datasets()["items"][0]["id"] == ds["id"]
    with pytest.raises(ApiError) as info:
        Client(api_server.url, "ty_wrong").jobs()
    assert info.value.status == 401
    with pytest.raises(ConnectionError, match="cannot reach"):
        Client("http://127.0.0.1:9", "x").jobs()
