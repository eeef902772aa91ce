"""`trainyard up`: one command, embedded defaults, a job trained end to end, Ctrl-C stops all;
it says which part fails and why (a broker it cannot reach, a part that dies) and stops."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port, trainyard_cmd
from worker.launch import descendants

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLES = Path(__file__).parents[2] / "examples"
XOR = json.loads((EXAMPLES / "xor.json").read_text())


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


def _env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    return {**env, "TRAINYARD_VAR_DIR": str(var_dir), **extra}


def _start_up(tmp_path: Path, env: dict[str, str], port: int) -> subprocess.Popen:
    return subprocess.Popen(trainyard_cmd() + ["up", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=open(tmp_path / "up.log", "wb"), text=True)


def _processes_with_env(key: str, value: str) -> list[int]:
    """Live processes whose environment holds key=value: what `up` started inherits it."""
    wanted = f"{key}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if wanted in environ.split(b"\0") and state != "Z":
            found.append(int(entry))
    return found


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        # Ctrl-C, so up stops its parts (killed, it would leave them running)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()


def _leftovers(var: Path) -> list[int]:
    """The processes up left running (killed, so a failing test does not leak them)."""
    time.sleep(0.5)
    left = _processes_with_env("TRAINYARD_VAR_DIR", str(var))
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def test_up_with_the_database_elsewhere_creates_the_broker_folder_and_trains(tmp_path):
    # the database in a folder of its own, so nothing else creates the (not yet existing)
    # var folder where the embedded broker's file goes
    var = tmp_path / "fresh" / "var"
    db_file = tmp_path / "elsewhere" / "trainyard.sqlite"
    port = free_port()
    proc = _start_up(tmp_path, _env(var, TRAINYARD_DATABASE_URL=f"sqlite:///{db_file}"), port)
    try:
        token = proc.stdout.readline().strip()
        log = (tmp_path / "up.log").read_text()
        assert token.startswith("ty_") and "trainyard is up" in log, log[-3000:]
        assert (var / "broker.sqlite").exists() and db_file.exists()
        api = f"http://127.0.0.1:{port}/api/v1"
        health = requests.get(api + "/health", timeout=5)
        assert health.status_code == 200 and health.json()["broker"] == "ok", health.text
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        digits = {**json.loads((EXAMPLES / "digits.json").read_text()), "epochs": 2, "checkpoint_every": 1}
        created = s.post(api + "/jobs", json={"spec": digits})
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 90
        while (job := s.get(f"{api}/jobs/{created.json()['id']}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, (job, (tmp_path / "up.log").read_text()[-3000:])
            time.sleep(0.2)
        assert job["status"] == "succeeded", job
        assert proc.poll() is None
    finally:
        _stop(proc)
    assert proc.returncode == 0


def test_up_refuses_a_broker_it_cannot_reach_before_starting_anything(tmp_path):
    nobody = free_port()  # bound and released: nothing listens there
    broker = f"redis://127.0.0.1:{nobody}/0"
    var = tmp_path / "var"
    env = _env(var, TRAINYARD_BROKER_URL=broker)
    started = time.monotonic()
    proc = _start_up(tmp_path, env, free_port())
    try:
        code = proc.wait(timeout=15)
    finally:
        _stop(proc)
    elapsed = time.monotonic() - started
    log = (tmp_path / "up.log").read_text()
    assert code != 0 and proc.stdout.read() == "", "no token: nothing came up"
    assert f"the broker {broker} cannot be reached" in log, log[-3000:]
    assert "trainyard is up" not in log
    assert elapsed < 10, f"up took {elapsed:.1f} s to give up on the broker"
    assert not (var / "trainyard.sqlite").exists(), "it stopped before migrating"
    assert _leftovers(var) == [], "no part was left running"


def test_up_says_which_part_died_and_stops_the_rest(tmp_path):
    port = free_port()
    var = tmp_path / "var"
    proc = _start_up(tmp_path, _env(var), port)
    try:
        token = proc.stdout.readline().strip()
        assert token.startswith("ty_"), (tmp_path / "up.log").read_text()[-3000:]
        workers = requests.get(f"http://127.0.0.1:{port}/api/v1/workers", timeout=5,
                               headers={"Authorization": f"Bearer {token}"}).json()["items"]
        # `up` printed "is up" only once its worker had registered itself
        assert [w["state"] for w in workers] == ["alive"], workers
        # the worker and everything under it, as if the machine's OOM killer struck
        os.killpg(workers[0]["pid"], signal.SIGKILL)
        code = proc.wait(timeout=40)
    finally:
        _stop(proc)
    log = (tmp_path / "up.log").read_text()
    assert code != 0
    assert "the worker stopped unexpectedly (killed by SIGKILL)" in log, log[-3000:]
    assert _leftovers(var) == [], "the API was stopped too"
