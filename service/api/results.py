"""/api/v1/jobs/<id>/...: a job's metrics, checkpoints, events and predictions."""
from __future__ import annotations

import base64
from typing import Any

from apiflask import APIBlueprint
from flask import send_file

from ..store import predict as predictions
from ..store import results as store
from .auth import auth, current_user
from .schemas import (
    CheckpointList,
    EventList,
    EventsQuery,
    MetricsPage,
    MetricsQuery,
    PredictIn,
    PredictOut,
)
from .state import db, state

bp = APIBlueprint("results", __name__, url_prefix="/jobs", tag="Results")

_NPZ_DOWNLOAD = {
    "description": "The checkpoint file (NumPy .npz, readable with allow_pickle=False).",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    "headers": {"Repr-Digest": {"description": "sha-256 of the file (RFC 9530), as listed with the checkpoint.",
                                "schema": {"type": "string"}}},
}


@bp.get("/<int:job_id>/metrics")
@bp.auth_required(auth)
@bp.input(MetricsQuery, location="query")
@bp.output(MetricsPage, description="Points ordered by step, then name.")
@bp.doc(summary="A job's metric series", responses=[200, 401, 404, 422])
def metrics(job_id: int, query_data: MetricsQuery) -> Any:
    q = query_data
    names = [n.strip() for n in q.name.split(",") if n.strip()] if q.name else None
    points, token = store.list_metrics(db(), current_user(), job_id, names, q.after_step, q.before_step, q.limit,
                                       q.page_token, q.max_points)
    return MetricsPage.model_validate({"items": points, "next_page_token": token})


@bp.get("/<int:job_id>/checkpoints")
@bp.auth_required(auth)
@bp.output(CheckpointList, description="By epoch, oldest first.")
@bp.doc(summary="A job's checkpoints", responses=[200, 401, 404])
def checkpoints(job_id: int) -> Any:
    return CheckpointList.model_validate({"items": store.list_checkpoints(db(), current_user(), job_id)})


@bp.get("/<int:job_id>/checkpoints/<int:epoch>")
@bp.auth_required(auth)
@bp.doc(summary="Download a checkpoint", responses={200: _NPZ_DOWNLOAD, 401: "Authentication error",
                                                    404: "No such job, checkpoint, or checkpoint file"})
def download_checkpoint(job_id: int, epoch: int) -> Any:
    checkpoint = store.get_checkpoint(db(), current_user(), job_id, epoch)
    path = store.checkpoint_file(checkpoint)
    response = send_file(path, mimetype="application/octet-stream", as_attachment=True,
                         download_name=f"job-{job_id}-epoch-{epoch:05d}.npz", etag=checkpoint.sha256)
    digest = base64.b64encode(bytes.fromhex(checkpoint.sha256)).decode()
    response.headers["Repr-Digest"] = f"sha-256=:{digest}:"
    return response


@bp.get("/<int:job_id>/events")
@bp.auth_required(auth)
@bp.input(EventsQuery, location="query")
@bp.output(EventList, description="Events in the order they happened.")
@bp.doc(summary="A job's events (state changes, log lines)", responses=[200, 401, 404, 422])
def events(job_id: int, query_data: EventsQuery) -> Any:
    rows, next_after_id = store.list_events(db(), current_user(), job_id, query_data.after_id, query_data.limit)
    return EventList.model_validate({"items": rows, "next_after_id": next_after_id})


@bp.post("/<int:job_id>/predict")
@bp.auth_required(auth)
@bp.input(PredictIn, location="json")
@bp.output(PredictOut, description="One output row per input row.")
@bp.doc(summary="Predict with a job's checkpoint", responses=[200, 401, 404, 409, 413, 422])
def predict(job_id: int, json_data: PredictIn) -> Any:
    settings = state().settings
    result = predictions.predict(db(), current_user(), job_id, json_data.inputs, json_data.checkpoint,
                                 settings.max_predict_rows, state().models)
    return PredictOut.model_validate(result)
