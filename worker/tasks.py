"""Thin tasks: stable names, ids as arguments, one call into the runner."""
from __future__ import annotations

import logging

from service.store.db import unreachable

from .celery_app import celery
from .runner import run_job as _run_job
from .runner import worker_identity

log = logging.getLogger(__name__)

#: seconds between tries of a claim while the database is unreachable
CLAIM_RETRY_S = 2.0


@celery.task(name="trainyard.run_job", bind=True, max_retries=None)
def run_job(self, job_id: int) -> str:
    try:
        return _run_job(int(job_id), celery.trainyard_settings, worker_identity())
    except Exception as exc:
        if not unreachable(exc):
            raise
        # the claim could not reach the database: the message must not be acked and
        # forgotten (the job would wait for the reaper's stale resend); send it again
        log.warning("job %s: the database is unreachable (%s); trying again in %g s", job_id,
                    type(exc).__name__, CLAIM_RETRY_S)
        raise self.retry(exc=exc, countdown=CLAIM_RETRY_S) from None


@celery.task(name="trainyard.reap")
def reap() -> dict[str, int]:
    from .reaper import reap_once

    return reap_once(celery.trainyard_settings)
