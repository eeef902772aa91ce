"""What a submitted job may cost, and a user's quota, through the API on SQLite and
PostgreSQL: the attacks of the hardening issue as regression tests. Each request here
was accepted (201) before the checks existed."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from service.shared.settings import Settings
from tests.inprocess import inprocess_server

from .test_jobs_api import paths, problem

XOR = json.loads((Path(__file__).parents[2] / "examples/xor.json").read_text())


def _spec(layers, dataset="digits", **over):
    return {**XOR, "loss": "categorical_cross_entropy", "data": {"dataset": dataset},
            "model": {"layers": [*layers, {"units": 10, "activation": "softmax"}]}, **over}


def _post(server, spec, user="alice"):
    return server.session(user).post(server.api + "/jobs", json={"spec": spec})


WIDE = [{"units": 16384, "activation": "relu"}] * 10


def test_leaving_out_input_dim_does_not_escape_the_parameter_limit(api_server):
    body = problem(_post(api_server, _spec(WIDE)), 422)
    assert paths(body) == ["spec.model"]
    assert "parameters; the limit is 50,000,000" in body["errors"][0]["message"]
    assert "input_dim is 64, from the data" in body["errors"][0]["message"]
    # the same layers with a width the limit allows are fine
    assert _post(api_server, _spec([{"units": 256, "activation": "relu"}] * 2)).status_code == 201


def test_a_wide_uploaded_dataset_counts_its_width(api_server):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 4000))
    buf = io.BytesIO()
    np.savez(buf, X=X, y=rng.integers(0, 2, 20))
    r = api_server.session("alice").post(api_server.api + "/datasets", files={"file": ("wide.npz", buf.getvalue())})
    assert r.status_code == 201, r.text
    spec = _spec([{"units": 16384, "activation": "relu"}], dataset=None)
    spec["data"] = {"dataset_id": r.json()["id"]}
    body = problem(_post(api_server, spec), 422)
    assert paths(body) == ["spec.model"] and "input_dim is 4000, from the data" in body["errors"][0]["message"]


def test_finite_differences_are_bounded_by_the_data_width_too(api_server):
    body = problem(_post(api_server, _spec([{"units": 100, "activation": "tanh"}], gradient="finite_difference")),
                   422)
    assert paths(body) == ["spec.gradient"] and "7,510 parameters" in body["errors"][0]["message"]


def test_the_peak_training_memory_is_bounded(api_server):
    # a full batch of 10^7 samples through a 16,384-unit layer: ~2 TB of activations
    spec = _spec([{"units": 16384, "activation": "relu"}], dataset="moons", batch_size="full")
    spec["data"]["n_samples"] = 10_000_000
    spec["model"]["layers"][-1]["units"] = 1
    spec["model"]["layers"][-1]["activation"] = "sigmoid"
    spec["loss"] = "binary_cross_entropy"
    body = problem(_post(api_server, spec), 422)
    assert paths(body) == ["spec.batch_size"]
    message = body["errors"][0]["message"]
    assert "TiB of memory" in message and "the limit is 8.0 GiB a job" in message
    # the same model in batches of 64 fits
    spec["batch_size"] = 64
    spec["data"]["n_samples"] = 100_000
    assert _post(api_server, spec).status_code == 201


def test_keeping_every_checkpoint_of_a_large_model_is_refused(api_server):
    # ~36 M parameters, a checkpoint every epoch for 10^5 epochs, all kept
    spec = _spec([{"units": 4096, "activation": "relu"}, {"units": 4096, "activation": "relu"},
                  {"units": 4096, "activation": "relu"}], checkpoint_every=1, epochs=100_000,
                 retention={"keep_last": 0})
    body = problem(_post(api_server, spec), 422)
    assert paths(body) == ["spec.retention.keep_last"]
    assert "keeps every checkpoint" in body["errors"][0]["message"]
    spec["retention"] = {"keep_last": 3}
    spec["epochs"] = 10
    assert _post(api_server, spec).status_code == 201


@pytest.fixture
def small_quota(db_template, tmp_path_factory, broker_url):
    with inprocess_server(db_template, tmp_path_factory.mktemp("api"), broker_url,
                          user_quota_bytes=4 << 20) as server:
        yield server


def test_the_quota_counts_what_unfinished_jobs_may_still_write(small_quota):
    s = small_quota.session("alice")
    me = s.get(small_quota.api + "/me").json()["quota"]
    assert me == {"limit_bytes": 4 << 20, "used_bytes": 0, "datasets_bytes": 0, "checkpoints_bytes": 0,
                  "reserved_bytes": 0, "free_bytes": 4 << 20}
    # ~154 k parameters with Adam: ~1.8 MiB a checkpoint, up to 5 on disk
    spec = _spec([{"units": 2048, "activation": "relu"}], retention={"keep_last": 3}, epochs=5, checkpoint_every=1)
    spec["optimizer"] = {"name": "adam", "lr": 0.001}
    body = problem(_post(small_quota, spec), 403)
    assert body["type"] == "https://trainyard.dev/problems/quota" and paths(body) == ["spec.retention"]
    assert "your quota of 4.0 MiB" in body["detail"]
    # one kept checkpoint (two on disk while the next is written) fits, and is then reserved
    spec["retention"] = {"keep_last": 1, "keep_best": False}
    assert _post(small_quota, spec).status_code == 201
    me = s.get(small_quota.api + "/me").json()["quota"]
    assert 0 < me["reserved_bytes"] < 4 << 20 and me["free_bytes"] == (4 << 20) - me["reserved_bytes"]
    # a second such job no longer fits beside the first, which has not run yet
    assert problem(_post(small_quota, spec), 403)["type"].endswith("/quota")
    # another user's quota is their own
    assert _post(small_quota, spec, user="bob").status_code == 201


def test_quota_settings_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRAINYARD_USER_QUOTA_BYTES", "0")
    monkeypatch.setenv("TRAINYARD_JOB_MEMORY_BYTES", "1048576")
    monkeypatch.setenv("TRAINYARD_MAX_WORLD_SIZE", "2")
    s = Settings.from_env()
    assert s.user_quota_bytes == 0 and s.job_memory_bytes == 1 << 20 and s.spec_limits["max_world_size"] == 2
    monkeypatch.setenv("TRAINYARD_MAX_WORLD_SIZE", "0")
    with pytest.raises(ValueError, match="TRAINYARD_MAX_WORLD_SIZE must be a whole number of ranks >= 1"):
        Settings.from_env()


def test_uploads_beyond_the_quota_are_refused_and_leave_nothing(small_quota):
    s = small_quota.session("alice")
    buf = io.BytesIO()
    np.savez(buf, X=np.random.default_rng(0).normal(size=(80_000, 4)), y=np.arange(80_000) % 2)
    data = buf.getvalue()  # ~3.2 MB of a 4 MiB quota
    first = s.post(small_quota.api + "/datasets", files={"file": ("a.npz", data)})
    assert first.status_code == 201, first.text
    assert s.get(small_quota.api + "/me").json()["quota"]["datasets_bytes"] == len(data)
    body = problem(s.post(small_quota.api + "/datasets", files={"file": ("b.npz", data)}), 403)
    assert body["type"].endswith("/quota") and paths(body) == ["file"] and "the upload b.npz" in body["detail"]
    assert [d["name"] for d in s.get(small_quota.api + "/datasets").json()["items"]] == ["a"]
    assert sorted(p.name for p in (small_quota.artifact_dir / "datasets").iterdir()) == [f"{first.json()['id']}.npz"]
    # deleting the first makes room again
    assert s.delete(small_quota.api + f"/datasets/{first.json()['id']}").status_code == 204
    assert s.post(small_quota.api + "/datasets", files={"file": ("b.npz", data)}).status_code == 201


def test_the_me_command_shows_the_quota(small_quota, monkeypatch):
    from click.testing import CliRunner

    from trainyard.cli import main

    small_quota.serve_cli(monkeypatch)
    buf = io.BytesIO()
    np.savez(buf, X=np.eye(64), y=np.arange(64) % 2)
    assert small_quota.session("alice").post(small_quota.api + "/datasets",
                                             files={"file": ("d.npz", buf.getvalue())}).status_code == 201
    out = CliRunner().invoke(main, ["me"])
    assert out.exit_code == 0, out.output
    size = len(buf.getvalue())
    assert out.stdout.splitlines() == [
        "alice", f"storage: {size / 1024:.1f} KiB used of 4.0 MiB (datasets {size / 1024:.1f} KiB, checkpoints 0 B)",
        f"reserved by unfinished jobs: 0 B; free: {((4 << 20) - size) / 1024 / 1024:.1f} MiB"]


@pytest.fixture
def store(db_template, tmp_path):
    from tests.inprocess import store_sessions

    with store_sessions(db_template, tmp_path) as (_, sessions):
        yield sessions


@pytest.mark.parametrize("lock", [True, False])
def test_two_uploads_racing_for_the_last_free_bytes_cannot_both_fit(store, lock):
    import threading
    import time

    from sqlalchemy import select

    from service.store.errors import QuotaExceeded
    from service.store.models import Dataset, User, utcnow
    from service.store.quota import check_quota

    quota, size = 1000, 600
    outcome: dict[str, object] = {}
    checked = threading.Event()

    def upload(who: str, hold_s: float) -> None:
        with store() as s:
            alice = s.scalar(select(User).where(User.name == "alice"))
            try:
                check_quota(s, alice, quota, size, "file", "the upload", lock=lock)
            except QuotaExceeded:
                outcome[who] = "refused"
                return
            finally:
                checked.set()
            s.add(Dataset(owner_id=alice.id, name=who, filename=f"{who}.csv", format="csv", path="", size_bytes=size,
                          sha256="0" * 64, n_samples=1, n_features=1, task="binary", created_at=utcnow()))
            s.flush()
            time.sleep(hold_s)  # the rest of an upload between its check and its commit
            s.commit()
            outcome[who] = "stored"

    first = threading.Thread(target=upload, args=("first", 0.5))
    first.start()
    checked.wait(10)
    second = threading.Thread(target=upload, args=("second", 0.0))
    second.start()
    first.join(10)
    second.join(10)
    if lock:
        assert outcome == {"first": "stored", "second": "refused"}
    else:
        # the advisory check alone lets both through: what the lock is for
        assert outcome == {"first": "stored", "second": "stored"}
