"""/api/v1/jobs: submit, list, get, cancel, delete."""
from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import request, url_for

from ..shared.queue import enqueue
from ..store import jobs as store
from .auth import auth, current_user
from .schemas import JobIn, JobList, JobOut, JobsQuery
from .state import db, state

bp = APIBlueprint("jobs", __name__, url_prefix="/jobs", tag="Jobs")

IDEMPOTENCY_HEADER = "Idempotency-Key"

EXAMPLE_JOB = {"spec": {"name": "xor", "model": {"input_dim": 2, "layers": [{"units": 4, "activation": "tanh"},
                                                                         {"units": 1, "activation": "sigmoid"}]},
                        "loss": "binary_cross_entropy", "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9},
                        "data": {"dataset": "xor", "validation_split": 0.0}, "batch_size": "full", "epochs": 300,
                        "seed": 3},
               "priority": 0}


@bp.before_request
def _json_body_limit() -> None:
    # a job is a small JSON document: refuse large bodies (413) before they are parsed
    if request.method == "POST":
        settings = state().settings
        request.max_content_length = min(settings.max_json_bytes, settings.max_upload_bytes)


@bp.post("")
@bp.auth_required(auth)
@bp.input(JobIn, location="json", example=EXAMPLE_JOB)
@bp.output(JobOut, status_code=201, description="The job, queued (or the original one for a replayed "
                                                 "Idempotency-Key).")
@bp.doc(summary="Submit a training job",
        description="Send an `Idempotency-Key` header (1 to 255 characters) to make retries safe: the same key "
                    "with the same body returns the original job (header `Idempotent-Replayed: true`), with "
                    "another body a 422.",
        responses={201: {"description": "The job, queued (or, for a replayed Idempotency-Key, the original one)",
                         "headers": {"Location": {"description": "The job's URL", "required": True,
                                                  "schema": {"type": "string"}},
                                     "Idempotent-Replayed": {"description": "\"true\" when this is the original "
                                                             "job of a replayed Idempotency-Key",
                                                             "schema": {"type": "string", "enum": ["true"]}}}},
                   400: "The body is not JSON", 401: "No valid token",
                   403: "The job's checkpoints would not fit the user's quota (GET /api/v1/me shows it)",
                   409: "The same Idempotency-Key is being processed", 413: "The body is too large",
                   422: "Invalid job (every problem with its JSON path)"})
def submit(json_data: Any) -> Any:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    data = json_data.model_dump() if hasattr(json_data, "model_dump") else dict(json_data)
    session = db()
    job, created = store.submit_job(session, current_user(), data["spec"], data["priority"], key, body=data,
                                    limits=state().settings.spec_limits, budget=state().budget)
    if created:
        enqueue(session, state().enqueuer, job)
    headers = {"Location": url_for("jobs.get_job", job_id=job.id)}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return JobOut.model_validate(job), 201, headers


@bp.get("")
@bp.auth_required(auth)
@bp.input(JobsQuery, location="query")
@bp.output(JobList)
@bp.doc(summary="List jobs, newest first", responses=[200, 401, 422])
def list_jobs(query_data: Any) -> Any:
    q = query_data.model_dump() if hasattr(query_data, "model_dump") else dict(query_data)
    statuses = [s.strip() for s in q["status"].split(",") if s.strip()] if q.get("status") else None
    jobs, token = store.list_jobs(db(), current_user(), statuses, q.get("created_after"), q.get("created_before"),
                                  q["limit"], q.get("page_token"))
    return JobList.model_validate({"items": jobs, "next_page_token": token})


@bp.get("/<int:job_id>")
@bp.auth_required(auth)
@bp.output(JobOut)
@bp.doc(summary="Get a job", responses=[200, 401, 404])
def get_job(job_id: int) -> Any:
    return JobOut.model_validate(store.get_job(db(), current_user(), job_id))


@bp.post("/<int:job_id>/cancel")
@bp.auth_required(auth)
@bp.output(JobOut, status_code=202, description="Cancelled, or flagged to stop within one step if running.")
@bp.doc(summary="Cancel a job", responses=[202, 401, 404, 409])
def cancel(job_id: int) -> Any:
    return JobOut.model_validate(store.cancel_job(db(), current_user(), job_id))


@bp.delete("/<int:job_id>")
@bp.auth_required(auth)
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a finished job and its artifacts", responses=[204, 401, 404, 409])
def delete(job_id: int) -> Any:
    store.delete_job(db(), current_user(), job_id, state().settings.artifact_dir)
    return "", 204
