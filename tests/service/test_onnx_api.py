"""GET /api/v1/jobs/<id>/checkpoints/<epoch>/model.onnx, Client.export_onnx and
``trainyard export``, against the API in this process on SQLite and PostgreSQL, with
checkpoints from real (tiny) nncore training runs seeded as the worker records them.

The exported graph, run by onnxruntime, gives the predict endpoint's outputs within
rtol = atol = 1e-5 (float32).
"""
from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nncore.job import Job
from nncore.onnx_export import INSTALL_HINT
from tests.inprocess import InProcessApiServer, Template, seeded_template

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install '.[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install '.[onnx]')")

RTOL = ATOL = 1e-5
PROBLEM = "application/problem+json"
IRIS = {"name": "iris", "model": {"layers": [{"units": 8, "activation": "gelu"},
                                             {"units": 3, "activation": "softmax"}]},
        "loss": "categorical_cross_entropy", "optimizer": {"name": "adam", "lr": 0.02},
        "data": {"dataset": "iris", "validation_split": 0.2}, "batch_size": 16, "epochs": 6, "seed": 4,
        "checkpoint_every": 2}
EARLY = {"name": "moons", "model": {"layers": [{"units": 6, "activation": "elu"},
                                               {"units": 1, "activation": "sigmoid"}]},
         "loss": "binary_cross_entropy", "optimizer": {"name": "adam", "lr": 0.05},
         "data": {"dataset": "moons", "n_samples": 60, "validation_split": 0.25}, "batch_size": 15, "epochs": 4,
         "seed": 5, "checkpoint_every": 4, "early_stopping": {"monitor": "val_loss", "patience": 50}}


def rows(n_features: int, seed: int = 0) -> np.ndarray:
    """Raw rows near the data, negative ones and large ones, exactly float32."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.uniform(0.0, 8.0, (10, n_features)), rng.normal(0, 10, (10, n_features)),
                        rng.uniform(-60, 60, (5, n_features))])
    return X.astype(np.float32).astype(np.float64)


@dataclass
class Seeded:
    iris_id: int  # checkpoints of epochs 2, 4 (best), 6
    early_id: int  # one checkpoint (epoch 4), not marked best: "best" is its early-stopping parameters
    empty_id: int  # no checkpoint
    paths: dict[int, Path]
    digests: dict[int, str]


def record(server: InProcessApiServer, job_id: int, epoch: int, path: Path, digest: str, is_best: bool = False
           ) -> None:
    from service.store.db import make_engine, make_sessionmaker
    from service.store.results import record_checkpoint

    engine = make_engine(server.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            record_checkpoint(session, job_id, epoch, epoch, path, digest, path.stat().st_size, {"loss": 1.0 / epoch},
                              is_best=is_best)
    finally:
        engine.dispose()


def seed(server: InProcessApiServer) -> Seeded:
    s = server.session("alice")
    ids = []
    for spec in (IRIS, EARLY, IRIS):
        r = s.post(server.api + "/jobs", json={"spec": spec})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    iris_id, early_id, empty_id = ids
    out = server.artifact_dir / "jobs"
    iris = Job(IRIS, out_dir=out / str(iris_id))
    iris.run()
    early = Job(EARLY, out_dir=out / str(early_id))
    early.run()
    paths, digests = {}, {}
    for epoch, path, digest in iris.checkpointer.written:
        paths[epoch], digests[epoch] = path, digest
        record(server, iris_id, epoch, path, digest, is_best=epoch == 4)
    ((epoch, path, digest),) = early.checkpointer.written
    record(server, early_id, epoch, path, digest)
    return Seeded(iris_id, early_id, empty_id, paths, digests)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def seeding(request, tmp_path_factory, broker_url) -> Iterator[tuple[Template, Seeded]]:
    base = request.getfixturevalue(f"{request.param}_template")
    with seeded_template(base, tmp_path_factory.mktemp("seeded-onnx"), broker_url, seed) as pair:
        yield pair


@pytest.fixture(scope="module")
def db_template(seeding) -> Template:
    """Each test's database is a fresh copy of the seeded one (tests/service/conftest.py)."""
    return seeding[0]


