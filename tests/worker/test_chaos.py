"""Chaos: 32 jobs on PostgreSQL + Redis with three real workers, through two SIGKILLs
of a worker, a worker frozen (SIGSTOP) past its lease and woken after its job moved on,
a Redis restart, an API restart and PostgreSQL stopped for 10 s. Afterwards every job
has ended, none was lost, no write of a fenced attempt is in the database, and every
job's final parameters, best checkpoint and kept checkpoints equal those of the same
spec trained uninterrupted in this process; every listed checkpoint downloads with
its sha256. Queued jobs run again within lease + 5 s of the database coming back.

The figures it measures (recovery times) are printed; run with ``-s`` to see them.
"""
from __future__ import annotations

import copy
import hashlib
import io
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.conftest import start_api_server, stop_api_server, trainyard_cmd
from tests.worker.conftest import WORKER_ENV, RedisServer, Workers
from tests.worker.test_worker import SLOW

pytestmark = [pytest.mark.slow, pytest.mark.integration]

LEASE_S = float(WORKER_ENV["TRAINYARD_LEASE_S"])
SEEDS = (1, 2, 3, 4)
JOBS_PER_SEED = 8
SPEC = copy.deepcopy(SLOW)
SPEC.update(epochs=200, checkpoint_every=5, retention={"keep_last": 2})
SPEC["schedule"] = {"name": "cosine", "t_max": 200}
FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture
def chaos_stack(tmp_path, own_postgres) -> Iterator[tuple]:
    pg = own_postgres
    url = pg.url
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    server = start_api_server("postgresql", tmp_path, url,
                              extra_env={**WORKER_ENV, "TRAINYARD_BROKER_URL": redis_server.url})
    workers = Workers(server, tmp_path)
    try:
        yield server, workers, redis_server, pg
    finally:
        for p in workers.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        workers.stop_all()
        stop_api_server(server)
        redis_server.stop()


def reference(seed: int, tmp: Path) -> dict:
    """The uninterrupted run of a spec, in this process, as the worker trains it."""
    from threadpoolctl import threadpool_limits

    from nncore.job import Job

    spec = copy.deepcopy(SPEC)
    spec["seed"] = seed
    with threadpool_limits(1, user_api="blas"):
        job = Job(spec, out_dir=tmp / f"ref-{seed}")
        job.run()
    ckpt = job.checkpointer
    return {"params": job.net.params.copy(), "best": ckpt.best_epoch, "kept": ckpt.kept_epochs}


def get(session: requests.Session, url: str, **kw) -> requests.Response:
    """GET through the API's own restart and the database outage (503s), as a client would."""
    deadline = time.monotonic() + 60
    while True:
        try:
            r = session.get(url, timeout=10, **kw)
            if r.status_code != 503:
                return r
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} unavailable for 60 s")
        time.sleep(0.2)


def statuses(server, s, ids) -> dict[int, str]:
    items = get(s, f"{server.api}/jobs", params={"limit": 200}).json()["items"]
    return {j["id"]: j["status"] for j in items if j["id"] in ids}


def running_jobs(server, s, ids) -> list[int]:
    return [i for i, st in statuses(server, s, ids).items() if st == "running"]


