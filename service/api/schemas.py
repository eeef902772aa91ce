"""Request and response models (Pydantic), which APIFlask validates and documents."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..store.models import Job


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: dict[str, Any] = Field(description="The job spec (see the README): model, loss, optimizer, data, ...")
    priority: int = Field(0, ge=-100, le=100, description="Higher runs first.")


class JobsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str | None = Field(None, max_length=100,
                               description="Comma-separated: queued,running,succeeded,failed,cancelled")
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = Field(50, ge=1, le=200)
    page_token: str | None = Field(None, max_length=200)


class JobOut(BaseModel):
    id: int
    name: str | None
    owner: str
    status: str
    priority: int
    attempts: int
    cancel_requested: bool
    progress: dict[str, Any] | None
    error: str | None
    result: dict[str, Any] | None
    dataset_id: int | None
    spec: dict[str, Any]
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str


class JobList(BaseModel):
    items: list[JobOut]
    next_page_token: str | None


class Health(BaseModel):
    status: str
    database: str
    broker: str


def iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def job_dict(job: Job) -> dict[str, Any]:
    return {"id": job.id, "name": job.name, "owner": job.owner.name, "status": job.status,
            "priority": job.priority, "attempts": job.attempts, "cancel_requested": job.cancel_requested,
            "progress": job.progress, "error": job.error, "result": job.result, "dataset_id": job.dataset_id,
            "spec": job.spec, "created_at": iso(job.created_at), "started_at": iso(job.started_at),
            "finished_at": iso(job.finished_at), "updated_at": iso(job.updated_at)}
