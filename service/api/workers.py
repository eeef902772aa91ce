"""/api/v1/workers: which workers are alive and what they are training."""
from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from ..store.workers import list_workers
from .auth import auth, current_user
from .schemas import WorkerList
from .state import db

bp = APIBlueprint("workers", __name__, tag="Workers")


@bp.get("/workers")
@bp.auth_required(auth)
@bp.output(WorkerList, description="Workers seen in the last day: alive first, then lost, then stopped.")
@bp.doc(summary="Workers and their running jobs", responses=[200, 401])
def workers() -> Any:
    return WorkerList.model_validate({"items": list_workers(db(), current_user())})
