"""/api/v1/workers and /api/v1/me against the API in this process, and ``trainyard
workers`` against a real server. Worker rows are written with the store functions
``trainyard worker`` uses (the real worker process is exercised by the dashboard test);
their clocks are moved to show each state."""
from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from service.store import workers as registry
from service.store.db import make_engine, make_sessionmaker
from service.store.models import Job, Worker, utcnow
from tests.conftest import trainyard_cmd

XOR = json.loads((Path(__file__).parents[2] / "examples/xor.json").read_text())


def test_me_names_the_token_owner(api_server):
    me = api_server.session("alice").get(f"{api_server.api}/me").json()
    assert (me["name"], me["is_admin"], me["quota"]["used_bytes"]) == ("alice", False, 0)
    me = api_server.session("root").get(f"{api_server.api}/me").json()
    assert (me["name"], me["is_admin"]) == ("root", True)
    anonymous = api_server.session(None).get(f"{api_server.api}/me")
    assert anonymous.status_code == 401 and anonymous.headers["Content-Type"] == "application/problem+json"


def seed_workers(server) -> tuple[int, int]:
    """Five workers in every state, alpha running a job of alice's and one of bob's;
    the two job ids."""
    alice, bob = server.session("alice"), server.session("bob")
    a_job = alice.post(f"{server.api}/jobs", json={"spec": XOR}).json()["id"]
    b_job = bob.post(f"{server.api}/jobs", json={"spec": XOR}).json()["id"]
    engine = make_engine(server.database_url)
    try:
        with make_sessionmaker(engine)() as s:
            for name, pid in (("alpha:1", 1), ("beta:2", 2), ("gamma:3", 3), ("delta:4", 4)):
                registry.register(s, name, hostname=name.split(":")[0], pid=pid, concurrency=2, queues="jobs",
                                  broker="redis", version="0.1.0")
            registry.heartbeat(s, "alpha:1")
            registry.mark_stopped(s, "gamma:3")
            now = utcnow()
            # beta missed its heartbeats; delta was last seen beyond the registry's memory
            s.execute(update(Worker).where(Worker.name == "beta:2").values(
                last_seen_at=now - timedelta(seconds=registry.ALIVE_WITHIN_S + 5)))
            s.execute(update(Worker).where(Worker.name == "delta:4").values(
                last_seen_at=now - registry.FORGET_AFTER - timedelta(minutes=1)))
            for job_id, pid in ((a_job, 101), (b_job, 102)):
                s.execute(update(Job).where(Job.id == job_id).values(
                    status="running", lease_owner=registry.lease_owner("alpha:1", pid),
                    lease_expires_at=now + timedelta(seconds=30), progress={"epoch": 3, "epochs": 300}))
            s.commit()
            # a new registration prunes the rows nobody has seen for a day
            registry.register(s, "epsilon:5", hostname="epsilon", pid=5, concurrency=1, queues="jobs",
                              broker="sqla+sqlite", version="0.1.0")
    finally:
        engine.dispose()
    return a_job, b_job


def test_workers_states_and_who_sees_which_jobs(api_server):
    alice, root = api_server.session("alice"), api_server.session("root")
    a_job, b_job = seed_workers(api_server)

    seen = {w["name"]: w for w in alice.get(f"{api_server.api}/workers").json()["items"]}
    assert list(seen) == ["alpha:1", "epsilon:5", "beta:2", "gamma:3"]  # alive by name, then lost, stopped
    assert [seen[n]["state"] for n in seen] == ["alive", "alive", "lost", "stopped"]
    alpha = seen["alpha:1"]
    assert alpha["busy"] == 2 and alpha["concurrency"] == 2
    # alice sees her job on it and only counts bob's
    assert [(j["id"], j["owner"], j["progress"]["epoch"]) for j in alpha["jobs"]] == [(a_job, "alice", 3)]
    assert seen["epsilon:5"]["busy"] == 0 and seen["gamma:3"]["stopped_at"] is not None
    admin_view = {w["name"]: w for w in root.get(f"{api_server.api}/workers").json()["items"]}
    assert sorted(j["id"] for j in admin_view["alpha:1"]["jobs"]) == sorted([a_job, b_job])
    assert api_server.session(None).get(f"{api_server.api}/workers").status_code == 401
    # the same from the Python client
    assert [w["name"] for w in api_server.client("bob").workers()] == list(seen)


@pytest.mark.integration
def test_the_workers_command_prints_each_state(live_api_server):
    a_job, _ = seed_workers(live_api_server)
    env = {**live_api_server.env, "TRAINYARD_URL": live_api_server.url,
           "TRAINYARD_TOKEN": live_api_server.tokens["alice"]}
    out = subprocess.run(trainyard_cmd() + ["workers"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert [line.split()[0] for line in lines[1:]] == ["alpha:1", "epsilon:5", "beta:2", "gamma:3"]
    assert rows["alpha:1"][1:4] == ["alive", "2/2", str(a_job)]
    assert rows["beta:2"][1] == "lost" and rows["gamma:3"][1] == "stopped"


def test_the_dashboard_is_served_self_contained(api_server):
    import re

    s = api_server.session(None)
    page = s.get(api_server.url + "/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assets = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert "/dashboard/vendor/uPlot.iife.min.js" in assets and "/dashboard/app.js" in assets
    for asset in assets:
        if asset.startswith("/api/"):
            continue
        assert asset.startswith("/dashboard/"), f"{asset} is not served from here"
        r = s.get(api_server.url + asset)
        assert r.status_code == 200 and len(r.content) > 100, asset
    assert s.get(api_server.url + "/dashboard/nope.js").status_code == 404
