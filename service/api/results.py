"""/api/v1/jobs/<id>/...: a job's metrics, checkpoints, events and predictions."""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

from apiflask import APIBlueprint
from flask import Response, send_file

from nncore.onnx_export import OnnxUnavailable, to_onnx

from ..store import metrics as metrics_store
from ..store import predict as predictions
from ..store import results as store
from .auth import auth, current_user
from .errors import problem
from .schemas import (
    CheckpointList,
    EventList,
    EventsQuery,
    MetricsExportQuery,
    MetricsPage,
    MetricsQuery,
    OnnxExportQuery,
    PredictIn,
    PredictOut,
)
from .state import close_db, db, state

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
    page = MetricsPage.model_validate({"items": points, "next_page_token": token})
    # serialised by pydantic-core directly: 4-5x faster than a dict through json.dumps,
    # which is most of a job page's first load (thousands of buckets)
    return Response(page.model_dump_json(), mimetype="application/json")


@bp.get("/<int:job_id>/metrics.csv")
@bp.auth_required(auth)
@bp.input(MetricsExportQuery, location="query")
@bp.doc(summary="A job's raw metric points as CSV, streamed", responses={
    200: {"description": "name,step,epoch,value,time rows ordered by step, then name: every raw point kept.",
          "content": {"text/csv": {"schema": {"type": "string"}}}}, 401: "Authentication error", 404: "No such job"})
def metrics_csv(job_id: int, query_data: MetricsExportQuery) -> Any:
    names = [n.strip() for n in query_data.name.split(",") if n.strip()] if query_data.name else None
    store.get_job(db(), current_user(), job_id)  # a 404 before the first byte, not inside the stream
    sessions = state().sessions
    close_db()  # the export reads through a session of its own, as long as it takes

    def rows() -> Iterator[str]:
        yield "name,step,epoch,value,time\n"
        lines: list[str] = []
        with sessions() as session:
            for p in metrics_store.iter_points(session, job_id, names):
                lines.append(f"{p['name']},{p['step']},{p['epoch']},{p['value']!r},{p['time']:.3f}\n")
                if len(lines) >= 4096:
                    yield "".join(lines)
                    lines = []
        yield "".join(lines)

    return Response(rows(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="job-{job_id}-metrics.csv"'})


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


_ONNX_DOWNLOAD = {
    "description": "The checkpoint's model as an ONNX graph: input `input` (float32, [N, n_features], raw "
                   "features), output `output` (float32, [N, n_outputs]) equal to predict's outputs; the input "
                   "standardisation and the output activation are in the graph.",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    "headers": {
        "Repr-Digest": {"description": "sha-256 of the ONNX file (RFC 9530).", "schema": {"type": "string"}},
        "Model-Inputs": {"description": "n_features: the width of `input`.", "schema": {"type": "integer"}},
        "Model-Outputs": {"description": "The width of `output`.", "schema": {"type": "integer"}}},
}


@bp.get("/<int:job_id>/checkpoints/<int:epoch>/model.onnx")
@bp.auth_required(auth)
@bp.input(OnnxExportQuery, location="query")
@bp.doc(summary="Export a checkpoint's model to ONNX", responses={
    200: _ONNX_DOWNLOAD, 401: "Authentication error", 404: "No such job, checkpoint, or checkpoint file",
    409: "The checkpoint file does not match its recorded sha256, or cannot be loaded",
    422: "Validation error",
    501: "The server lacks the optional packages onnx and onnxruntime, or the model has a layer or "
         "activation the exporter does not know"})
def export_onnx(job_id: int, epoch: int, query_data: OnnxExportQuery) -> Any:
    checkpoint = store.get_checkpoint(db(), current_user(), job_id, epoch)
    path = store.checkpoint_file(checkpoint)
    best = query_data.best_params
    # verified against the recorded sha256 (409 otherwise), through predict's model cache
    loaded = state().models.get(path, checkpoint.sha256, best)
    try:
        data = to_onnx(loaded.model)
    except OnnxUnavailable as exc:
        return problem(501, "ONNX export unavailable", f"{exc} (on the server)")
    except NotImplementedError as exc:
        return problem(501, "ONNX export unavailable", str(exc))
    name = f"job-{job_id}-epoch-{epoch}{'-best' if best else ''}.onnx"
    net = loaded.model.net
    return Response(data, mimetype="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{name}"',
        "Repr-Digest": f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:",
        "Model-Inputs": str(net.input_dim), "Model-Outputs": str(net.output_dim)})


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
