"""A state machine drives one job through random interleavings of claim, renew, the
clock, cancel, finish, failure, the reaper and a zombie's writes by three simulated
workers, on SQLite and PostgreSQL, and checks after every step:

- never two live leases, and an attempt number is never handed out twice;
- a write lands exactly when its attempt holds the lease (a fenced write never lands);
- attempts <= max_restarts + 1;
- a terminal state is final;
- every change of state or attempt comes with an event.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from service.store import lifecycle
from service.store.db import make_engine, make_sessionmaker
from service.store.errors import Conflict
from service.store.lifecycle import LeaseLost
from service.store.metrics import point_count
from service.store.models import Event, Job, User, utcnow
from service.store.results import write_points
from service.store.status import FINISHED, JobStatus

LEASE_S = 10.0
WORKERS = ("w0", "w1", "w2")
worker = st.sampled_from(WORKERS)


def make_machine(sessions):
    class Lifecycle(RuleBasedStateMachine):
        @initialize(max_restarts=st.integers(0, 2))
        def first_job(self, max_restarts):
            self.now = utcnow()
            self.new_job(max_restarts)

        # a job ends quickly (one cancel of a queued job does it): go on with a new one, so
        # long examples keep exploring instead of poking a finished job
        @precondition(lambda self: self.last[0] in FINISHED)
        @rule(max_restarts=st.integers(0, 2))
        def new_job(self, max_restarts):
            self.leases: dict[str, lifecycle.Lease] = {}
            self.handed_out: list[int] = []
            self.max_restarts = max_restarts
            with sessions() as s:
                self.points = point_count(s)
                owner = s.scalar(select(User.id).where(User.name == "alice"))
                job = Job(owner_id=owner, spec={}, status=JobStatus.QUEUED, max_restarts=max_restarts,
                          created_at=self.now)
                s.add(job)
                s.commit()
                self.job_id = job.id
            self.last = self.snapshot()

        # -- what the database says -------------------------------------------------------
        def snapshot(self) -> tuple[str, int, int]:
            with sessions() as s:
                job = s.get(Job, self.job_id)
                n_events = s.scalar(select(func.count()).select_from(Event).where(Event.job_id == self.job_id))
                return job.status, job.attempts, n_events

        def holds(self, lease: lifecycle.Lease) -> bool:
            with sessions() as s:
                job = s.get(Job, self.job_id)
                return (job.status == JobStatus.RUNNING and job.attempts == lease.attempt
                        and job.lease_expires_at > self.now)

        def fenced(self, w: str, write) -> None:
            """Run a write of ``w``'s attempt; it must land exactly when it holds the lease."""
            lease = self.leases.get(w)
            if lease is None:
                return
            live = self.holds(lease)
            try:
                with sessions() as s:
                    write(s, lease)
                landed = True
            except LeaseLost:
                landed = False
            assert landed == live, (w, lease, live)

        # -- the rules ---------------------------------------------------------------------
        @rule(w=worker)
        def claim(self, w):
            with sessions() as s:
                lease = lifecycle.claim(s, self.job_id, w, LEASE_S, self.now)
            if lease is not None:
                assert lease.attempt not in self.handed_out
                self.handed_out.append(lease.attempt)
                self.leases[w] = lease

        @rule(w=worker)
        def renew(self, w):
            def renew(s, lease):
                self.leases[w] = lifecycle.renew(s, lease, LEASE_S, self.now)[0]
            self.fenced(w, renew)

        # the times that matter: within a lease, just past one, well past one
        @rule(seconds=st.sampled_from([0.5, LEASE_S / 3, LEASE_S / 2, LEASE_S + 0.5, 2 * LEASE_S]))
        def tick(self, seconds):
            self.now += timedelta(seconds=seconds)

        @rule(now=st.integers(0, 3))
        def cancel(self, now):
            if now:  # a cancel one time in four: else nearly every job ends cancelled at once
                return
            with sessions() as s:
                try:
                    lifecycle.cancel(s, self.job_id, self.now)
                except Conflict:
                    assert self.snapshot()[0] in FINISHED

        @rule(w=worker, status=st.sampled_from(FINISHED))
        def finish(self, w, status):
            self.fenced(w, lambda s, lease: lifecycle.finish(s, lease, status, now=self.now))

        @rule(w=worker)
        def fail(self, w):
            self.fenced(w, lambda s, lease: lifecycle.retry_or_fail(s, lease, "boom", self.max_restarts,
                                                                    now=self.now))

        @rule()
        def reap(self):
            with sessions() as s:
                lifecycle.requeue_expired(s, self.now)

        @rule(w=worker)
        def write(self, w):
            def write(s, lease):
                # fenced at the test's clock first (write_points fences again at the wall clock,
                # which is never later than the test's)
                lifecycle.fence(s, lease, self.now)
                write_points(s, lease, [("loss", self.points + 1, 1, 0.5)])
                self.points += 1
            self.fenced(w, write)

        # -- the invariants ------------------------------------------------------------------
        @invariant()
        def consistent(self):
            status, attempts, n_events = now = self.snapshot()
            before_status, before_attempts, before_events = self.last
            assert attempts <= self.max_restarts + 1
            if before_status in FINISHED:
                assert status == before_status and attempts == before_attempts
            if (status, attempts) != (before_status, before_attempts):
                assert n_events > before_events, (self.last, now)
            live = [w for w, lease in self.leases.items() if self.holds(lease)]
            assert len(live) <= 1, live
            with sessions() as s:
                points = point_count(s)
            assert points == self.points
            self.last = now

    return Lifecycle


@pytest.mark.slow
@pytest.mark.parametrize("examples", [150])
def test_lifecycle_state_machine(db_template, tmp_path, examples):
    url = db_template.copy(tmp_path)
    engine = make_engine(url)
    try:
        machine = make_machine(make_sessionmaker(engine))
        run_state_machine_as_test(machine, settings=settings(
            max_examples=examples, stateful_step_count=30, deadline=None, derandomize=True,
            suppress_health_check=[HealthCheck.too_slow]))
    finally:
        engine.dispose()
        db_template.drop(url)
