"""`trainyard up`: one command, embedded defaults, a job trained end to end, Ctrl-C stops all."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from nncore.distributed import descendants
from tests.conftest import free_port, trainyard_cmd

pytestmark = [pytest.mark.integration, pytest.mark.slow]
XOR = json.loads((Path(__file__).parents[2] / "examples/xor.json").read_text())


def test_up_serves_trains_and_stops_cleanly_on_ctrl_c(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    env["TRAINYARD_VAR_DIR"] = str(tmp_path / "var")
    proc = subprocess.Popen(trainyard_cmd() + ["up", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=open(tmp_path / "up.log", "wb"), text=True)
    token = proc.stdout.readline().strip()
    assert token.startswith("ty_"), (tmp_path / "up.log").read_text()
    api = f"http://127.0.0.1:{port}/api/v1"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(api + "/health", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.2)
    family = descendants(proc.pid)
    dashboard = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert dashboard.status_code == 200 and "<title>trainyard</title>" in dashboard.text
    deadline_log = time.monotonic() + 10
    while "Ctrl-C stops everything" not in (tmp_path / "up.log").read_text() and time.monotonic() < deadline_log:
        time.sleep(0.1)
    log = (tmp_path / "up.log").read_text()
    assert f"dashboard  http://127.0.0.1:{port}/" in log and f"export TRAINYARD_TOKEN={token}" in log
    assert "celery@" not in log, "the worker's banner is not shown by up"
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    job_id = s.post(api + "/jobs", json={"spec": XOR}).json()["id"]
    while (job := s.get(f"{api}/jobs/{job_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline + 60, job
        time.sleep(0.2)
    assert job["status"] == "succeeded"
    assert (tmp_path / "var" / "trainyard.sqlite").exists()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=40) == 0
    time.sleep(0.5)
    alive = [pid for pid in family if Path(f"/proc/{pid}").exists()
             and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert alive == [], "every process of `up` is gone"
