"""/api/v1/jobs through requests, against the API in this process on a fresh SQLite and
a fresh PostgreSQL database: submit (validation, problem documents, idempotency), list
(filters, cursor pages), get, cancel, delete, owner isolation, and submitting while the
broker is down."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from service.shared.queue import QUEUE, TASK_NAME, Enqueuer, enqueue_pending
from service.store.models import Event, Job
from tests.inprocess import InProcessApiServer as ApiServer
from tests.inprocess import inprocess_server

XOR = json.loads((Path(__file__).parents[2] / "examples/xor.json").read_text())
PROBLEM = "application/problem+json"


def problem(r: requests.Response, status: int) -> dict:
    """The RFC 9457 body of a response that must be a ``status`` problem document."""
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == PROBLEM, r.headers
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("https://trainyard.dev/problems/")
    return body


def paths(body: dict) -> list[str]:
    return [e["path"] for e in body.get("errors", [])]


def submit(server: ApiServer, user: str = "alice", spec: dict | None = None, **fields) -> dict:
    r = server.session(user).post(server.api + "/jobs", json={"spec": spec or XOR, **fields})
    assert r.status_code == 201, r.text
    return r.json()


def with_data(**data) -> dict:
    return {**XOR, "data": data}


def with_layers(*layers: dict) -> dict:
    return {**XOR, "model": {**XOR["model"], "layers": list(layers)}}


# -- submit -------------------------------------------------------------------------------

def test_submit_answers_201_with_the_queued_job_and_its_location(api_server):
    s = api_server.session("alice")
    r = s.post(api_server.api + "/jobs", json={"spec": XOR, "priority": 7})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["owner"] == "alice" and job["priority"] == 7
    assert job["spec"]["version"] == 1 and job["spec"]["model"]["layers"][1]["activation"] == {"name": "sigmoid"}
    assert r.headers["Location"].endswith(f"/api/v1/jobs/{job['id']}")
    again = s.get(requests.compat.urljoin(api_server.url, r.headers["Location"]))
    assert again.status_code == 200 and again.json()["id"] == job["id"]


def test_an_invalid_spec_gets_every_problem_with_its_json_path(api_server):
    spec = {**XOR, "epochs": 10**9,
            "model": {**XOR["model"], "layers": [{"units": 10**6, "activation": "relux"},
                                                 {"units": "ten", "activation": "sigmoid"}]}}
    body = problem(api_server.session().post(api_server.api + "/jobs", json={"spec": spec}), 422)
    errors = {e["path"]: e for e in body["errors"]}
    assert set(errors) == {"spec.epochs", "spec.model.layers[0].units", "spec.model.layers[0].activation",
                           "spec.model.layers[1].units"}, body
    assert errors["spec.epochs"]["message"] == "must be <= 100000, got 1000000000"
    assert errors["spec.model.layers[0].units"]["message"] == "must be <= 16384, got 1000000"
    assert errors["spec.model.layers[0].units"]["pointer"] == "/spec/model/layers/0/units"
    unknown = errors["spec.model.layers[0].activation"]["message"]
    assert "relux" in unknown and all(name in unknown for name in ("relu", "tanh", "softmax", "prelu"))
    assert "must be an integer" in errors["spec.model.layers[1].units"]["message"]


RAW_BAD_SPECS = {
    # JSON that Python parses but no column can hold: NaN, infinities, huge integers
    "NaN": '{"spec": {"model": {"input_dim": 2, "layers": [{"units": 1}]}, "loss": "mse", '
           '"optimizer": {"name": "sgd", "lr": NaN}, "data": {"dataset": "xor"}}}',
    "Infinity": json.dumps({"spec": {**XOR, "max_runtime_s": float("inf")}}),
    "1e999": json.dumps({"spec": with_data(dataset="xor", noise=1)}).replace('"noise": 1', '"noise": 1e999'),
    "10^400": json.dumps({"spec": {**XOR, "seed": 10**400}}),
    "10^400 in a config": json.dumps({"spec": {**XOR, "schedule": {"name": "cosine", "t_max": 10**400}}}),
    # text no database takes
    "NUL": json.dumps({"spec": {**XOR, "name": "a\u0000b"}}),
    "lone surrogate": json.dumps({"spec": {**XOR, "name": "\ud800"}}),
    # shapes
    "nested 500 deep": json.dumps({"spec": {**XOR, "name": json.loads("[" * 500 + "]" * 500)}}),
    "10^4 layers": json.dumps({"spec": with_layers(*[{"units": 2, "activation": "relu"}] * 10_000)}),
    "batch 1e308": json.dumps({"spec": {**XOR, "batch_size": 1e308}}),
    "params 16384^2": json.dumps({"spec": {**XOR, "model": {"input_dim": 16384, "layers": [
        {"units": 16384, "activation": "relu"}] * 3}}}),
    "dataset_id 10^30": json.dumps({"spec": with_data(dataset_id=10**30)}),
    "dataset_id of 40 digits": json.dumps({"spec": with_data(dataset_id="9" * 40)}),
}


@pytest.mark.parametrize("name", list(RAW_BAD_SPECS))
def test_absurd_or_unstorable_specs_are_422_never_500(api_server, name):
    r = api_server.session().post(api_server.api + "/jobs", data=RAW_BAD_SPECS[name],
                                  headers={"Content-Type": "application/json"})
    body = problem(r, 422)
    # each is a problem of the spec, and there is at least one (all() of none is true)
    assert paths(body) and all(p.startswith("spec") for p in paths(body)), body


@pytest.mark.parametrize("raw,detail", [
    ('{"spec": ', "not valid JSON"),
    (b'{"spec": "\xff"}', "not valid JSON"),
    ("", "needs a JSON body"),
    ("[" * 200_000 + "]" * 200_000, "too deeply"),
])
def test_a_body_that_is_not_json_is_a_400_problem(api_server, raw, detail):
    r = api_server.session().post(api_server.api + "/jobs", data=raw, headers={"Content-Type": "application/json"})
    assert detail in problem(r, 400)["detail"]


def test_a_body_beyond_the_json_limit_is_a_413_problem(api_server):
    big = {"spec": {**XOR, "name": "x" * (2 * 1024 * 1024)}}
    assert "larger than" in problem(api_server.session().post(api_server.api + "/jobs", json=big), 413)["detail"]


@pytest.mark.parametrize("body,path", [
    ([XOR], ""),
    ("spec", ""),
    (None, "spec"),
    ({"spec": [XOR]}, "spec"),
    ({"spec": XOR, "owner": "root"}, "owner"),
    ({"spec": XOR, "priority": 101}, "priority"),
    ({"spec": XOR, "priority": -101}, "priority"),
    ({"spec": XOR, "priority": "1"}, "priority"),
    ({"spec": XOR, "priority": True}, "priority"),
    ({"spec": XOR, "priority": 1.5}, "priority"),
    ({"spec": {**XOR, "nmae": "typo"}}, "spec.nmae"),
])
def test_request_bodies_of_the_wrong_shape_are_422_at_their_path(api_server, body, path):
    r = api_server.session().post(api_server.api + "/jobs", data=json.dumps(body),
                                  headers={"Content-Type": "application/json"})
    assert paths(problem(r, 422)) == [path]


@pytest.mark.parametrize("data", [
    {"dataset": "csv", "path": "/etc/passwd"},
    {"dataset": "npz", "path": "/var/lib/secret.npz"},
    {"dataset": "csv"},
    {"dataset": "xor", "path": "../../etc/shadow"},
])
def test_a_spec_naming_a_file_on_the_server_is_refused_at_spec_data_path(api_server, data):
    body = problem(api_server.session().post(api_server.api + "/jobs", json={"spec": with_data(**data)}), 422)
    assert "spec.data.path" in paths(body) and paths(body).count("spec.data.path") == 1
    assert "POST /api/v1/datasets" in next(e["message"] for e in body["errors"] if e["path"] == "spec.data.path")


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer ty_" + "A" * 43},
    {"Authorization": "Bearer garbage"},
    {"Authorization": "Bearer " + "ty_" * 500},
    {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    {"Authorization": "Bearer"},
])
def test_without_a_valid_bearer_token_every_call_is_a_401_problem(api_server, headers):
    job = submit(api_server)
    for method, path in (("POST", "/jobs"), ("GET", "/jobs"), ("GET", f"/jobs/{job['id']}"),
                         ("POST", f"/jobs/{job['id']}/cancel"), ("DELETE", f"/jobs/{job['id']}")):
        r = api_server.session(None).request(method, api_server.api + path, headers=headers, json={"spec": XOR})
        assert "token" in problem(r, 401)["detail"]
    assert api_server.session().get(api_server.api + f"/jobs/{job['id']}").json()["status"] == "queued"


# -- Idempotency-Key ------------------------------------------------------------------------

def _count(server: ApiServer, user: str) -> int:
    return len(server.session(user).get(server.api + "/jobs", params={"limit": 200}).json()["items"])


def test_an_idempotency_key_replays_the_original_job_and_creates_nothing(api_server):
    s = api_server.session("alice")
    key = {"Idempotency-Key": f"order-{time.time_ns()}"}
    first = s.post(api_server.api + "/jobs", json={"spec": XOR, "priority": 3}, headers=key)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    before = _count(api_server, "alice")
    replay = s.post(api_server.api + "/jobs", json={"spec": XOR, "priority": 3}, headers=key)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"] and replay.headers["Location"] == first.headers["Location"]
    assert _count(api_server, "alice") == before
    # the same key with another body is a client error, not a silent replay
    other = s.post(api_server.api + "/jobs", json={"spec": XOR, "priority": 4}, headers=key)
    assert paths(problem(other, 422)) == ["Idempotency-Key"]
    assert _count(api_server, "alice") == before
    # keys are per user: bob's request with alice's key is bob's own new job
    bobs = api_server.session("bob").post(api_server.api + "/jobs", json={"spec": XOR, "priority": 3}, headers=key)
    assert bobs.status_code == 201 and "Idempotent-Replayed" not in bobs.headers
    assert bobs.json()["id"] != first.json()["id"] and bobs.json()["owner"] == "bob"


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_an_idempotency_key_is_1_to_255_characters(api_server, key):
    r = api_server.session().post(api_server.api + "/jobs", json={"spec": XOR}, headers={"Idempotency-Key": key})
    assert paths(problem(r, 422)) == ["Idempotency-Key"]


# -- list -----------------------------------------------------------------------------------

def _pages(server: ApiServer, user: str = "alice", **params) -> list[list[dict]]:
    pages, token = [], None
    while True:
        cursor = {"page_token": token} if token else {}
        r = server.session(user).get(server.api + "/jobs", params={**params, **cursor})
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append(page["items"])
        token = page["next_page_token"]
        if token is None:
            return pages
        assert isinstance(token, str) and len(pages) < 50


def test_filters_apply_before_the_page_limit(api_server):
    jobs = [submit(api_server, spec={**XOR, "name": f"page-{i}"}) for i in range(7)]
    cancelled = {jobs[i]["id"] for i in (0, 2, 3, 6)}
    for job_id in cancelled:
        assert api_server.session().post(api_server.api + f"/jobs/{job_id}/cancel").status_code == 202
    since = jobs[0]["created_at"]

    pages = _pages(api_server, status="cancelled", created_after=since, limit=2)
    assert [len(p) for p in pages] == [2, 2], pages      # no empty page in the middle, none at the end
    ids = [j["id"] for p in pages for j in p]
    assert sorted(ids) == sorted(cancelled) and ids == sorted(ids, reverse=True)  # each once, newest first
    assert all(j["status"] == "cancelled" for p in pages for j in p)

    queued = [j["id"] for p in _pages(api_server, status="queued", created_after=since, limit=2) for j in p]
    assert set(queued) == {j["id"] for j in jobs} - cancelled
    both = [j["id"] for p in _pages(api_server, status="queued, cancelled", created_after=since, limit=3) for j in p]
    assert sorted(both) == sorted(j["id"] for j in jobs)
    before = [j["id"] for p in _pages(api_server, created_after=since, created_before=jobs[3]["created_at"], limit=1)
              for j in p]
    assert before == [jobs[2]["id"], jobs[1]["id"], jobs[0]["id"]]
    assert _pages(api_server, created_after="9999-12-31T23:59:59-01:00") == [[]]
    assert len(_pages(api_server, created_before="0001-01-01T00:00:00+01:00")[0]) == 0


@pytest.mark.parametrize("params,path", [
    ({"page_token": "garbage"}, "page_token"),
    ({"page_token": "eyJiZWZvcmUiOiAiMSJ9"}, "page_token"),          # {"before": "1"}: decodes, still not ours
    ({"page_token": "eyJiZWZvcmUiOiAxMDAwMDAwMDAwMDAwMDAwMDAwMDAwfQ"}, "page_token"),  # beyond 64 bits
    ({"limit": 0}, "query.limit"),
    ({"limit": 201}, "query.limit"),
    ({"limit": "ten"}, "query.limit"),
    ({"status": "queued,lost"}, "query.status"),
    ({"created_after": "yesterday"}, "query.created_after"),
    ({"created_after": "2026-01-01"}, "query.created_after"),
    ({"created_before": "1700000000"}, "query.created_before"),
    ({"owner": "bob"}, "query.owner"),
])
def test_bad_list_parameters_are_422_at_their_name(api_server, params, path):
    body = problem(api_server.session().get(api_server.api + "/jobs", params=params), 422)
    assert paths(body) == [path], body


# -- get, cancel, delete ----------------------------------------------------------------------

def test_cancel_and_delete_follow_the_lifecycle(api_server):
    s = api_server.session("alice")
    job = submit(api_server)
    url = api_server.api + f"/jobs/{job['id']}"
    assert s.get(url).json()["status"] == "queued"
    assert "cancel it" in problem(s.delete(url), 409)["detail"]           # a queued job is not deleted

    r = s.post(url + "/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    assert "already finished" in problem(s.post(url + "/cancel"), 409)["detail"]

    artifacts = api_server.artifact_dir / "jobs" / str(job["id"])
    (artifacts / "checkpoints").mkdir(parents=True)
    (artifacts / "checkpoints" / "epoch-1.npz").write_bytes(b"not really")
    r = s.delete(url)
    assert r.status_code == 204 and r.content == b""
    assert not artifacts.exists()
    problem(s.get(url), 404)
    problem(s.post(url + "/cancel"), 404)
    problem(s.delete(url), 404)


@pytest.mark.parametrize("job_id", ["0", "999999999", str(2**63 - 1), str(2**63), "9" * 40])
def test_ids_that_name_no_job_are_404_for_every_method(api_server, job_id):
    s, url = api_server.session(), api_server.api + f"/jobs/{job_id}"
    for r in (s.get(url), s.post(url + "/cancel"), s.delete(url)):
        problem(r, 404)


def test_a_user_sees_only_their_own_jobs_and_an_admin_sees_all(api_server):
    alice, bob, root = (api_server.session(u) for u in ("alice", "bob", "root"))
    job = submit(api_server, "alice")
    url = api_server.api + f"/jobs/{job['id']}"
    for r in (bob.get(url), bob.post(url + "/cancel"), bob.delete(url)):
        assert f"job {job['id']} does not exist" in problem(r, 404)["detail"]    # not 403: ids do not leak
    assert job["id"] not in {j["id"] for p in _pages(api_server, "bob", limit=200) for j in p}
    assert alice.get(url).json()["status"] == "queued"

    assert root.get(url).json()["owner"] == "alice"
    assert job["id"] in {j["id"] for p in _pages(api_server, "root", limit=200) for j in p}
    assert root.post(url + "/cancel").json()["status"] == "cancelled"
    assert alice.get(url).json()["status"] == "cancelled"


# -- the broker is down -----------------------------------------------------------------------

@pytest.fixture
def brokerless_server(sqlite_template, tmp_path_factory):
    """The API on SQLite with a Redis broker URL where nothing listens."""
    with inprocess_server(sqlite_template, tmp_path_factory.mktemp("brokerless"), "redis://127.0.0.1:1/0") as server:
        yield server


def test_with_the_broker_down_a_job_is_kept_and_enqueued_once_it_is_back(brokerless_server, tmp_path):
    server = brokerless_server
    health = server.session(None).get(server.api + "/health")
    assert health.status_code == 503
    assert health.json()["database"] == "ok" and health.json()["broker"].startswith("unreachable")

    job = submit(server)
    assert job["status"] == "queued"
    assert server.session().get(server.api + f"/jobs/{job['id']}").json()["status"] == "queued"

    engine = create_engine(server.database_url)
    try:
        with Session(engine) as session:
            events = session.scalars(select(Event).where(Event.job_id == job["id"]).order_by(Event.id)).all()
            assert [e.kind for e in events] == ["state", "log"]
            assert "broker was unreachable" in events[1].message
            assert session.get(Job, job["id"]).enqueued_at is None

            # the broker is back (here: another one, the embedded SQLite broker)
            broker_url = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
            assert enqueue_pending(session, Enqueuer(broker_url)) == 1
            assert session.get(Job, job["id"]).enqueued_at is not None
            assert enqueue_pending(session, Enqueuer(broker_url)) == 0          # sent once
    finally:
        engine.dispose()

    from kombu import Connection

    with Connection(broker_url) as conn:
        queue = conn.SimpleQueue(QUEUE)
        message = queue.get(timeout=10)
        assert message.headers["task"] == TASK_NAME and message.payload[0] == [job["id"]]
        message.ack()
        with pytest.raises(queue.Empty):
            queue.get(timeout=0.5)
        queue.close()
