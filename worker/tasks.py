"""Thin tasks: stable names, ids as arguments, one call into the runner."""
from __future__ import annotations

from .celery_app import celery
from .runner import run_job as _run_job
from .runner import worker_identity


@celery.task(name="trainyard.run_job")
def run_job(job_id: int) -> str:
    return _run_job(int(job_id), celery.trainyard_settings, worker_identity())


@celery.task(name="trainyard.reap")
def reap() -> dict[str, int]:
    from .reaper import reap_once

    return reap_once(celery.trainyard_settings)
