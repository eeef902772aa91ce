"""/api/v1/jobs: submit, list, get, cancel, delete."""
from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import request, url_for

from ..queue import enqueue
from ..store import jobs as store
from ..store.errors import FieldProblem, Invalid
from .auth import auth, current_user
from .schemas import JobIn, JobList, JobOut, JobsQuery, job_dict
from .state import db, state

bp = APIBlueprint("jobs", __name__, url_prefix="/jobs", tag="Jobs")

IDEMPOTENCY_HEADER = "Idempotency-Key"


@bp.post("")
@bp.auth_required(auth)
@bp.input(JobIn, location="json")
@bp.output(JobOut, status_code=201, description="The job, queued (or the original one for a replayed "
                                                 "Idempotency-Key).")
@bp.doc(summary="Submit a training job", responses=[201, 401, 409, 413, 422])
def submit(json_data: Any) -> Any:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not (0 < len(key) <= 255):
        raise Invalid("Idempotency-Key must be 1 to 255 characters",
                      [FieldProblem(IDEMPOTENCY_HEADER, "1 to 255 characters")])
    data = json_data.model_dump() if hasattr(json_data, "model_dump") else dict(json_data)
    session = db()
    job, created = store.submit_job(session, current_user(), data["spec"], data["priority"], key, body=data,
                                    limits=state().settings.spec_limits)
    if created:
        enqueue(session, state().enqueuer, job)
    headers = {"Location": url_for("jobs.get_job", job_id=job.id)}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return job_dict(job), 201, headers


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
    return {"items": [job_dict(j) for j in jobs], "next_page_token": token}


@bp.get("/<int:job_id>")
@bp.auth_required(auth)
@bp.output(JobOut)
@bp.doc(summary="Get a job", responses=[200, 401, 404])
def get_job(job_id: int) -> Any:
    return job_dict(store.get_job(db(), current_user(), job_id))


@bp.post("/<int:job_id>/cancel")
@bp.auth_required(auth)
@bp.output(JobOut, status_code=202, description="Cancelled, or flagged to stop within one step if running.")
@bp.doc(summary="Cancel a job", responses=[202, 401, 404, 409])
def cancel(job_id: int) -> Any:
    return job_dict(store.cancel_job(db(), current_user(), job_id))


@bp.delete("/<int:job_id>")
@bp.auth_required(auth)
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a finished job and its artifacts", responses=[204, 401, 404, 409])
def delete(job_id: int) -> Any:
    store.delete_job(db(), current_user(), job_id, state().settings.artifact_dir)
    return "", 204
