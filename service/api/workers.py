"""/api/v1/workers: which workers are alive and what they are training."""
from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from ..store.workers import list_workers
from .auth import auth, current_user
from .schemas import WorkerList, iso
from .state import db

bp = APIBlueprint("workers", __name__, tag="Workers")


@bp.get("/workers")
@bp.auth_required(auth)
@bp.output(WorkerList, description="Workers seen in the last day: alive first, then lost, then stopped.")
@bp.doc(summary="Workers and their running jobs", responses=[200, 401])
def workers() -> Any:
    items = []
    for view in list_workers(db(), current_user()):
        w = view.worker
        items.append({"name": w.name, "state": view.state, "hostname": w.hostname, "pid": w.pid,
                      "concurrency": w.concurrency, "busy": view.busy, "queues": w.queues, "broker": w.broker,
                      "version": w.version, "started_at": iso(w.started_at), "last_seen_at": iso(w.last_seen_at),
                      "stopped_at": iso(w.stopped_at),
                      "jobs": [{"id": j.id, "name": j.name, "owner": j.owner.name, "progress": j.progress}
                               for j in view.jobs]})
    return {"items": items}
