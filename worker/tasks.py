"""Thin tasks: stable names, ids as arguments, one call into the runner."""
from __future__ import annotations

import logging
import time

from service.store.db import unreachable

from .celery_app import celery
from .runner import run_job as _run_job
from .runner import worker_identity

log = logging.getLogger(__name__)

#: seconds between tries of a claim while the database is unreachable
CLAIM_RETRY_S = 1.0
#: how long a delivery waits for the database in place before it is sent again
CLAIM_PATIENCE_S = 120.0


@celery.task(name="trainyard.run_job", bind=True, max_retries=None)
def run_job(self, job_id: int) -> str:
    # While the database is down nothing can train, so the delivery waits here (its
    # message unacknowledged: a worker that dies meanwhile gives it back) and claims the
    # job the moment the database answers. Acking it and forgetting would leave the job
    # to the reaper's stale resend; a Celery retry would wait on the worker's ETA timer.
    deadline = time.monotonic() + CLAIM_PATIENCE_S
    waiting = False
    while True:
        try:
            return _run_job(int(job_id), celery.trainyard_settings, worker_identity())
        except Exception as exc:
            if not unreachable(exc):
                raise
            if time.monotonic() > deadline:
                raise self.retry(exc=exc, countdown=CLAIM_RETRY_S) from None
            if not waiting:
                log.warning("job %s: the database is unreachable (%s); trying again every %g s", job_id,
                            type(exc).__name__, CLAIM_RETRY_S)
                waiting = True
            time.sleep(CLAIM_RETRY_S)


@celery.task(name="trainyard.reap")
def reap() -> dict[str, int]:
    from .reaper import reap_once

    return reap_once(celery.trainyard_settings)
