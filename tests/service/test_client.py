"""trainyard.Client (trainyard.client) against the API in this process (its requests
session mounted on the app), on a fresh SQLite and a fresh PostgreSQL database."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from trainyard.client import ApiError, ChecksumError, Client, NoSuchCheckpoint

XOR = json.loads((Path(__file__).parents[2] / "examples/xor.json").read_text())


def test_client_calls_and_problem_documents(api_server, tmp_path):
    c = api_server.client("alice")
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
        api_server.client(token="ty_wrong").jobs()
    assert info.value.status == 401
    with pytest.raises(ConnectionError, match="cannot reach"):
        Client("http://127.0.0.1:9", "x").jobs()
    # NaN is not JSON: refused before anything is sent, and no job appears
    before = len(c.jobs()["items"])
    with pytest.raises(ValueError, match="NaN or Infinity"):
        c.submit({**XOR, "optimizer": {"name": "sgd", "lr": float("nan")}})
    assert len(c.jobs()["items"]) == before


@dataclass
class Trained:
    job_id: int  # checkpoints of epochs 2, 4 (best), 6; metrics; one event
    empty_id: int  # queued, no checkpoint
    corrupt_id: int  # a checkpoint whose recorded sha256 is not its file's
    paths: dict[int, Path]
    points: list[tuple[str, int, int, float]]


@pytest.fixture
def trained(api_server) -> Trained:
    """A job trained by nncore here and recorded with the store functions the worker uses
    (no worker process needed)."""
    from nncore.job import Job
    from service.store.db import make_engine, make_sessionmaker
    from service.store.results import insert_metric_points, record_checkpoint

    c = api_server.client("alice")
    spec = {**XOR, "epochs": 6, "checkpoint_every": 2}
    job_id, empty_id, corrupt_id = (c.submit(s)["id"] for s in (spec, XOR, XOR))
    run = Job(spec, out_dir=api_server.artifact_dir / "jobs" / str(job_id))
    run.run()
    rng = np.random.default_rng(4)
    # step series are stored as float32
    points = [(name, step, step // 10 + 1, float(np.float32(rng.normal()))) for step in range(1, 61)
              for name in ("grad_norm", "loss")]
    points += [(name, step, step // 10, float(rng.uniform())) for step in range(10, 61, 10)
               for name in ("epoch_loss", "val_loss")]
    engine = make_engine(api_server.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            paths = {}
            for epoch, path, digest in run.checkpointer.written:
                paths[epoch] = path
                record_checkpoint(session, job_id, epoch, epoch, path, digest, path.stat().st_size,
                                  {"loss": 1.0 / epoch}, is_best=epoch == 4)
            path = paths[6]
            record_checkpoint(session, corrupt_id, 1, 1, path, "ab" * 32, path.stat().st_size)
            insert_metric_points(session, job_id, points)
            session.commit()
    finally:
        engine.dispose()
    points.sort(key=lambda p: (p[1], p[0]))
    return Trained(job_id, empty_id, corrupt_id, paths, points)


def test_metrics_follow_every_page_and_downsample_in_one_answer(api_server, trained):
    c = api_server.client("alice")
    got = c.metrics(trained.job_id, page_size=7)
    assert [(p["name"], p["step"], p["epoch"], p["value"]) for p in got] == trained.points
    val = [p for p in trained.points if p[0] in ("epoch_loss", "val_loss")]
    for names in ("epoch_loss,val_loss", ["val_loss", "epoch_loss"]):
        assert [(p["name"], p["step"]) for p in c.metrics(trained.job_id, names, page_size=5)] == \
            [(p[0], p[1]) for p in val]
    assert [p["step"] for p in c.metrics(trained.job_id, "loss", after_step=50, before_step=55)] == \
        [51, 52, 53, 54]
    loss = [p for p in trained.points if p[0] == "loss"]
    small = c.metrics(trained.job_id, "loss", max_points=6)
    assert len(small) <= 6
    assert small[0]["step"] == 1 and small[-1]["last_step"] == 60 and sum(p["count"] for p in small) == 60
    assert max(p["max"] for p in small) == max(p[3] for p in loss)
    assert min(p["min"] for p in small) == min(p[3] for p in loss)


def test_download_streams_the_checkpoint_and_checks_its_sha256(api_server, trained, tmp_path, monkeypatch):
    from nncore.checkpoint import sha256_of
    from nncore.job import Model

    c = api_server.client("alice")
    listed = c.checkpoints(trained.job_id)
    assert [r["epoch"] for r in listed] == [2, 4, 6] and [r["is_best"] for r in listed] == [False, True, False]
    monkeypatch.chdir(tmp_path)
    latest = c.download(trained.job_id)
    assert latest == Path(f"job-{trained.job_id}-epoch-6.npz")
    assert sha256_of(latest) == listed[2]["sha256"] == sha256_of(trained.paths[6])
    best = c.download(trained.job_id, "best", tmp_path)
    assert best == tmp_path / f"job-{trained.job_id}-epoch-4.npz" and sha256_of(best) == listed[1]["sha256"]
    named = c.download(trained.job_id, 2, tmp_path / "two.npz")
    assert sha256_of(named) == listed[0]["sha256"]
    assert Model.load(named).predict_labels(np.array([[0, 1], [1, 1]])).shape == (2,)

    with pytest.raises(ChecksumError, match="sha256"):
        c.download(trained.corrupt_id, path=tmp_path / "corrupt.npz")
    with pytest.raises(NoSuchCheckpoint, match="no checkpoint of epoch 999; its epochs: 2, 4, 6"):
        c.download(trained.job_id, 999)
    with pytest.raises(NoSuchCheckpoint, match="no checkpoint yet"):
        c.download(trained.empty_id)
    with pytest.raises(ApiError) as info:
        c.download(999_999)
    assert info.value.status == 404 and info.value.problem["status"] == 404
    with pytest.raises(ApiError) as info:
        api_server.client("bob").download(trained.job_id)
    assert info.value.problem["status"] == 404, "another user's job does not exist for bob"
    # only the finished files: nothing partial or corrupt was left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([latest.name, best.name, "two.npz"])


def test_predict_answers_as_the_checkpoint_model(api_server, trained):
    from nncore.job import Model

    c = api_server.client("alice")
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    answer = c.predict(trained.job_id, X, checkpoint=4)
    model = Model.load(trained.paths[4])
    assert answer["labels"] == model.predict_labels(X).tolist()
    np.testing.assert_allclose(answer["outputs"], model.predict(X), rtol=1e-6)
    assert answer["checkpoint"]["epoch"] == 4
    with pytest.raises(ApiError) as info:
        c.predict(trained.job_id, [[1.0, 2.0, 3.0]])
    assert info.value.status == 422 and info.value.problem["errors"][0]["path"] == "inputs[0]"


def test_events_and_wait(api_server, trained):
    c = api_server.client("alice")
    assert [(e["kind"], e["message"]) for e in c.events(trained.empty_id)["items"]] == [("state", "queued")]
    with pytest.raises(TimeoutError, match="still queued"):
        c.wait(trained.empty_id, timeout=0.3, poll_s=0.1)
    job = c.submit(XOR)
    c.cancel(job["id"])
    assert c.wait(job["id"], timeout=5)["status"] == "cancelled"
    first = c.events(job["id"], limit=1)
    assert [e["message"] for e in first["items"]] == ["queued"]
    assert [e["message"] for e in c.events(job["id"], after_id=first["next_after_id"])["items"]] == [
        "cancelled before it started"]


def test_datasets_upload_list_get_delete(api_server, tmp_path):
    c = api_server.client("bob")
    csv = tmp_path / "points.csv"
    rows = np.c_[np.random.default_rng(1).normal(size=(30, 2)), np.arange(30) % 3]
    csv.write_text("a,b,label\n" + "\n".join(",".join(f"{v:g}" for v in r) for r in rows) + "\n")
    ds = c.upload_dataset(csv, target="label")
    assert (ds["name"], ds["n_samples"], ds["n_features"], ds["task"], ds["n_classes"]) == \
        ("points", 30, 2, "multiclass", 3)
    assert c.dataset(ds["id"])["sha256"] == ds["sha256"]
    assert [d["id"] for d in c.datasets(limit=1)["items"]] == [ds["id"]]
    c.delete_dataset(ds["id"])
    with pytest.raises(ApiError) as info:
        c.dataset(ds["id"])
    assert info.value.status == 404 and info.value.problem["status"] == 404
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,x\n")
    with pytest.raises(ApiError) as info:
        c.upload_dataset(bad)
    assert info.value.status == 422 and info.value.problem["status"] == 422
