"""The client verbs of the CLI against a real API and worker."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import trainyard_cmd

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).parents[2]


def run(server, *args, token="alice"):
    env = {**server.env, "TRAINYARD_URL": server.url, "TRAINYARD_TOKEN": server.tokens[token]}
    return subprocess.run(trainyard_cmd() + list(args), env=env, capture_output=True, text=True, timeout=120)


def test_submit_watch_jobs_status_cancel(stack, tmp_path):
    server, workers = stack
    if not any(p.poll() is None for p in workers.procs):
        workers.start()
    done = run(server, "submit", str(ROOT / "examples/xor.json"), "--watch")
    assert done.returncode == 0, done.stderr
    assert "submitted job" in done.stdout and "succeeded" in done.stdout.splitlines()[-1]
    job_id = int(done.stdout.split("submitted job ")[1].split()[0])
    listing = run(server, "jobs", "--json")
    assert job_id in [j["id"] for j in json.loads(listing.stdout)["items"]]
    shown = run(server, "status", str(job_id))
    assert shown.returncode == 0 and "succeeded" in shown.stdout
    again = run(server, "cancel", str(job_id))
    assert again.returncode == 1 and "already finished" in again.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": {"layers": [{"units": 0}]}, "loss": "mse", "data": {"dataset": "iris"}}))
    refused = run(server, "submit", str(bad))
    assert refused.returncode == 2 and "spec.model.layers[0].units: must be >= 1, got 0" in refused.stderr
    assert "Traceback" not in refused.stderr
    missing = run(server, "status", "999999")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    no_token = subprocess.run(trainyard_cmd() + ["jobs"], capture_output=True, text=True,
                              env={k: v for k, v in server.env.items() if k != "TRAINYARD_TOKEN"})
    assert no_token.returncode == 2 and "no API token" in no_token.stderr
