"""A full artifacts disk: checkpoints stop fitting mid-job. The attempt fails with the
disk's own reason, is retried from its last checkpoint (which cannot help, and says
so), and the job ends failed; every checkpoint it lists downloads with its sha256, no
half-written file is left, and the metrics written before are kept."""
from __future__ import annotations

import copy
import hashlib
import os
import subprocess

import pytest

from tests.conftest import start_api_server, stop_api_server
from tests.worker.conftest import WORKER_ENV, Workers
from tests.worker.test_worker import DIGITS, events, submit, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs for the artifacts (about seven checkpoints of the digits net)."""
    if os.geteuid() != 0:
        pytest.fail("mounting a small tmpfs needs root (CI runs as root)")
    mount = tmp_path / "artifacts"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_the_job_with_its_reason_and_loses_nothing_listed(tmp_path, small_disk):
    server = start_api_server("sqlite", tmp_path, None,
                              extra_env={**WORKER_ENV, "TRAINYARD_ARTIFACT_DIR": str(small_disk)})
    workers = Workers(server, tmp_path)
    try:
        workers.start()
        spec = copy.deepcopy(DIGITS)
        spec.pop("early_stopping")
        spec.update(epochs=60, checkpoint_every=1, retention={"keep_last": 0}, max_restarts=1)
        job_id = submit(server, spec)
        job = wait_for(server, job_id, timeout=120)
        assert job["status"] == "failed", job
        assert "No space left on device" in job["error"], job["error"]
        assert job["attempts"] == 2, job  # retried once from its last checkpoint, as max_restarts says
        messages = [e["message"] for e in events(server, job_id)]
        assert any(m.startswith("attempt 1 failed") and "No space left" in m for m in messages), messages
        s = server.session("alice")
        ckpts = s.get(f"{server.api}/jobs/{job_id}/checkpoints").json()["items"]
        assert 1 <= len(ckpts) < 60
        for c in ckpts:
            blob = s.get(server.url + c["download_url"]).content
            assert hashlib.sha256(blob).hexdigest() == c["sha256"], c["epoch"]
        on_disk = sorted(p.name for p in (small_disk / "jobs" / str(job_id) / "checkpoints").iterdir())
        assert all(name.endswith(".npz") for name in on_disk), on_disk  # no temporary file left behind
        assert len(on_disk) == len(ckpts), (on_disk, [c["epoch"] for c in ckpts])
        points = s.get(f"{server.api}/jobs/{job_id}/metrics?name=val_loss&limit=1000").json()["items"]
        assert points and max(p["epoch"] for p in points) >= max(c["epoch"] for c in ckpts)
    finally:
        workers.stop_all()
        stop_api_server(server)