@pytest.fixture(scope="module")
def seeded(seeding) -> Seeded:
    return seeding[1]


def onnx_url(server, job_id: int, epoch: int) -> str:
    return server.api + f"/jobs/{job_id}/checkpoints/{epoch}/model.onnx"


def run(data: bytes, X: np.ndarray) -> np.ndarray:
    onnx.checker.check_model(onnx.load_from_string(data))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": X.astype(np.float32)})[0]


def predicted(server, job_id: int, X: np.ndarray, checkpoint) -> tuple[np.ndarray, dict]:
    r = server.session("alice").post(server.api + f"/jobs/{job_id}/predict",
                                     json={"inputs": X.tolist(), "checkpoint": checkpoint})
    assert r.status_code == 200, r.text
    return np.array(r.json()["outputs"]), r.json()["checkpoint"]


def assert_problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == PROBLEM
    return r.json()


# -- the download --------------------------------------------------------------------------

@pytest.mark.parametrize("epoch", [2, 4, 6])
def test_the_onnx_download_runs_as_the_predict_endpoint(api_server, seeded, epoch):
    r = api_server.session("alice").get(onnx_url(api_server, seeded.iris_id, epoch))
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Disposition"] == f'attachment; filename="job-{seeded.iris_id}-epoch-{epoch}.onnx"'
    assert r.headers["Model-Inputs"] == "4" and r.headers["Model-Outputs"] == "3"
    assert r.headers["Repr-Digest"].startswith("sha-256=:")
    X = rows(4)
    got = run(r.content, X)
    expected, ckpt = predicted(api_server, seeded.iris_id, X, epoch)
    assert ckpt["epoch"] == epoch
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)  # softmax: the output activation is in it


@pytest.mark.parametrize("which, epoch", [("latest", 6), ("best", 4), (2, 2)])
def test_the_client_resolves_the_checkpoint_as_predict_does(api_server, seeded, which, epoch):
    exported = api_server.client("alice").export_onnx_described(seeded.iris_id, which)
    assert (exported.epoch, exported.best_params, exported.n_inputs, exported.n_outputs) == (epoch, False, 4, 3)
    assert api_server.client("alice").export_onnx(seeded.iris_id, which) == exported.data
    X = rows(4, 1)
    expected, ckpt = predicted(api_server, seeded.iris_id, X, which)
    assert ckpt["epoch"] == epoch
    np.testing.assert_allclose(run(exported.data, X), expected, rtol=RTOL, atol=ATOL)


def test_best_without_a_marked_checkpoint_exports_early_stoppings_best_parameters(api_server, seeded):
    client = api_server.client("alice")
    exported = client.export_onnx_described(seeded.early_id, "best")
    assert exported.best_params and exported.epoch == 4
    X = rows(2, 2)
    expected, ckpt = predicted(api_server, seeded.early_id, X, "best")
    assert ckpt["best_params"] is True
    np.testing.assert_allclose(run(exported.data, X), expected, rtol=RTOL, atol=ATOL)
    # the checkpoint's own parameters are another model
    own = run(client.export_onnx(seeded.early_id, 4), X)
    np.testing.assert_allclose(own, predicted(api_server, seeded.early_id, X, 4)[0], rtol=RTOL, atol=ATOL)
    assert not np.allclose(own, expected, rtol=RTOL, atol=ATOL)


# -- refusals ------------------------------------------------------------------------------

def test_other_users_get_404_administrators_and_the_owner_200(api_server, seeded):
    url = onnx_url(api_server, seeded.iris_id, 4)
    body = assert_problem(api_server.session("bob").get(url), 404)
    assert str(seeded.iris_id) in body["detail"]
    assert api_server.session("root").get(url).status_code == 200
    assert api_server.session("alice").get(url).status_code == 200
    assert_problem(api_server.session(None).get(url), 401)
    assert_problem(api_server.session("alice").get(onnx_url(api_server, seeded.iris_id, 3)), 404)
    assert_problem(api_server.session("alice").get(onnx_url(api_server, seeded.empty_id, 1)), 404)
    body = assert_problem(api_server.session("alice").get(url, params={"best_params": "maybe"}), 422)
    assert body["errors"][0]["path"] == "query.best_params"


