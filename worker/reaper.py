"""Recovering what the broker forgot: running jobs whose lease expired (their worker
died) go back to the queue, and queued jobs the broker never took are sent again.
Run by every worker in a background thread (and as a task for Celery beat)."""
from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import select

from service.config import Settings
from service.queue import Enqueuer, enqueue_pending
from service.store.jobs import add_event
from service.store.models import Job, utcnow

from .runner import sessions_for

log = logging.getLogger(__name__)

REAP_EVERY_S = 5.0
# a queued job the broker accepted but no worker started this long after is sent again
STALE_QUEUED_S = 120.0


def reap_once(settings: Settings) -> dict[str, int]:
    sessions = sessions_for(settings.database_url)
    enqueuer = Enqueuer(settings.broker_url, settings.broker_timeout_s)
    now = utcnow()
    requeued = stale = 0
    with sessions() as s:
        expired = s.scalars(select(Job).where(Job.status == "running", Job.lease_expires_at < now)).all()
        for job in expired:
            job.status, job.enqueued_at = "queued", None
            add_event(s, job, "state", f"lease of {job.lease_owner} expired; re-queued to resume from its "
                                       "last checkpoint")
            job.lease_owner, job.lease_expires_at = None, None
            requeued += 1
        old = s.scalars(select(Job).where(Job.status == "queued", Job.enqueued_at.is_not(None),
                                          Job.enqueued_at < now - timedelta(seconds=STALE_QUEUED_S))).all()
        for job in old:
            # sending a job twice is harmless: the lease lets only one delivery run it
            job.enqueued_at = None
            stale += 1
        s.commit()
        sent = enqueue_pending(s, enqueuer)
    if requeued or stale or sent:
        log.info("reaper: %s expired leases re-queued, %s stale, %s sent", requeued, stale, sent)
    return {"requeued": requeued, "stale": stale, "sent": sent}


class Reaper(threading.Thread):
    def __init__(self, settings: Settings, every_s: float = REAP_EVERY_S) -> None:
        super().__init__(daemon=True, name="reaper")
        self.settings, self.every_s = settings, every_s
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            try:
                reap_once(self.settings)
            except Exception:  # the database or broker is down: try again next round
                log.exception("reaper round failed")

    def stop(self) -> None:
        self._halt.set()