def wait_until(cond, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def worker_running(workers: Workers, db, ids) -> tuple[object, int] | None:
    """A live worker and a job it is training right now, past its first checkpoints."""
    from sqlalchemy import text

    alive = {p.pid: p for p in workers.procs if p.poll() is None}
    with db.connect() as conn:
        rows = conn.execute(text("SELECT id, lease_owner, progress FROM jobs WHERE status = 'running'")).all()
    for job_id, owner, progress in rows:
        # the lease owner is "<host>:<worker pid>/<pool child pid>"
        m = re.search(r":(\d+)/\d+$", owner or "")
        # past its first checkpoints and far from its end, so a kill lands mid-job
        if job_id in ids and m and int(m.group(1)) in alive and 6 <= (progress or {}).get("epoch", 0) <= 120:
            return alive[int(m.group(1))], job_id
    return None


def event_times(server, s, job_id) -> list[tuple[datetime, str]]:
    items = get(s, f"{server.api}/jobs/{job_id}/events", params={"limit": 1000}).json()["items"]
    return [(datetime.fromisoformat(e["time"].replace("Z", "+00:00")), e["message"]) for e in items]


def test_chaos(chaos_stack, tmp_path):
    from sqlalchemy import create_engine, text

    server, workers, redis_server, pg = chaos_stack
    s = server.session("alice")
    db = create_engine(server.database_url, pool_pre_ping=True)
    for _ in range(3):
        workers.start()
    ids = []
    for i in range(len(SEEDS) * JOBS_PER_SEED):
        spec = copy.deepcopy(SPEC)
        spec["seed"] = SEEDS[i % len(SEEDS)]
        r = s.post(f"{server.api}/jobs", json={"spec": spec})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    seed_of = {job_id: SEEDS[i % len(SEEDS)] for i, job_id in enumerate(ids)}
    figures: dict[str, float] = {}
    killed: list[tuple[int, float]] = []

    # 1. SIGKILL a worker mid-job, twice (a machine that died), with a replacement each time
    for n in range(2):
        victim, job_id = wait_until(lambda: worker_running(workers, db, ids), 60, "a job mid-way")
        workers.kill(victim)
        killed.append((job_id, time.time()))
        workers.start()
        if n == 0:
            # 2. a worker frozen past its lease, woken after its job moved on
            frozen, frozen_job = wait_until(lambda: worker_running(workers, db, ids), 60, "a job mid-way")
            os.killpg(frozen.pid, signal.SIGSTOP)
            t_freeze = time.time()
            with db.connect() as conn:
                attempt = conn.execute(text("SELECT attempts FROM jobs WHERE id = :j"), {"j": frozen_job}).scalar()
            # its job is handed on (and may start elsewhere) while it sleeps
            wait_until(lambda j=frozen_job, a=attempt: sum("expired" in m for _, m in event_times(server, s, j)) >= a,
                       LEASE_S + 30, "the frozen worker's job to be re-queued")
            os.killpg(frozen.pid, signal.SIGCONT)
            figures["frozen_to_requeued_s"] = time.time() - t_freeze
            time.sleep(2)
    # 3. Redis restarts (its append-only file keeps the queue)
    redis_server.stop()
    time.sleep(1)
    redis_server.start()  # the same port: the workers reconnect
    # 4. the API restarts
    stop_api_server(server)
    server.proc = subprocess.Popen(trainyard_cmd() + ["api", "--port", server.url.rsplit(":", 1)[1],
                                                      "--workers", "2"], env=server.env,
                                   stdout=open(tmp_path / "api-2.log", "wb"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
    # 5. PostgreSQL stopped for 10 s while jobs are queued and running
    wait_until(lambda: running_jobs(server, s, ids), 60, "running jobs before the outage")
    queued_before = [i for i, st in statuses(server, s, ids).items() if st == "queued"]
    pg.stop()
    time.sleep(10)
    pg.start()
    t_back = time.time()
    # a queued job (or one whose lease the outage outlived) runs again soon after
    def restarted_after_outage():
        for job_id in ids:
            for when, message in event_times(server, s, job_id):
                if message.startswith("running (attempt") and when.timestamp() > t_back:
                    return when.timestamp() - t_back
        return None
    figures["db_back_to_a_job_running_s"] = wait_until(restarted_after_outage, LEASE_S + 5 + 10, "a job to start")

    # every job ends
    def all_ended():
        st = statuses(server, s, ids)
        return st if len(st) == len(ids) and all(v in FINISHED for v in st.values()) else None

    final = wait_until(all_ended, 400, "every job to end", every=1.0)
    assert set(final.values()) == {"succeeded"}, final

    # the figures: kill -> re-queued -> running again
    for job_id, t_kill in killed:
        times = event_times(server, s, job_id)
        requeued = [w for w, m in times if "expired" in m and w.timestamp() > t_kill]
        resumed = [w for w, m in times if m.startswith("running (attempt") and w.timestamp() > t_kill]
        assert requeued and resumed, (job_id, times)  # the kill hit it mid-job: it was handed on and resumed
        figures["kill_to_requeue_s"] = max(figures.get("kill_to_requeue_s", 0), requeued[0].timestamp() - t_kill)
        figures["kill_to_running_s"] = max(figures.get("kill_to_running_s", 0), resumed[0].timestamp() - t_kill)

    refs = {seed: reference(seed, tmp_path) for seed in SEEDS}
    resumed_jobs = 0
    for job_id in ids:
        job = get(s, f"{server.api}/jobs/{job_id}").json()
        resumed_jobs += job["attempts"] > 1
        ref = refs[seed_of[job_id]]
        ckpts = get(s, f"{server.api}/jobs/{job_id}/checkpoints").json()["items"]
        assert {c["epoch"] for c in ckpts} == ref["kept"], (job_id, job["attempts"])
        assert [c["epoch"] for c in ckpts if c["is_best"]] == [ref["best"]], (job_id, job["attempts"])
        for c in ckpts:
            blob = get(s, server.url + c["download_url"]).content
            assert hashlib.sha256(blob).hexdigest() == c["sha256"], (job_id, c["epoch"])
            if c["epoch"] == max(x["epoch"] for x in ckpts):
                np.testing.assert_array_equal(np.load(io.BytesIO(blob))["params"], ref["params"], err_msg=str(job_id))
        # no row of a fenced attempt: each listed file was written and listed by its own attempt
        # while it held the lease (after that attempt began, before the next one did)
        starts = {int(m.group(1)): w for w, msg in event_times(server, s, job_id)
                  if (m := re.match(r"running \(attempt (\d+)\)", msg))}
        with db.connect() as conn:
            rows = conn.execute(text("SELECT epoch, path, created_at FROM checkpoints WHERE job_id = :j"),
                                {"j": job_id}).all()
        for epoch, path, created in rows:
            attempt = int(re.search(r"-a(\d+)\.npz$", path).group(1))
            assert starts[attempt] <= created, (job_id, epoch, attempt)
            assert attempt + 1 not in starts or created < starts[attempt + 1], (job_id, epoch, attempt, starts)
        on_disk = sorted(p.name for p in (server.artifact_dir / "jobs" / str(job_id) / "checkpoints").glob("*.npz"))
        assert on_disk == sorted(Path(p).name for _, p, _ in rows), (job_id, on_disk)
    assert resumed_jobs >= 3, "the faults hit running jobs"

    # the frozen worker noticed it had lost its job and wrote nothing more
    frozen_log = "".join(p.read_text(errors="replace") for p in tmp_path.glob("worker-*.log"))
    assert "no longer holds the lease" in frozen_log
    print("\nchaos figures:", {k: round(v, 2) for k, v in figures.items()}, f"resumed jobs {resumed_jobs}/{len(ids)}",
          f"queued during the outage {len(queued_before)}")
    assert figures["db_back_to_a_job_running_s"] <= LEASE_S + 5


def test_a_claim_while_the_database_is_down_is_retried_not_forgotten(chaos_stack):
    """Messages a worker takes while PostgreSQL is down are sent again, not acknowledged and
    lost (they would wait for the reaper's 120 s stale resend): the jobs start within
    lease + 5 s of the database coming back."""
    server, workers, _redis, pg = chaos_stack
    s = server.session("alice")
    worker = workers.start()
    wait_until(lambda: get(s, f"{server.api}/workers", params={}).json()["items"], 30, "the worker to register")
    os.killpg(worker.pid, signal.SIGSTOP)  # idle: the messages wait in Redis until it is woken
    spec = copy.deepcopy(SPEC)
    spec["epochs"] = 5
    ids = [s.post(f"{server.api}/jobs", json={"spec": spec}).json()["id"] for _ in range(2)]
    pg.stop()
    os.killpg(worker.pid, signal.SIGCONT)
    time.sleep(6)  # it takes the messages and fails to claim them, more than once
    pg.start()
    t_back = time.time()
    for job_id in ids:
        wait_until(lambda j=job_id: statuses(server, s, [j]).get(j) in ("running", "succeeded"), LEASE_S + 5,
                   f"job {job_id} to start after the database came back")
    print(f"\nclaims retried: jobs running {time.time() - t_back:.1f} s after the database came back")
    log = "".join(p.read_text(errors="replace") for p in workers.tmp.glob("worker-*.log"))
    assert "the database is unreachable" in log and "trying again" in log


def test_a_job_whose_worker_is_killed_past_max_restarts_fails_saying_so(chaos_stack):
    server, workers, _redis, _pg = chaos_stack
    from sqlalchemy import create_engine

    db = create_engine(server.database_url, pool_pre_ping=True)
    s = server.session("alice")
    spec = copy.deepcopy(SPEC)
    spec["max_restarts"] = 1
    job_id = s.post(f"{server.api}/jobs", json={"spec": spec}).json()["id"]
    for _ in range(2):  # as an OOM kill would, every attempt
        workers.start()
        victim, running = wait_until(lambda: worker_running(workers, db, [job_id]), 60, "the job mid-way")
        workers.kill(victim)
    workers.start()  # its reaper hands the job on
    job = wait_until(lambda: (j := get(s, f"{server.api}/jobs/{job_id}").json())["status"] in FINISHED and j,
                     LEASE_S + 20, "the job to end")
    assert job["status"] == "failed" and job["attempts"] == 2, job
    assert job["error"] == "its worker was lost 2 times (attempt 2 of 2 allowed by max_restarts=1)"
