"""/api/v1/health: is the database reachable, is the broker?"""
from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from sqlalchemy import text

from .schemas import Health
from .state import db, discard_db, state

bp = APIBlueprint("health", __name__, tag="Health")


@bp.get("/health")
@bp.output(Health, description="Both reachable.")
@bp.doc(summary="Health of the database and the broker",
        responses={200: "Both reachable",
                   503: {"description": "One of them is not (the same body, saying which)",
                         "content": {"application/json": {"schema": Health.model_json_schema()}}}})
def health() -> Any:
    try:
        db().execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:  # report, do not raise: this endpoint exists to say what is down
        database = f"unreachable: {type(exc).__name__}"
        discard_db()
    broker_problem = state().enqueuer.ping()
    broker = "ok" if broker_problem is None else f"unreachable: {broker_problem}"
    ok = database == "ok" and broker == "ok"
    return Health(status="ok" if ok else "degraded", database=database, broker=broker), 200 if ok else 503
