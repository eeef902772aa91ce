"""A job's metrics, checkpoints, events and predictions through requests, against the
API in this process on a fresh SQLite and a fresh PostgreSQL database. Rows are seeded
with the store functions the worker uses, from a real (tiny) nncore training run."""
from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nncore.job import Job, Model
from nncore.metrics import predicted_labels
from tests.inprocess import InProcessApiServer, Template, seeded_template

XOR = json.loads((Path(__file__).parents[2] / "examples/xor.json").read_text())
PROBLEM = "application/problem+json"
INPUTS = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.25, -0.5]]

N_STEPS = 2000
SPIKE_STEP, SPIKE = 1234, 50.0
DIP_STEP, DIP = 777, -5.0
DUPLICATE_STEP = 10  # written twice in one call: one point stands


def loss_at(step: int) -> float:
    # a step series is stored as float32
    return float(np.float32(SPIKE if step == SPIKE_STEP else DIP if step == DIP_STEP else 1.0 / (1.0 + step / 100)))


@dataclass
class Seeded:
    job_id: int  # trained: metrics, checkpoints of epochs 2, 4 (best), 6, events
    early_id: int  # trained with early stopping, its checkpoint not marked best
    empty_id: int  # no checkpoint yet
    gone_id: int  # a checkpoint row whose file was removed
    paths: dict[int, Path]
    early_path: Path
    n_points: int
    events: list[str]


