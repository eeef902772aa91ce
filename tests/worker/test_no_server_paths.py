"""No API response tells where the server keeps its files: every body a user can get in
a job's life (its dataset, the job, its result, events, metrics, checkpoints, the
stream, a prediction, and the error of a job that failed over a missing file) is read
against a real API and worker, and none holds the artifact folder's path."""
from __future__ import annotations

import time

import numpy as np
import pytest
import requests

from tests.conftest import ApiServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPEC = {"model": {"layers": [{"units": 4, "activation": "tanh"}, {"units": 1, "activation": "sigmoid"}]},
        "loss": "binary_cross_entropy", "epochs": 4, "checkpoint_every": 2, "seed": 1}


def _finished(s: requests.Session, server: ApiServer, job_id: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (job := s.get(f"{server.api}/jobs/{job_id}", timeout=10).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job


def _upload(s: requests.Session, server: ApiServer, name: str) -> dict:
    rng = np.random.default_rng(3)
    rows = "".join(f"{a:.4f},{b:.4f},{int(a + b > 0)}\n" for a, b in rng.normal(size=(40, 2)))
    r = s.post(server.api + "/datasets", files={"file": (f"{name}.csv", "a,b,label\n" + rows)}, data={"name": name})
    assert r.status_code == 201, r.text
    return r.json()


def test_no_response_in_a_jobs_life_names_a_server_path(stack):
    server, workers = stack
    if not any(p.poll() is None for p in workers.procs):
        workers.start()
    s = server.session("alice")
    folders = {str(server.artifact_dir), str(server.artifact_dir.resolve())}
    bodies: dict[str, str] = {}

    def get(path: str, **params) -> requests.Response:
        r = s.get(server.api + path, params=params, timeout=30)
        assert r.status_code < 500, (path, r.text)
        bodies[f"GET {path}"] = r.text
        return r

    dataset = _upload(s, server, "pairs")
    bodies["POST /datasets"] = str(dataset)
    job = s.post(server.api + "/jobs", json={"spec": {**SPEC, "data": {"dataset_id": dataset["id"]}}}).json()
    done = _finished(s, server, job["id"])
    assert done["status"] == "succeeded", done
    job_id = job["id"]
    for path in (f"/jobs/{job_id}", "/jobs", f"/jobs/{job_id}/events", f"/jobs/{job_id}/checkpoints",
                 f"/jobs/{job_id}/metrics", f"/datasets/{dataset['id']}", "/datasets", "/me"):
        get(path)
    get(f"/jobs/{job_id}/stream")  # a finished job's stream sends it all and ends
    listed = get(f"/jobs/{job_id}/checkpoints").json()["items"]
    assert [c["epoch"] for c in listed] == [2, 4]
    # what the result says of the last checkpoint is how the API names it: its epoch
    assert done["result"]["checkpoint"] == 4
    r = s.post(f"{server.api}/jobs/{job_id}/predict", json={"inputs": [[0.1, 0.2]]}, timeout=30)
    assert r.status_code == 200, r.text
    bodies["POST predict"] = r.text

    # a job whose dataset file is gone fails with the reason, not with where the file was
    lost = _upload(s, server, "lost")
    for stored in (server.artifact_dir / "datasets").glob(f"{lost['id']}.*"):
        stored.unlink()
    failed = s.post(server.api + "/jobs", json={"spec": {**SPEC, "data": {"dataset_id": lost["id"]}}}).json()
    failed = _finished(s, server, failed["id"])
    assert failed["status"] == "failed" and failed["error"], failed
    get(f"/jobs/{failed['id']}")
    get(f"/jobs/{failed['id']}/events")

    leaks = {what: body for what, body in bodies.items() if any(folder in body for folder in folders)}
    assert leaks == {}, f"server paths in {sorted(leaks)}: {leaks}"
