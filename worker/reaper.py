"""Recovering what the broker forgot: running jobs whose lease expired (their worker
died or froze) are handed on by ``lifecycle.requeue_expired`` (back to the queue, or
failed once their restarts are spent), and queued jobs the broker never delivered are
sent again. Run by every worker in a background thread (and as a task for Celery
beat); any number of reapers may run at once."""
from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import update

from service.shared.queue import Enqueuer, enqueue_pending
from service.shared.settings import Settings
from service.store import lifecycle
from service.store.models import Job, utcnow
from service.store.results import prune_unlisted
from service.store.status import JobStatus

from .runner import checkpoint_dir, sessions_for

log = logging.getLogger(__name__)

REAP_EVERY_S = 5.0
# a queued job the broker accepted but no worker started this long after is sent again
STALE_QUEUED_S = 120.0


def reap_once(settings: Settings) -> dict[str, int]:
    sessions = sessions_for(settings.database_url)
    now = utcnow()
    with sessions() as s:
        moved = lifecycle.requeue_expired(s, now)
        for job_id, status in moved:
            if status.finished:
                prune_unlisted(s, job_id, checkpoint_dir(settings, job_id))
        # sending a job twice is harmless: the lease lets only one delivery run it
        stale = s.execute(update(Job).where(Job.status == JobStatus.QUEUED, Job.enqueued_at.is_not(None),
                                            Job.enqueued_at < now - timedelta(seconds=STALE_QUEUED_S))
                          .values(enqueued_at=None).execution_options(synchronize_session=False)).rowcount
        s.commit()
        sent = enqueue_pending(s, Enqueuer(settings.broker_url, settings.broker_timeout_s))
    requeued = sum(1 for _, status in moved if status is JobStatus.QUEUED)
    if moved or stale or sent:
        log.info("reaper: %s expired leases handed on (%s re-queued), %s stale, %s sent", len(moved), requeued,
                 stale, sent)
    return {"requeued": requeued, "ended": len(moved) - requeued, "stale": stale, "sent": sent}


class Reaper(threading.Thread):
    def __init__(self, settings: Settings, every_s: float = REAP_EVERY_S) -> None:
        super().__init__(daemon=True, name="reaper")
        self.settings, self.every_s = settings, every_s
        self._halt = threading.Event()

    def run(self) -> None:
        failing = False
        while not self._halt.wait(self.every_s):
            try:
                reap_once(self.settings)
                failing = False
            except Exception as exc:  # the database or broker is down: try again next round
                if not failing:
                    log.warning("reaper round failed (%s: %s); retrying every %g s", type(exc).__name__, exc,
                                self.every_s)
                failing = True

    def stop(self) -> None:
        self._halt.set()
