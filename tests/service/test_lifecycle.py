"""Every transition of ``service.store.lifecycle`` and its races, on SQLite and PostgreSQL.

The clock is passed in (``now``), so leases expire when the test says. Races are run
for real: two sessions on two threads, released together by a barrier.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.store import lifecycle
from service.store.errors import Conflict
from service.store.lifecycle import Lease, LeaseLost
from service.store.metrics import point_count
from service.store.models import Checkpoint, Event, Job, utcnow
from service.store.results import drop_checkpoint, reconcile_checkpoints, write_checkpoint, write_points
from service.store.status import FINISHED, JobStatus
from tests.inprocess import queued_job, store_sessions

LEASE_S = 10.0


@pytest.fixture
def sessions(db_template, tmp_path) -> Iterator[Callable[[], Session]]:
    with store_sessions(db_template, tmp_path) as (_url, made):
        yield made


new_job = queued_job


def row(sessions, job_id: int) -> Job:
    with sessions() as s:
        return s.get(Job, job_id)


def events(sessions, job_id: int) -> list[str]:
    with sessions() as s:
        return list(s.scalars(select(Event.message).where(Event.job_id == job_id).order_by(Event.id)))


def claim(sessions, job_id: int, owner: str = "w1", now=None) -> Lease | None:
    with sessions() as s:
        return lifecycle.claim(s, job_id, owner, LEASE_S, now)


def race(*calls: Callable[[], object]) -> list[object]:
    """Run the calls at once on threads; their results (or exceptions) in order."""
    barrier = threading.Barrier(len(calls))
    out: list[object] = [None] * len(calls)

    def run(i: int, call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            out[i] = call()
        except Exception as exc:  # returned, so the test sees which call lost and how
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


# -- claim --------------------------------------------------------------------------------

def test_claim_starts_attempt_one_with_a_lease_and_an_event(sessions):
    job_id = new_job(sessions)
    now = utcnow()
    lease = claim(sessions, job_id, now=now)
    assert lease == Lease(job_id, 1, "w1", now + timedelta(seconds=LEASE_S))
    job = row(sessions, job_id)
    assert (job.status, job.attempts, job.lease_owner) == ("running", 1, "w1")
    assert job.lease_expires_at == lease.expires_at and job.started_at == now
    assert events(sessions, job_id) == ["running (attempt 1) on w1"]
    assert claim(sessions, job_id, "w2") is None  # a second delivery is dropped
    assert row(sessions, job_id).lease_owner == "w1"


def test_two_sessions_claiming_one_job_one_wins(sessions):
    for _ in range(5):
        job_id = new_job(sessions)
        results = race(lambda j=job_id: claim(sessions, j, "w1"), lambda j=job_id: claim(sessions, j, "w2"))
        won = [r for r in results if isinstance(r, Lease)]
        assert len(won) == 1 and results.count(None) == 1, results
        job = row(sessions, job_id)
        assert job.attempts == 1 and job.lease_owner == won[0].owner
        assert len(events(sessions, job_id)) == 1


# -- renew ---------------------------------------------------------------------------------

def test_renew_extends_a_live_lease_and_reports_a_cancel(sessions):
    job_id = new_job(sessions)
    t0 = utcnow()
    lease = claim(sessions, job_id, now=t0)
    with sessions() as s:
        renewed, cancel = lifecycle.renew(s, lease, LEASE_S, t0 + timedelta(seconds=5))
    assert renewed.expires_at == t0 + timedelta(seconds=5 + LEASE_S) and cancel is False
    assert row(sessions, job_id).lease_expires_at == renewed.expires_at
    with sessions() as s:
        assert lifecycle.cancel(s, job_id) is JobStatus.RUNNING
        assert lifecycle.renew(s, renewed, LEASE_S, t0 + timedelta(seconds=6))[1] is True


def test_renew_after_expiry_is_refused_even_if_nobody_took_the_job(sessions):
    job_id = new_job(sessions)
    t0 = utcnow()
    lease = claim(sessions, job_id, now=t0)
    with sessions() as s, pytest.raises(LeaseLost):
        lifecycle.renew(s, lease, LEASE_S, t0 + timedelta(seconds=LEASE_S + 0.001))
    assert row(sessions, job_id).lease_expires_at == lease.expires_at


# -- cancel ---------------------------------------------------------------------------------

def test_cancel_a_queued_job_at_once_and_a_finished_one_never(sessions):
    job_id = new_job(sessions)
    with sessions() as s:
        assert lifecycle.cancel(s, job_id) is JobStatus.CANCELLED
    assert claim(sessions, job_id) is None
    with sessions() as s, pytest.raises(Conflict, match="already finished"):
        lifecycle.cancel(s, job_id)
    assert events(sessions, job_id) == ["cancelled before it started"]


def test_cancel_racing_a_claim_ends_cancelled_either_way(sessions):
    for _ in range(6):
        job_id = new_job(sessions)

        def cancel(job_id: int = job_id) -> JobStatus:
            with sessions() as s:
                return lifecycle.cancel(s, job_id)

        lease, status = race(lambda j=job_id: claim(sessions, j), cancel)
        job = row(sessions, job_id)
        if lease is None:  # the cancel came first: the claim found nothing to take
            assert status is JobStatus.CANCELLED and job.status == "cancelled" and job.attempts == 0
        else:  # the claim came first: the attempt is told to stop, and stopping ends it cancelled
            assert status is JobStatus.RUNNING and job.cancel_requested
            with sessions() as s:
                lifecycle.finish(s, lease, JobStatus.CANCELLED)
            assert row(sessions, job_id).status == "cancelled"


def test_a_cancel_requested_during_a_failed_attempt_wins_over_the_retry(sessions):
    job_id = new_job(sessions)
    lease = claim(sessions, job_id)
    with sessions() as s:
        lifecycle.cancel(s, job_id)
        assert lifecycle.retry_or_fail(s, lease, "boom", max_restarts=2) is JobStatus.CANCELLED
    assert row(sessions, job_id).status == "cancelled" and row(sessions, job_id).finished_at is not None


# -- finish, retry, fail ------------------------------------------------------------------------

def test_finish_ends_the_job_and_clears_the_lease(sessions):
    job_id = new_job(sessions)
    lease = claim(sessions, job_id)
    with sessions() as s:
        lifecycle.finish(s, lease, JobStatus.SUCCEEDED, result={"epochs": 3})
        with pytest.raises(ValueError, match="terminal"):
            lifecycle.finish(s, lease, JobStatus.QUEUED)
    job = row(sessions, job_id)
    assert (job.status, job.lease_owner, job.lease_expires_at, job.result) == ("succeeded", None, None,
                                                                              {"epochs": 3})
    assert events(sessions, job_id)[-1] == "succeeded"
    with sessions() as s, pytest.raises(LeaseLost):  # terminal states are final
        lifecycle.finish(s, lease, JobStatus.FAILED, "late")
    assert row(sessions, job_id).status == "succeeded"


def test_failed_attempts_are_retried_until_max_restarts_then_fail(sessions):
    job_id = new_job(sessions, max_restarts=1)
    lease = claim(sessions, job_id)
    with sessions() as s:
        assert lifecycle.retry_or_fail(s, lease, "boom 1", max_restarts=1) is JobStatus.QUEUED
    assert row(sessions, job_id).status == "queued"
    lease = claim(sessions, job_id)
    assert lease.attempt == 2
    with sessions() as s:
        assert lifecycle.retry_or_fail(s, lease, "boom 2", max_restarts=1) is JobStatus.FAILED
    job = row(sessions, job_id)
    assert (job.status, job.error, job.attempts) == ("failed", "boom 2", 2)
    assert claim(sessions, job_id) is None


def test_a_permanent_failure_is_not_retried(sessions):
    job_id = new_job(sessions, max_restarts=5)
    lease = claim(sessions, job_id)
    with sessions() as s:
        assert lifecycle.retry_or_fail(s, lease, "bad spec", 5, permanent=True) is JobStatus.FAILED


# -- the reaper ------------------------------------------------------------------------------

def test_an_expired_lease_is_requeued_once_by_two_reapers(sessions):
    for _ in range(4):
        job_id = new_job(sessions)
        t0 = utcnow()
        claim(sessions, job_id, now=t0)
        later = t0 + timedelta(seconds=LEASE_S + 1)

        def reap(job_id: int = job_id, later=later) -> list:
            with sessions() as s:
                return lifecycle.requeue_expired(s, later, job_ids=[job_id])

        first, second = race(reap, reap)
        assert sorted([first, second], key=len) == [[], [(job_id, JobStatus.QUEUED)]], (first, second)
        job = row(sessions, job_id)
        assert (job.status, job.attempts, job.lost_attempts, job.lease_owner) == ("queued", 1, 1, None)
        assert sum("expired" in m for m in events(sessions, job_id)) == 1


def test_a_reaper_never_undoes_a_claim_that_landed_after_it_read(sessions):
    job_id = new_job(sessions)
    t0 = utcnow()
    claim(sessions, job_id, now=t0)
    later = t0 + timedelta(seconds=LEASE_S + 1)
    with sessions() as slow:
        seen = lifecycle.expired(slow, later)  # this reaper reads attempt 1 as expired ...
        slow.commit()
        with sessions() as s:  # ... meanwhile another reaper hands it on and a worker claims it
            assert lifecycle.requeue_expired(s, later) == [(job_id, JobStatus.QUEUED)]
        fresh = claim(sessions, job_id, "w2", now=later)
        assert [c.id for c in seen] == [job_id] and fresh.attempt == 2
        # ... then it acts on what it read: its guard finds attempt 2 and changes nothing
        assert lifecycle.hand_on(slow, seen[0], later + timedelta(seconds=2 * LEASE_S)) is None
        slow.commit()
    job = row(sessions, job_id)
    assert (job.status, job.attempts, job.lease_owner, job.lost_attempts) == ("running", 2, "w2", 1)


def test_two_reapers_acting_on_the_same_read_move_the_job_once(sessions):
    job_id = new_job(sessions)
    t0 = utcnow()
    claim(sessions, job_id, now=t0)
    later = t0 + timedelta(seconds=LEASE_S + 1)
    with sessions() as a:
        seen = lifecycle.expired(a, later)
        a.commit()

    def hand_on() -> JobStatus | None:
        with sessions() as s:
            status = lifecycle.hand_on(s, seen[0], later)
            s.commit()
            return status

    assert hand_on() is JobStatus.QUEUED
    assert hand_on() is None
    assert row(sessions, job_id).lost_attempts == 1


def test_a_job_whose_worker_keeps_dying_fails_after_max_restarts_saying_so(sessions):
    job_id = new_job(sessions, max_restarts=1)
    now = utcnow()
    for attempt in (1, 2):
        lease = claim(sessions, job_id, now=now)
        assert lease is not None and lease.attempt == attempt
        now += timedelta(seconds=LEASE_S + 1)  # the worker is killed: no renewal
        with sessions() as s:
            moved = lifecycle.requeue_expired(s, now)
        assert moved == [(job_id, JobStatus.QUEUED if attempt == 1 else JobStatus.FAILED)]
    job = row(sessions, job_id)
    assert job.status == "failed" and job.attempts == 2 and job.lost_attempts == 2
    assert job.error == "its worker was lost 2 times (attempt 2 of 2 allowed by max_restarts=1)"
    assert claim(sessions, job_id, now=now) is None


def test_a_redelivery_of_an_expired_job_resumes_it_through_the_same_rules(sessions):
    job_id = new_job(sessions, max_restarts=0)
    t0 = utcnow()
    claim(sessions, job_id, now=t0)
    # attempt 1 of 1 lost: a delivery arriving after expiry must fail it, not start attempt 2
    assert claim(sessions, job_id, "w2", now=t0 + timedelta(seconds=LEASE_S + 1)) is None
    assert row(sessions, job_id).status == "failed"


# -- fencing ------------------------------------------------------------------------------------

def zombie_and_successor(sessions) -> tuple[int, Lease, Lease]:
    job_id = new_job(sessions)
    t0 = utcnow() - timedelta(seconds=2 * LEASE_S)  # attempt 1 began (and froze) in the past
    stale = claim(sessions, job_id, "frozen", now=t0)
    with sessions() as s:
        lifecycle.requeue_expired(s)
    live = claim(sessions, job_id, "w2")
    return job_id, stale, live


def test_no_write_of_a_fenced_attempt_lands(sessions, tmp_path):
    job_id, stale, live = zombie_and_successor(sessions)
    path = tmp_path / "epoch-00001-a1.npz"
    path.write_bytes(b"x")
    writes = {
        "points": lambda s: write_points(s, stale, [("loss", 1, 1, 0.5)]),
        "checkpoint": lambda s: write_checkpoint(s, stale, 1, 1, path, "0" * 64, {}, True),
        "event": lambda s: lifecycle.add_event(s, stale, "log", "zombie"),
        "progress": lambda s: lifecycle.set_progress(s, stale, {"epoch": 99}),
        "finish": lambda s: lifecycle.finish(s, stale, JobStatus.SUCCEEDED),
        "retry": lambda s: lifecycle.retry_or_fail(s, stale, "zombie", 2),
        "renew": lambda s: lifecycle.renew(s, stale, LEASE_S),
        "drop": lambda s: drop_checkpoint(s, stale, 1),
    }
    for write in writes.values():
        with sessions() as s, pytest.raises(LeaseLost):
            write(s)
    with sessions() as s:
        assert point_count(s, job_id) == 0
        assert s.scalar(select(func.count()).select_from(Checkpoint).where(Checkpoint.job_id == job_id)) == 0
    job = row(sessions, job_id)
    assert (job.status, job.attempts, job.lease_owner, job.progress) == ("running", 2, "w2", None)
    assert "zombie" not in " ".join(events(sessions, job_id))
    # the live attempt's writes land
    with sessions() as s:
        write_points(s, live, [("loss", 1, 1, 0.5)])
        lifecycle.set_progress(s, live, {"epoch": 1})
    assert row(sessions, job_id).progress == {"epoch": 1}


def test_retention_unlists_before_the_file_goes_and_reconcile_removes_orphans(sessions, tmp_path):
    job_id = new_job(sessions)
    lease = claim(sessions, job_id)
    files = {}
    for epoch in (1, 2, 3):
        files[epoch] = tmp_path / f"epoch-{epoch:05d}-a1.npz"
        files[epoch].write_bytes(b"x")
        with sessions() as s:
            write_checkpoint(s, lease, epoch, epoch, files[epoch], "0" * 64, {"loss": 1.0 / epoch}, epoch == 2)
    with sessions() as s:
        assert drop_checkpoint(s, lease, 1) == str(files[1])
        # the row is gone while its file is still there: a crash now leaves an orphan file, never a dead row
        assert s.scalar(select(func.count()).select_from(Checkpoint).where(Checkpoint.epoch == 1)) == 0
    assert files[1].exists()
    orphan = tmp_path / "epoch-00004-a1.npz"  # written, then the worker died before its row
    orphan.write_bytes(b"x")
    with sessions() as s:
        removed = reconcile_checkpoints(s, lease, tmp_path, keep={2, 3})
    assert sorted(removed) == sorted([files[1], orphan])
    with sessions() as s:
        epochs = sorted(s.scalars(select(Checkpoint.epoch).where(Checkpoint.job_id == job_id)))
        best = s.scalar(select(Checkpoint.epoch).where(Checkpoint.is_best.is_(True)))
    assert epochs == [2, 3] and best == 2
    with sessions() as s:
        reconcile_checkpoints(s, lease, tmp_path, keep={3})
        assert sorted(s.scalars(select(Checkpoint.epoch).where(Checkpoint.job_id == job_id))) == [3]
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == [files[3].name]


def test_every_training_outcome_ends_the_job_in_one_status():
    from nncore.hooks import Outcome
    from service.store.status import status_for

    expected = {"completed": "succeeded", "early_stopped": "succeeded", "diverged": "failed",
                "timed_out": "failed", "stopped": "cancelled"}
    assert {o.value: status_for(o).value for o in Outcome} == expected
    assert status_for("early_stopped") is JobStatus.SUCCEEDED  # the name an MPI rank's summary carries


def test_statuses_are_one_catalog():
    assert [s.value for s in JobStatus] == ["queued", "running", "succeeded", "failed", "cancelled"]
    assert {s for s in JobStatus if s.finished} == set(FINISHED) == {JobStatus.SUCCEEDED, JobStatus.FAILED,
                                                                     JobStatus.CANCELLED}
    assert all(s.description for s in JobStatus)
