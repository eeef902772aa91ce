"""NUL characters and unpaired surrogates in every text input, on SQLite and PostgreSQL:
each is a 422 naming the field, never a 500 (PostgreSQL text cannot hold NUL). The
query parameters are read from the OpenAPI document, so a new route is tried as well."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from .test_jobs_api import problem

XOR = json.loads((Path(__file__).parents[2] / "examples/xor.json").read_text())
BAD = {"nul": "a\x00b", "surrogate": "a\ud800b"}
# an unpaired surrogate cannot be sent in a URL or a form, only escaped in JSON; there
# the nearest thing is its UTF-8-style bytes, which are not UTF-8 at all
RAW = {"nul": "a%00b", "surrogate": "a%ED%A0%80b"}


def _ids(server) -> dict[str, int]:
    s = server.session("alice")
    job = s.post(server.api + "/jobs", json={"spec": XOR}).json()["id"]
    buf = io.BytesIO()
    np.savez(buf, X=np.eye(4), y=np.array([0, 1, 0, 1]))
    dataset = s.post(server.api + "/datasets", files={"file": ("d.npz", buf.getvalue())}).json()["id"]
    token = s.get(server.api + "/tokens").json()["items"][0]["id"]
    return {"job_id": job, "dataset_id": dataset, "epoch": 1, "token_id": token}


def _query_operations(server) -> list[tuple[str, str]]:
    doc = server.session("alice").get(server.api + "/openapi.json").json()
    return [(path, p["name"]) for path, item in doc["paths"].items() if "get" in item
            for p in item["get"].get("parameters", []) if p["in"] == "query"]


@pytest.mark.parametrize("kind", list(BAD))
def test_every_query_parameter_refuses_text_no_column_can_hold(api_server, kind):
    ids = _ids(api_server)
    operations = _query_operations(api_server)
    assert len(operations) >= 15  # the document lists them; an empty list would prove nothing
    s = api_server.session("alice")
    for path, name in operations:
        url = api_server.api.removesuffix("/api/v1") + path.format(**ids)
        r = s.get(f"{url}?{name}={RAW[kind]}", stream=True)
        if kind == "nul":
            body = problem(r, 422)
            assert f"query.{name}" in [e["path"] for e in body["errors"]], (path, name, body)
        else:
            # decoded with replacement characters: a value like any other, refused or not by its own rules
            assert r.status_code < 500, (path, name, r.text)
    # a parameter no route knows, even its name
    if kind == "nul":
        body = problem(s.get(api_server.api + "/jobs?x%00=1"), 422)
        assert body["errors"][0]["path"] == "query.x\x00"


def test_upload_fields_and_file_names_refuse_nul(api_server):
    s = api_server.session("alice")
    kind = "nul"
    csv = b"a,b\n1,0\n2,1\n3,0\n4,1\n"
    for form, filename, field in (({"name": BAD[kind]}, "d.csv", "name"), ({"target": BAD[kind]}, "d.csv", "target"),
                                  ({}, f"d{BAD[kind]}.csv", "file")):
        r = s.post(api_server.api + "/datasets", files={"file": (filename, csv)}, data=form)
        assert [e["path"] for e in problem(r, 422)["errors"]] == [field], (form, filename)
    assert s.get(api_server.api + "/datasets").json()["items"] == []


@pytest.mark.parametrize("kind", list(BAD))
def test_json_bodies_refuse_it(api_server, kind):
    s = api_server.session("alice")
    job = s.post(api_server.api + "/jobs", json={"spec": XOR}).json()["id"]
    for url, body, field in (
            ("/jobs", {"spec": {**XOR, "name": BAD[kind]}}, "spec.name"),
            ("/jobs", {"spec": {**XOR, "data": {"dataset": BAD[kind]}}}, "spec.data.dataset"),
            (f"/jobs/{job}/predict", {"inputs": [[BAD[kind], 1]]}, "inputs[0][0]"),
            ("/tokens", {"name": BAD[kind]}, "name")):
        # the body is sent as JSON text with the escape, as a client's encoder writes it
        r = s.post(api_server.api + url, data=json.dumps(body), headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (url, r.text)
        assert field in [e["path"] for e in r.json()["errors"]], (url, r.json())
