"""The one catalog of job statuses, and how a training outcome maps onto them.

Imports no SQLAlchemy, so the client, the CLI and the API schemas use the same names
as the store. Every transition
between these states is made by ``service.store.lifecycle``.
"""
from __future__ import annotations

from enum import StrEnum

from nncore.hooks import Outcome


class JobStatus(StrEnum):
    """Where a job is in its life. ``queued -> running -> succeeded | failed | cancelled``;
    a running job whose attempt fails or whose worker is lost goes back to ``queued``
    until its restarts are spent."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


#: terminal states: nothing changes a job in one of these again
FINISHED: tuple[JobStatus, ...] = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)

_DESCRIPTIONS = {
    JobStatus.QUEUED: "waiting for a worker (or for its next attempt, resumed from its last checkpoint)",
    JobStatus.RUNNING: "a worker holds its lease and is training it",
    JobStatus.SUCCEEDED: "trained to the end, or stopped early by early stopping",
    JobStatus.FAILED: "ended by an error, divergence, its time limit or too many lost workers; see its error",
    JobStatus.CANCELLED: "cancelled on request",
}


_OUTCOME_STATUS = {
    Outcome.COMPLETED: JobStatus.SUCCEEDED,
    Outcome.EARLY_STOPPED: JobStatus.SUCCEEDED,
    Outcome.DIVERGED: JobStatus.FAILED,
    Outcome.TIMED_OUT: JobStatus.FAILED,
    Outcome.STOPPED: JobStatus.CANCELLED,
}


def status_for(outcome: str) -> JobStatus:
    """The job status an attempt's training outcome (nncore's ``Outcome``, or its name
    from an MPI rank's summary) ends the job in. The only callback that stops training
    in the service is the cancel, so ``stopped`` means cancelled."""
    return _OUTCOME_STATUS[Outcome(outcome)]