def submit(server, spec: dict) -> int:
    r = server.session("alice").post(server.api + "/jobs", json={"spec": spec})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def seed(api_server: InProcessApiServer) -> Seeded:
    from service.store.db import make_engine, make_sessionmaker
    from service.store.jobs import add_event
    from service.store.models import Job as JobRow
    from service.store.results import record_checkpoint, record_metrics

    spec = {**XOR, "epochs": 6, "checkpoint_every": 2}
    early_spec = {**XOR, "epochs": 4, "checkpoint_every": 4,
                  "data": {"dataset": "moons", "n_samples": 40, "validation_split": 0.25},
                  "early_stopping": {"monitor": "val_loss", "patience": 50}}
    job_id, early_id, empty_id, gone_id = (submit(api_server, s) for s in (spec, early_spec, XOR, XOR))
    out = api_server.artifact_dir / "jobs"
    trained = Job(spec, out_dir=out / str(job_id))
    trained.run()
    early = Job(early_spec, out_dir=out / str(early_id))
    early.run()

    engine = make_engine(api_server.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            paths = {}
            for epoch, path, digest in trained.checkpointer.written:
                paths[epoch] = path
                if epoch == 2:  # recorded twice: the second call replaces the first
                    record_checkpoint(session, job_id, 2, 0, path, "0" * 64, 1, {"loss": 9.0}, is_best=True)
                record_checkpoint(session, job_id, epoch, epoch, path, digest, path.stat().st_size,
                                  {"loss": 0.5 / epoch, "accuracy": np.float64(0.75), "broken": math.nan},
                                  is_best=epoch in (2, 4))  # marking 4 best unmarks 2
            (e_epoch, e_path, e_digest), = early.checkpointer.written
            record_checkpoint(session, early_id, e_epoch, e_epoch, e_path, e_digest, e_path.stat().st_size)
            record_checkpoint(session, gone_id, 1, 1, out / str(gone_id) / "epoch-00001.npz", "0" * 64, 1)

            rows = [{"name": "loss", "step": i, "epoch": i // 100, "value": loss_at(i)} for i in range(N_STEPS)]
            rows += [{"name": "accuracy", "step": i, "epoch": i // 100, "value": min(1.0, i / 1000)}
                     for i in range(0, N_STEPS, 2)]
            rows.append({"name": "loss", "step": DUPLICATE_STEP, "epoch": 0, "value": loss_at(DUPLICATE_STEP)})
            assert record_metrics(session, job_id, rows) == len(rows)
            assert record_metrics(session, job_id, []) == 0
            with pytest.raises(ValueError, match="finite"):
                record_metrics(session, job_id, [{"name": "loss", "step": 1, "epoch": 0, "value": math.inf}])

            job = session.get(JobRow, job_id)
            messages = [f"log line {i}" for i in range(7)]
            for m in messages:
                add_event(session, job, "log", m)
            session.commit()
    finally:
        engine.dispose()
    return Seeded(job_id, early_id, empty_id, gone_id, paths, e_path, len(rows) - 1, ["queued", *messages])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def seeding(request, tmp_path_factory, broker_url) -> Iterator[tuple[Template, Seeded]]:
    """The rows above, seeded once per module and database kind."""
    base = request.getfixturevalue(f"{request.param}_template")
    with seeded_template(base, tmp_path_factory.mktemp("seeded"), broker_url, seed) as pair:
        yield pair


@pytest.fixture(scope="module")
def db_template(seeding) -> Template:
    """Overrides tests/service/conftest.py's: each test's database is a fresh copy of the
    seeded one, so a test's writes never reach another."""
    return seeding[0]


@pytest.fixture(scope="module")
def seeded(seeding) -> Seeded:
    return seeding[1]


def get(server, path: str, user: str = "alice", **params):
    return server.session(user).get(server.api + path, params=params)


def predict(server, job_id: int, body: dict | str, user: str = "alice"):
    s = server.session(user)
    url = server.api + f"/jobs/{job_id}/predict"
    if isinstance(body, str):  # raw JSON text, for NaN, which json= refuses to send
        return s.post(url, data=body, headers={"Content-Type": "application/json"})
    return s.post(url, json=body)


def assert_problem(r, status: int, path: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == PROBLEM
    body = r.json()
    if path is not None:
        assert path in [e["path"] for e in body["errors"]], body
    return body


# -- metrics ------------------------------------------------------------------------------

def test_metric_pages_cover_every_point_exactly_once_in_step_order(api_server, seeded):
    seen, token, pages = [], None, 0
    while True:
        params = {"limit": 450} | ({"page_token": token} if token else {})
        r = get(api_server, f"/jobs/{seeded.job_id}/metrics", **params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 450
        seen += page["items"]
        pages += 1
        token = page["next_page_token"]
        if token is None:
            break
    assert pages == math.ceil(seeded.n_points / 450)
    assert len(seen) == seeded.n_points
    keys = [(p["step"], p["name"]) for p in seen]
    assert keys == sorted(keys)
    assert keys.count((DUPLICATE_STEP, "loss")) == 1
    assert set(keys) == {(i, "loss") for i in range(N_STEPS)} | {(i, "accuracy") for i in range(0, N_STEPS, 2)}
    assert all(p["value"] == loss_at(p["step"]) for p in seen if p["name"] == "loss")


def test_metric_filters_by_name_and_step_range(api_server, seeded):
    page = get(api_server, f"/jobs/{seeded.job_id}/metrics", name="loss", after_step=1000, before_step=1011).json()
    assert [(p["name"], p["step"]) for p in page["items"]] == [("loss", s) for s in range(1001, 1011)]
    assert page["next_page_token"] is None
    both = get(api_server, f"/jobs/{seeded.job_id}/metrics", name="loss,accuracy", after_step=1997).json()
    assert [(p["step"], p["name"]) for p in both["items"]] == [(1998, "accuracy"), (1998, "loss"), (1999, "loss")]
    assert get(api_server, f"/jobs/{seeded.job_id}/metrics", name="nothing").json()["items"] == []


def test_max_points_gives_buckets_with_the_extremes_of_every_range(api_server, seeded):
    r = get(api_server, f"/jobs/{seeded.job_id}/metrics", name="loss", max_points=40)
    assert r.status_code == 200, r.text
    buckets = r.json()["items"]
    assert 20 < len(buckets) <= 40 and r.json()["next_page_token"] is None
    assert buckets[0]["step"] == 0 and buckets[-1]["last_step"] == N_STEPS - 1
    assert sum(b["count"] for b in buckets) == N_STEPS
    width = buckets[0]["bucket_steps"]
    loss = np.array([loss_at(i) for i in range(N_STEPS)])
    for b in buckets:  # against NumPy over the bucket's aligned step range
        assert b["step"] % width == 0 and b["last_step"] == min(b["step"] + width, N_STEPS) - 1
        part = loss[b["step"]:b["last_step"] + 1]
        assert (b["count"], b["min"], b["max"], b["first"], b["last"]) == \
            (len(part), part.min(), part.max(), part[0], part[-1])
        assert b["value"] == pytest.approx(part.mean(), rel=1e-12)
    assert max(b["max"] for b in buckets) == SPIKE and min(b["min"] for b in buckets) == DIP

    # every series is reduced on its own; a series shorter than max_points comes whole
    both = get(api_server, f"/jobs/{seeded.job_id}/metrics", max_points=1500).json()["items"]
    assert len([p for p in both if p["name"] == "accuracy"]) == N_STEPS // 2
    assert len([p for p in both if p["name"] == "loss"]) <= 1500
    assert (SPIKE_STEP, "loss") in [(p["step"], p["name"]) for p in both]


@pytest.mark.parametrize("params, path", [
    ({"max_points": 10_001}, "query.max_points"),
    ({"max_points": 3}, "query.max_points"),
    ({"limit": 10_001}, "query.limit"),
    ({"limit": 0}, "query.limit"),
    ({"after_step": -1}, "query.after_step"),
    ({"after_step": 2**64}, "query.after_step"),
    ({"page_token": "not-a-token"}, "page_token"),
    ({"max_points": 10, "page_token": "eyJzdGVwIjoxLCJuYW1lIjoiYSIsImlkIjoxfQ"}, "page_token"),
    ({"colour": "red"}, "query.colour"),
])
def test_metric_query_limits_are_422_problems(api_server, seeded, params, path):
    assert_problem(get(api_server, f"/jobs/{seeded.job_id}/metrics", **params), 422, path)


# -- checkpoints --------------------------------------------------------------------------

def test_checkpoints_are_listed_and_download_with_their_sha256(api_server, seeded):
    items = get(api_server, f"/jobs/{seeded.job_id}/checkpoints").json()["items"]
    assert [(c["epoch"], c["step"], c["is_best"]) for c in items] == [(2, 2, False), (4, 4, True), (6, 6, False)]
    assert items[0]["metrics"] == {"loss": 0.25, "accuracy": 0.75, "broken": None}
    s = api_server.session("alice")
    for c in items:
        assert c["download_url"] == f"/api/v1/jobs/{seeded.job_id}/checkpoints/{c['epoch']}"
        r = s.get(api_server.url + c["download_url"])
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert r.headers["Content-Disposition"].startswith("attachment;")
        assert hashlib.sha256(r.content).hexdigest() == c["sha256"]
        assert base64.b64decode(r.headers["Repr-Digest"].split("=:", 1)[1][:-1]).hex() == c["sha256"]
        assert r.content == seeded.paths[c["epoch"]].read_bytes() and len(r.content) == c["size_bytes"]
    assert_problem(get(api_server, f"/jobs/{seeded.job_id}/checkpoints/3"), 404)
    assert get(api_server, f"/jobs/{seeded.empty_id}/checkpoints").json()["items"] == []
    body = assert_problem(get(api_server, f"/jobs/{seeded.gone_id}/checkpoints/1"), 404)
    assert "no longer exists" in body["detail"]


# -- events -------------------------------------------------------------------------------

def test_events_come_in_order_page_by_page(api_server, seeded):
    seen, after = [], None
    while True:
        page = get(api_server, f"/jobs/{seeded.job_id}/events", limit=3,
                   **({"after_id": after} if after is not None else {})).json()
        seen += page["items"]
        after = page["next_after_id"]
        if after is None:
            break
    assert [e["message"] for e in seen] == seeded.events
    assert [e["id"] for e in seen] == sorted(e["id"] for e in seen)
    tail = get(api_server, f"/jobs/{seeded.job_id}/events", after_id=seen[-2]["id"]).json()
    assert [e["id"] for e in tail["items"]] == [seen[-1]["id"]]
    assert_problem(get(api_server, f"/jobs/{seeded.job_id}/events", limit=1001), 422, "query.limit")


# -- predictions --------------------------------------------------------------------------

def expected(path: Path, best: bool = False) -> tuple[list[list[float]], list[int]]:
    outputs = Model.load(path, best=best).predict(np.array(INPUTS))
    return outputs.tolist(), predicted_labels(outputs).tolist()


@pytest.mark.parametrize("which, epoch", [(None, 6), ("latest", 6), ("best", 4), (2, 2)])
def test_predictions_equal_the_checkpoint_model(api_server, seeded, which, epoch):
    body = {"inputs": INPUTS} | ({"checkpoint": which} if which is not None else {})
    r = predict(api_server, seeded.job_id, body)
    assert r.status_code == 200, r.text
    outputs, labels = expected(seeded.paths[epoch])
    assert r.json()["outputs"] == outputs and r.json()["labels"] == labels
    ckpt = r.json()["checkpoint"]
    assert (ckpt["epoch"], ckpt["best_params"]) == (epoch, False)
    assert ckpt["sha256"] == hashlib.sha256(seeded.paths[epoch].read_bytes()).hexdigest()


def test_best_without_a_marked_checkpoint_uses_early_stoppings_best_parameters(api_server, seeded):
    r = predict(api_server, seeded.early_id, {"inputs": INPUTS, "checkpoint": "best"})
    assert r.status_code == 200, r.text
    assert r.json()["checkpoint"]["best_params"] is True
    assert r.json()["outputs"] == expected(seeded.early_path, best=True)[0]


@pytest.mark.parametrize("body, path", [
    ({"inputs": [[0.0, 0.0], [1.0, 2.0, 3.0]]}, "inputs[1]"),
    ({"inputs": [[0.0, 0.0], [1.0]]}, "inputs[1]"),
    ('{"inputs": [[0, 0], [1, 1], [0, NaN]]}', "inputs[2][1]"),
    ('{"inputs": [[Infinity, 0]]}', "inputs[0][0]"),
    ({"inputs": [[0.0, "1"]]}, "inputs[0][1]"),
    ({"inputs": [[0.0, True]]}, "inputs[0][1]"),
    ({"inputs": []}, "inputs"),
    ({"inputs": [0.0, 1.0]}, "inputs[0]"),
    ({}, "inputs"),
    ({"inputs": [[0.0, 0.0]] * 10_001}, "inputs"),
    ({"inputs": [[0.0, 0.0]], "checkpoint": 3}, "checkpoint"),
    ({"inputs": [[0.0, 0.0]], "checkpoint": "first"}, "checkpoint"),
    ({"inputs": [[0.0, 0.0]], "checkpoint": -1}, "checkpoint"),
    ({"inputs": [[0.0, 0.0]], "extra": 1}, "extra"),
])
def test_bad_predict_requests_are_422_problems_naming_the_field(api_server, seeded, body, path):
    body = assert_problem(predict(api_server, seeded.job_id, body), 422, path)
    assert body["type"].endswith("/validation")


def test_predict_without_a_checkpoint_is_a_409_and_a_missing_file_a_404(api_server, seeded):
    body = assert_problem(predict(api_server, seeded.empty_id, {"inputs": INPUTS}), 409)
    assert "no checkpoint yet" in body["detail"]
    assert_problem(predict(api_server, seeded.gone_id, {"inputs": INPUTS}), 404)
    assert_problem(predict(api_server, 10**9, {"inputs": INPUTS}), 404)


# -- owner isolation ----------------------------------------------------------------------

ENDPOINTS = ["metrics", "checkpoints", "checkpoints/4", "events", "predict"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_other_users_get_404_and_administrators_can_read(api_server, seeded, endpoint):
    def call(user: str):
        if endpoint == "predict":
            return predict(api_server, seeded.job_id, {"inputs": INPUTS}, user)
        return get(api_server, f"/jobs/{seeded.job_id}/{endpoint}", user)

    body = assert_problem(call("bob"), 404)
    assert str(seeded.job_id) in body["detail"]
    assert call("root").status_code == 200
    assert call("alice").status_code == 200
    anonymous = api_server.session(None)
    url = api_server.api + f"/jobs/{seeded.job_id}/{endpoint}"
    assert_problem(anonymous.post(url, json={"inputs": INPUTS}) if endpoint == "predict" else anonymous.get(url), 401)
