"""A database outage: every route answers 503 (a problem document with Retry-After), not
500, while PostgreSQL is down, and the same requests work again once it is back.
Other database errors (a violated constraint, a bad query) stay what they were."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc

from service.api import create_app
from service.shared.settings import Settings

XOR = json.loads((Path(__file__).parents[2] / "examples/xor.json").read_text())
PROBLEM = "application/problem+json"


def _settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, broker_url=f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
                    artifact_dir=tmp_path / "artifacts")


@pytest.mark.integration
def test_every_route_answers_503_while_postgres_is_down_and_recovers(own_postgres, tmp_path):
    cluster = own_postgres
    from service.store.db import make_engine, make_sessionmaker
    from service.store.migrate import upgrade
    from service.store.users import create_token

    upgrade(cluster.url)
    engine = make_engine(cluster.url)
    with make_sessionmaker(engine)() as session:
        token = create_token(session, "alice")
    engine.dispose()
    app = create_app(_settings(cluster.url, tmp_path))
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}

    def calls() -> dict[str, object]:
        return {"GET /jobs": client.get("/api/v1/jobs", headers=auth),
                "GET /jobs/1": client.get("/api/v1/jobs/1", headers=auth),
                "GET /me": client.get("/api/v1/me", headers=auth),
                "POST /jobs": client.post("/api/v1/jobs", headers=auth, json={"spec": XOR})}

    missing = client.get("/api/v1/jobs/1", headers=auth)
    assert missing.status_code == 404 and missing.content_type == PROBLEM

    cluster.stop("fast")
    for what, resp in calls().items():
        assert resp.status_code == 503, (what, resp.status_code, resp.get_data(as_text=True))
        assert resp.content_type == PROBLEM and resp.headers["Retry-After"] == "5", what
        body = resp.get_json()
        assert body["status"] == 503 and body["title"] == "Service Unavailable", what
        assert "database is unreachable" in body["detail"], what
    health = client.get("/api/v1/health")
    assert health.status_code == 503 and health.get_json()["database"].startswith("unreachable"), health.get_json()
    assert health.get_json()["broker"] == "ok"

    cluster.start()
    after = calls()
    assert {what: r.status_code for what, r in after.items()} == \
        {"GET /jobs": 200, "GET /jobs/1": 404, "GET /me": 200, "POST /jobs": 201}
    job_id = after["POST /jobs"].get_json()["id"]
    assert client.get(f"/api/v1/jobs/{job_id}", headers=auth).get_json()["status"] == "queued"
    assert client.get("/api/v1/health").status_code == 200


def test_only_errors_that_mean_unreachable_become_503(tmp_path):
    app = create_app(_settings(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path))
    failures = {
        "operational": sa_exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")),
        "interface": sa_exc.InterfaceError("SELECT 1", {}, Exception("connection already closed")),
        "invalidated": sa_exc.DBAPIError("SELECT 1", {}, Exception("lost"), connection_invalidated=True),
        "pool-timeout": sa_exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
        "integrity": sa_exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")),
        "programming": sa_exc.ProgrammingError("SELEKT", {}, Exception("syntax error")),
        "dbapi": sa_exc.DBAPIError("SELECT 1", {}, Exception("odd")),
    }

    @app.get("/boom/<kind>")
    def boom(kind: str) -> None:
        raise failures[kind]

    client = app.test_client()
    got = {kind: client.get(f"/boom/{kind}") for kind in failures}
    assert {k: r.status_code for k, r in got.items()} == {
        "operational": 503, "interface": 503, "invalidated": 503, "pool-timeout": 503,
        "integrity": 500, "programming": 500, "dbapi": 500}
    assert all(r.content_type == PROBLEM for r in got.values())
    assert got["operational"].headers["Retry-After"] == "5" and "Retry-After" not in got["integrity"].headers


def test_health_opens_the_embedded_broker_rather_than_assuming_it(tmp_path):
    from service.store.migrate import upgrade

    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(database)
    # a folder nobody created: SQLite cannot make the broker's file there
    app = create_app(Settings(database_url=database, broker_url=f"sqla+sqlite:///{tmp_path / 'nowhere' / 'b.sqlite'}",
                              artifact_dir=tmp_path / "artifacts"))
    health = app.test_client().get("/api/v1/health")
    assert health.status_code == 503, health.get_json()
    assert health.get_json()["database"] == "ok"
    assert health.get_json()["broker"] == "unreachable: OperationalError: unable to open database file"
    (tmp_path / "nowhere").mkdir()
    assert app.test_client().get("/api/v1/health").get_json() == {"status": "ok", "database": "ok", "broker": "ok"}
