"""Jobs submitted over HTTP run on real worker processes, end to end."""
from __future__ import annotations

import copy
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, select

from nncore.job import Job as TrainJob
from service.store.models import Event

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
DIGITS = json.loads((ROOT / "examples/digits.json").read_text())

# long enough to be seen running, killed and cancelled: about 2.5 s in all
SLOW = copy.deepcopy(DIGITS)
SLOW.update(epochs=150, checkpoint_every=10, batch_size=16, retention={"keep_last": 2})
SLOW.pop("early_stopping")
SLOW["schedule"] = {"name": "cosine", "t_max": 150}
SLOW["optimizer"]["lr"] = 0.01


def submit(server, spec, user="alice"):
    r = server.session(user).post(server.api + "/jobs", json={"spec": spec})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def wait_for(server, job_id, statuses=("succeeded", "failed", "cancelled"), timeout=120, user="alice"):
    s = server.session(user)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = s.get(f"{server.api}/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")


def events(server, job_id):
    return server.session("root").get(f"{server.api}/jobs/{job_id}/events?limit=1000").json()["items"]


def final_params(server, job_id):
    s = server.session("alice")
    items = s.get(f"{server.api}/jobs/{job_id}/checkpoints").json()["items"]
    last = max(items, key=lambda c: c["epoch"])
    blob = s.get(server.url + last["download_url"]).content
    return np.load(io.BytesIO(blob))["params"], last["epoch"]


def offline_params(spec, tmp_path):
    job = TrainJob(spec, out_dir=tmp_path / "offline")
    job.run()
    return job.net.params