def test_a_checkpoint_file_changed_on_disk_is_a_409_and_a_removed_one_a_404(api_server, seeded):
    copy = api_server.artifact_dir / "tampered" / "epoch-00008.npz"
    copy.parent.mkdir(parents=True)
    shutil.copyfile(seeded.paths[6], copy)
    record(api_server, seeded.iris_id, 8, copy, seeded.digests[6])
    url = onnx_url(api_server, seeded.iris_id, 8)
    s = api_server.session("alice")
    assert s.get(url).status_code == 200  # verified, and now in the model cache
    copy.write_bytes(seeded.paths[2].read_bytes() + b"\0")  # another valid checkpoint, not the recorded one
    assert hashlib.sha256(copy.read_bytes()).hexdigest() != seeded.digests[6]
    body = assert_problem(s.get(url), 409)
    assert "does not match its recorded sha256" in body["detail"]
    copy.unlink()
    body = assert_problem(s.get(url), 404)
    assert "no longer exists" in body["detail"]


def test_without_the_onnx_packages_the_server_answers_501_saying_what_to_install(api_server, seeded, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # the app runs in this process: import onnx now fails
    body = assert_problem(api_server.session("alice").get(onnx_url(api_server, seeded.iris_id, 4)), 501)
    assert INSTALL_HINT in body["detail"] and body["type"].endswith("/not-implemented")
    from trainyard.client import ApiError

    with pytest.raises(ApiError) as caught:
        api_server.client("alice").export_onnx(seeded.iris_id)
    assert caught.value.status == 501 and "pip install 'trainyard[onnx]'" in str(caught.value)


def test_the_route_is_in_the_openapi_document(api_server):
    doc = api_server.session(None).get(api_server.api + "/openapi.json").json()
    op = doc["paths"]["/api/v1/jobs/{job_id}/checkpoints/{epoch}/model.onnx"]["get"]
    assert {"200", "401", "404", "409", "422", "501"} <= set(op["responses"])
    assert "application/octet-stream" in op["responses"]["200"]["content"]
    assert [p["name"] for p in op["parameters"] if p["in"] == "query"] == ["best_params"]


# -- the command ---------------------------------------------------------------------------

def test_the_export_command_writes_the_file_and_says_what_it_holds(api_server, seeded, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from trainyard.cli import main

    api_server.serve_cli(monkeypatch)
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(main, ["export", str(seeded.iris_id), "--checkpoint", "best", "-o", "model.onnx"])
    assert out.exit_code == 0, out.output
    size = (tmp_path / "model.onnx").stat().st_size
    assert out.stdout.strip() == (f"wrote model.onnx ({size / 1024:.1f} KiB): job {seeded.iris_id}, epoch 4, "
                                  "4 inputs -> 3 outputs")
    X = rows(4, 3)
    np.testing.assert_allclose(run((tmp_path / "model.onnx").read_bytes(), X),
                               predicted(api_server, seeded.iris_id, X, "best")[0], rtol=RTOL, atol=ATOL)
    out = CliRunner().invoke(main, ["export", str(seeded.early_id), "--checkpoint", "best"])
    assert out.exit_code == 0, out.output
    name = f"job-{seeded.early_id}-epoch-4-best.onnx"
    assert (tmp_path / name).is_file() and "early stopping's best parameters" in out.stdout
    assert not list(tmp_path.glob(".*.part"))
    out = CliRunner().invoke(main, ["export", str(seeded.empty_id)])
    assert out.exit_code == 1 and "has no checkpoint yet" in out.output
    out = CliRunner().invoke(main, ["export", str(seeded.iris_id), "--checkpoint", "first"])
    assert out.exit_code == 2 and "must be latest, best or an epoch number" in out.output
