"""The cluster configuration: PostgreSQL + a real Redis broker + worker processes."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from service.store.models import Event

from .test_worker import submit, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

XOR = json.loads((Path(__file__).parents[2] / "examples/xor.json").read_text())
XOR["epochs"] = 30


def _runs(server, ids):
    engine = create_engine(server.database_url)
    with engine.connect() as conn:
        rows = conn.execute(select(Event.job_id, Event.message).where(Event.job_id.in_(ids))).all()
    engine.dispose()
    return sorted(job_id for job_id, message in rows if message.startswith("running"))


def test_jobs_run_on_redis_and_postgresql(redis_stack):
    server, workers, _redis = redis_stack
    workers.start()
    ids = [submit(server, {**XOR, "seed": i}) for i in range(5)]
    for job_id in ids:
        assert wait_for(server, job_id, timeout=120)["status"] == "succeeded"
    assert _runs(server, ids) == sorted(ids)
    health = server.session(None).get(server.api + "/health").json()
    assert health == {"status": "ok", "database": "ok", "broker": "ok"}


def test_restarting_redis_while_jobs_are_queued_loses_none_and_runs_none_twice(redis_stack):
    server, workers, redis_server = redis_stack
    for p in workers.procs:
        if p.poll() is None:
            workers.kill(p)
    # queued while no worker runs, then Redis goes away and comes back
    ids = [submit(server, {**XOR, "seed": 100 + i}) for i in range(10)]
    redis_server.stop()
    down = server.session(None).get(server.api + "/health")
    assert down.status_code == 503 and down.json()["broker"].startswith("unreachable")
    # submitted while the broker is down: kept queued in SQL, sent later by the reaper
    ids += [submit(server, {**XOR, "seed": 200 + i}) for i in range(5)]
    redis_server.start()
    workers.start()
    workers.start()
    for job_id in ids:
        assert wait_for(server, job_id, timeout=180)["status"] == "succeeded"
    assert _runs(server, ids) == sorted(ids), "every job ran exactly once"
    time.sleep(1)


def test_priority_orders_the_queue(redis_stack):
    server, workers, _redis = redis_stack
    for p in workers.procs:
        if p.poll() is None:
            workers.kill(p)
    s = server.session("alice")
    low = [s.post(server.api + "/jobs", json={"spec": {**XOR, "seed": 300 + i}, "priority": -50}).json()["id"]
           for i in range(4)]
    high = s.post(server.api + "/jobs", json={"spec": {**XOR, "seed": 400}, "priority": 90}).json()["id"]
    workers.start()
    for job_id in low + [high]:
        assert wait_for(server, job_id, timeout=120)["status"] == "succeeded"
    started = {j: s.get(f"{server.api}/jobs/{j}").json()["started_at"] for j in low + [high]}
    assert started[high] < min(started[j] for j in low)