def test_submit_run_metrics_checkpoints_predict(stack, tmp_path):
    server, workers = stack
    workers.start()
    job_id = submit(server, SLOW)
    s = server.session("alice")
    running = wait_for(server, job_id, ("running",), timeout=60)
    assert running["status"] == "running"
    # metrics are readable while the job runs
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        points = s.get(f"{server.api}/jobs/{job_id}/metrics?name=loss&limit=50").json()["items"]
        if points:
            break
        time.sleep(0.1)
    assert points and s.get(f"{server.api}/jobs/{job_id}").json()["status"] == "running"
    job = wait_for(server, job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["validation"]["accuracy"] >= 0.95
    assert job["progress"]["epoch"] == 150
    epoch_acc = s.get(f"{server.api}/jobs/{job_id}/metrics?name=val_accuracy&limit=1000").json()["items"]
    assert [p["epoch"] for p in epoch_acc] == list(range(1, 151))
    ckpts = s.get(f"{server.api}/jobs/{job_id}/checkpoints").json()["items"]
    # retention: the last 2 and the best by val_loss
    assert {c["epoch"] for c in ckpts} >= {140, 150} and len(ckpts) <= 3 and any(c["is_best"] for c in ckpts)
    params, _ = final_params(server, job_id)
    np.testing.assert_array_equal(params, offline_params(SLOW, tmp_path))
    from nncore.datasets import load_dataset

    digits = load_dataset("digits")
    pred = s.post(f"{server.api}/jobs/{job_id}/predict", json={"inputs": digits.X[:20].tolist()})
    assert pred.status_code == 200, pred.text
    assert np.mean(np.array(pred.json()["labels"]) == digits.y[:20]) >= 0.9
    kinds = [e["message"].split(" ")[0] for e in events(server, job_id) if e["kind"] == "state"]
    assert kinds == ["queued", "running", "succeeded"]


def test_cancel_stops_a_running_job_within_a_step(stack):
    server, workers = stack
    if not any(p.poll() is None for p in workers.procs):
        workers.start()
    job_id = submit(server, SLOW)
    wait_for(server, job_id, ("running",), timeout=60)
    s = server.session("alice")
    deadline = time.monotonic() + 30
    while not s.get(f"{server.api}/jobs/{job_id}/checkpoints").json()["items"] and time.monotonic() < deadline:
        time.sleep(0.1)
    r = s.post(f"{server.api}/jobs/{job_id}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"]
    job = wait_for(server, job_id, timeout=30)
    assert job["status"] == "cancelled"
    # the worker notices at its next heartbeat (1 s here) and stops at the next step boundary
    assert job["progress"]["epoch"] < 150
    assert s.get(f"{server.api}/jobs/{job_id}/checkpoints").json()["items"], "checkpoints are kept"


def test_sigkill_of_the_worker_resumes_from_the_checkpoint_with_the_same_result(stack, tmp_path):
    server, workers = stack
    for p in workers.procs:
        if p.poll() is None:
            workers.kill(p)
    first = workers.start()
    job_id = submit(server, SLOW)
    s = server.session("alice")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items = s.get(f"{server.api}/jobs/{job_id}/checkpoints").json()["items"]
        if items and max(c["epoch"] for c in items) >= 20:
            break
        time.sleep(0.05)
    workers.kill(first)
    killed_at = s.get(f"{server.api}/jobs/{job_id}").json()
    assert killed_at["status"] == "running"
    workers.start()
    job = wait_for(server, job_id, timeout=120)
    assert job["status"] == "succeeded" and job["attempts"] == 2, job
    messages = [e["message"] for e in events(server, job_id)]
    assert any("lease" in m and "expired" in m for m in messages)
    assert any(m.startswith("resumed from epoch-") for m in messages)
    params, epoch = final_params(server, job_id)
    assert epoch == 150
    np.testing.assert_array_equal(params, offline_params(SLOW, tmp_path))


def test_fifty_jobs_on_two_workers_all_finish_exactly_once(stack):
    server, workers = stack
    alive = [p for p in workers.procs if p.poll() is None]
    while len(alive) < 2:
        alive.append(workers.start())
    small = json.loads((ROOT / "examples/xor.json").read_text())
    small["epochs"] = 30
    ids = [submit(server, {**small, "seed": i}) for i in range(50)]
    for job_id in ids:
        assert wait_for(server, job_id, timeout=180)["status"] == "succeeded"
    engine = create_engine(server.database_url)
    with engine.connect() as conn:
        rows = conn.execute(select(Event.job_id, Event.message).where(Event.job_id.in_(ids))).all()
    engine.dispose()
    runs = [job_id for job_id, message in rows if message.startswith("running")]
    assert sorted(runs) == sorted(ids), "every job ran exactly once"


@pytest.mark.mpi
def test_a_data_parallel_job_runs_on_two_ranks_under_the_worker(stack, tmp_path):
    server, workers = stack
    if not any(p.poll() is None for p in workers.procs):
        workers.start()
    spec = copy.deepcopy(SLOW)
    spec.update(epochs=20, distributed={"world_size": 2})
    spec["schedule"] = {"name": "cosine", "t_max": 20}
    job_id = submit(server, spec)
    job = wait_for(server, job_id, timeout=120)
    assert job["status"] == "succeeded", job
    s = server.session("alice")
    assert len(s.get(f"{server.api}/jobs/{job_id}/metrics?name=val_loss&limit=100").json()["items"]) == 20
    assert s.get(f"{server.api}/jobs/{job_id}/metrics?name=loss&limit=5").json()["items"], "step metrics"
    params, epoch = final_params(server, job_id)
    assert epoch == 20
    single = copy.deepcopy(spec)
    single["distributed"] = {"world_size": 1}
    np.testing.assert_allclose(params, offline_params(single, tmp_path), atol=1e-5)


def test_divergence_and_the_time_limit_fail_the_job_with_their_reason(stack):
    server, workers = stack
    if not any(p.poll() is None for p in workers.procs):
        workers.start()
    diverging = copy.deepcopy(SLOW)
    diverging["optimizer"]["lr"] = 1e6
    slow = {**copy.deepcopy(SLOW), "max_runtime_s": 0.5}
    a, b = submit(server, diverging), submit(server, slow)
    job = wait_for(server, a, timeout=60)
    assert job["status"] == "failed" and "diverged" in job["error"], job
    job = wait_for(server, b, timeout=60)
    assert job["status"] == "failed" and "time limit of 0.5 s" in job["error"], job
    assert job["attempts"] == 1  # a time limit is not retried


@pytest.mark.mpi
def test_a_crashed_rank_fails_the_attempt_and_the_retry_resumes_from_the_checkpoint(stack, tmp_path):
    import os
    import signal

    from worker.launch import descendants

    server, workers = stack
    if not any(p.poll() is None for p in workers.procs):
        workers.start()
    spec = copy.deepcopy(SLOW)
    spec.update(epochs=60, distributed={"world_size": 2}, checkpoint_every=5)
    spec["schedule"] = {"name": "cosine", "t_max": 60}
    # float64: over 60 epochs float32 rounding of the 2-rank sum drifts past any tight tolerance
    spec["model"]["dtype"] = "float64"
    job_id = submit(server, spec)
    s = server.session("alice")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if s.get(f"{server.api}/jobs/{job_id}/checkpoints").json()["items"]:
            break
        time.sleep(0.05)
    ranks = [pid for w in workers.procs if w.poll() is None for pid in descendants(w.pid)
             if b"nncore.distributed" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert ranks, "the job's MPI ranks are running under the worker"
    os.kill(ranks[-1], signal.SIGKILL)
    job = wait_for(server, job_id, timeout=120)
    assert job["status"] == "succeeded" and job["attempts"] == 2, job
    messages = [e["message"] for e in events(server, job_id)]
    assert any(m.startswith("attempt 1 failed") for m in messages), messages
    assert any(m.startswith("resumed from epoch-") for m in messages), messages
    params, epoch = final_params(server, job_id)
    single = copy.deepcopy(spec)
    single["distributed"] = {"world_size": 1}
    np.testing.assert_allclose(params, offline_params(single, tmp_path), atol=1e-10)
