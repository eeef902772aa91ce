"""The worker's side of the lifecycle, in this process on real SQLite and PostgreSQL: the
lease kept alive by the heartbeat, a lost lease noticed and writes stopped, writes
retried through an unreachable database until the lease must have expired, the
Reporter's rows and progress, and the reaper handing on an expired lease and pruning
what a dead attempt left behind."""
from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from nncore.hooks import StepLog
from service.shared.settings import Settings
from service.store import lifecycle
from service.store.db import make_engine, make_sessionmaker
from service.store.lifecycle import LeaseLost
from service.store.metrics import iter_points
from service.store.models import Checkpoint, Job, utcnow
from tests.inprocess import queued_job, store_sessions
from worker.attempt import Attempt, Reporter


@pytest.fixture
def db(db_template, tmp_path) -> Iterator[tuple[str, object]]:
    with store_sessions(db_template, tmp_path) as made:
        yield made


new_job = queued_job


def start(sessions, job_id: int, lease_s: float) -> Attempt:
    with sessions() as s:
        lease = lifecycle.claim(s, job_id, "w1", lease_s)
    return Attempt(sessions, lease, lease_s).start()


def wait_for(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_the_heartbeat_keeps_a_short_lease_alive_and_hears_a_cancel(db):
    _, sessions = db
    job_id = new_job(sessions)
    attempt = start(sessions, job_id, lease_s=0.6)
    try:
        time.sleep(1.5)  # more than two leases: only renewals keep it
        with sessions() as s:
            job = s.get(Job, job_id)
            assert job.status == "running" and job.lease_expires_at > utcnow()
            lifecycle.cancel(s, job_id)
        assert wait_for(attempt.cancel.is_set, 2.0)
        assert not attempt.lost.is_set()
    finally:
        attempt.stop()


def test_a_lease_taken_over_is_noticed_and_every_later_write_refused(db):
    _, sessions = db
    job_id = new_job(sessions)
    attempt = start(sessions, job_id, lease_s=0.9)
    attempt.stop()  # frozen: no more renewals
    time.sleep(1.0)
    with sessions() as s:
        lifecycle.requeue_expired(s)
        assert lifecycle.claim(s, job_id, "w2", 30) is not None
    attempt = Attempt(sessions, attempt.lease, 0.9).start()  # woken up, still holding attempt 1
    try:
        assert wait_for(attempt.lost.is_set, 3.0), "the heartbeat finds the lease gone"
        with pytest.raises(LeaseLost):
            attempt.write(lambda s: lifecycle.set_progress(s, attempt.lease, {"epoch": 1}))
        reporter = Reporter(attempt, epochs=1, steps_per_epoch=1)
        with pytest.raises(LeaseLost):
            reporter.should_stop(None)
        reporter.close()
    finally:
        attempt.stop()
    with sessions() as s:
        assert s.get(Job, job_id).progress is None


def test_writes_are_retried_through_an_unreachable_database_until_the_lease_must_have_expired(db, tmp_path):
    _, sessions = db
    job_id = new_job(sessions)
    with sessions() as s:
        lease = lifecycle.claim(s, job_id, "w1", 1.0)
    # a database that cannot be opened (its folder is gone): every try fails as an outage does
    gone = make_engine(f"sqlite:///{tmp_path / 'gone' / 'x.sqlite'}")
    (tmp_path / "gone" / "x.sqlite").parent.rmdir()
    calls = []

    def write(s):
        calls.append(time.monotonic())
        s.execute(select(1))

    attempt = Attempt(make_sessionmaker(gone), lease, 1.0)
    t0 = time.monotonic()
    with pytest.raises(LeaseLost, match="unreachable until it expired"):
        attempt.write(write, "test write")
    assert 0.9 <= time.monotonic() - t0 < 3.0 and len(calls) >= 2, calls
    assert attempt.lost.is_set()
    gone.dispose()


def test_the_reporter_writes_steps_epochs_and_progress_through_the_fence(db):
    _, sessions = db
    job_id = new_job(sessions)
    attempt = start(sessions, job_id, lease_s=30)
    reporter = Reporter(attempt, epochs=2, steps_per_epoch=2)
    try:
        for step in (1, 2):
            reporter.on_step(None, StepLog(step, 0, step - 1, 0.5 / step, 0.1, 4, grad_norm=1.5))
        reporter.on_epoch(None, {"epoch": 1, "step": 2, "loss": 0.4, "lr": 0.1, "val_loss": 0.6, "time": 0.1})
        assert reporter.should_stop(None) is None
        reporter.flush()
    finally:
        attempt.stop()
    with sessions() as s:
        rows = [(p["name"], p["step"], p["value"]) for p in iter_points(s, job_id, None)]
        progress = s.get(Job, job_id).progress
    names = {(n, st) for n, st, _ in rows}
    assert {("loss", 1), ("loss", 2), ("lr", 1), ("grad_norm", 2), ("epoch_loss", 2), ("val_loss", 2),
            ("epoch_lr", 2)} <= names
    assert dict(((n, st), v) for n, st, v in rows)[("loss", 2)] == 0.25
    assert progress["epoch"] == 1 and progress["step"] == 2 and progress["metrics"]["val_loss"] == 0.6


def test_the_reaper_hands_on_an_expired_lease_and_prunes_a_failed_jobs_orphans(db, tmp_path):
    from worker.reaper import reap_once
    from worker.runner import checkpoint_dir

    url, sessions = db
    settings = Settings(database_url=url, broker_url=f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
                        artifact_dir=tmp_path / "artifacts")
    again, spent = new_job(sessions, max_restarts=1), new_job(sessions, max_restarts=0)
    past = utcnow() - timedelta(seconds=60)
    with sessions() as s:
        for job_id in (again, spent):
            lifecycle.claim(s, job_id, "dead", 5, now=past)
    orphan = checkpoint_dir(settings, spent) / "epoch-00003-a1.npz"  # written, then the worker died
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"x")
    counts = reap_once(settings)
    assert counts["requeued"] == 1 and counts["ended"] == 1 and counts["sent"] >= 1
    with sessions() as s:
        a, b = s.get(Job, again), s.get(Job, spent)
        assert (a.status, a.lost_attempts, a.enqueued_at is not None) == ("queued", 1, True)
        assert b.status == "failed" and "lost 1 time " in b.error
        assert s.scalar(select(func.count()).select_from(Checkpoint)) == 0
    assert not orphan.exists()
    assert reap_once(settings)["requeued"] == 0  # nothing is handed on twice
