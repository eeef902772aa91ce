"""/api/v1/meta: what this server is and accepts (version, job statuses, limits, the
metric series catalog), so clients such as the dashboard need not hard-code it. No
token needed, like /health."""
from __future__ import annotations

from importlib.metadata import version
from typing import Any

from apiflask import APIBlueprint

from nncore.series import CATALOG

from ..store.status import JobStatus
from .schemas import Meta
from .state import state

bp = APIBlueprint("meta", __name__, tag="Meta")


@bp.get("/meta")
@bp.output(Meta, description="The server's version, the job statuses and its limits.")
@bp.doc(summary="Version, job statuses and limits of this server")
def meta() -> Any:
    settings = state().settings
    return Meta.model_validate({"version": version("trainyard"), "job_statuses": list(JobStatus),
                                "limits": {**settings.spec_limits, "max_upload_bytes": settings.max_upload_bytes,
                                           "max_predict_rows": settings.max_predict_rows,
                                           "max_dataset_cells": settings.max_dataset_cells,
                                           "job_memory_bytes": settings.job_memory_bytes,
                                           "job_checkpoint_bytes": settings.job_checkpoint_bytes,
                                           "user_quota_bytes": settings.user_quota_bytes or None},
                               "series": [entry.as_dict() for entry in CATALOG]})
