"""Every step's point exactly once, through crashes and resumes.

In this process: a Reporter writes three checkpointed epochs, one more epoch and part
of the next that no checkpoint covers, and "crashes"; the resumed attempt cuts the
series back to the checkpoint and replays the steps after it with other values. Each
step is then stored once, with the replay's value, and every rollup level is exactly
NumPy's aggregate of the points — with all raw points kept, none (rollups only: the
bucket straddling the checkpoint comes back from its stored cut) or the last 5,000.

With real processes: jobs on real workers SIGKILLed (the whole process group) at
seeded random moments, resumed by fresh workers, on SQLite and on PostgreSQL + Redis;
afterwards every job's ``loss`` has one point for every step and ``epoch_loss`` one
for every epoch, and the rollups agree with the raw points.
"""
from __future__ import annotations

import copy
import json
import random
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from nncore.hooks import StepLog
from service.store import lifecycle
from service.store.metrics import MIN_POINTS, downsample, iter_points, list_points, series_info
from service.store.models import Checkpoint, Event, Job, MetricBlock, utcnow
from service.store.results import cut_metrics
from service.store.seriescodec import LEVELS, RAW_SPAN, WIDTHS, block_span, concat, decode
from tests.inprocess import queued_job, store_sessions
from worker.attempt import Attempt, Reporter

ROOT = Path(__file__).parents[2]


@pytest.fixture
def db(db_template, tmp_path) -> Iterator[tuple[str, object]]:
    with store_sessions(db_template, tmp_path) as made:
        yield made


# -- checks shared by both tiers -------------------------------------------------------------

def raw_points(session, job_id: int, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, epochs, values) of the raw points stored for ``name``, in step order."""
    pts = list(iter_points(session, job_id, [name]))
    return (np.array([p["step"] for p in pts], np.int64), np.array([p["epoch"] for p in pts], np.int64),
            np.array([p["value"] for p in pts], np.float64))


def level_buckets(session, job_id: int, name: str, level: int):
    rows = session.execute(select(MetricBlock.block, MetricBlock.count, MetricBlock.payload).where(
        MetricBlock.job_id == job_id, MetricBlock.name == name, MetricBlock.level == level)
        .order_by(MetricBlock.block)).all()
    b = concat([decode(r.payload) for r in rows])
    # a block row's own count is its payload's
    for r in rows:
        assert r.count == int(decode(r.payload).count.sum()), (name, level, r.block)
    return b


def assert_rollups_are_the_points(session, job_id: int, name: str, steps: np.ndarray, values: np.ndarray) -> None:
    """Every rollup level of ``name`` holds, for each bucket, NumPy's count, min, max,
    first, last and sum of the points (``steps``, ``values``) it covers, and no other
    bucket; the coarsest downsample counts every point once. A level is kept exactly
    when the one below it spans more than one block (the first always)."""
    assert np.all(np.diff(steps) > 0)
    coarse = downsample(session, job_id, [name], None, None, MIN_POINTS)
    assert sum(p["count"] for p in coarse) == len(steps), (name, coarse)
    for level in LEVELS:
        b = level_buckets(session, job_id, name, level)
        kept = level == 1 or len(np.unique(steps // block_span(level - 1))) > 1
        assert (len(b) > 0) == kept, (name, level, len(b))
        if not kept:
            continue
        keys, starts, counts = np.unique(steps // WIDTHS[level], return_index=True, return_counts=True)
        np.testing.assert_array_equal(b.key, keys, err_msg=f"{name} level {level}: bucket keys")
        ends = starts + counts
        np.testing.assert_array_equal(b.count, counts, err_msg=f"{name} level {level}: counts")
        np.testing.assert_array_equal(b.first_step, steps[starts], err_msg=f"{name} level {level}: first_step")
        np.testing.assert_array_equal(b.last_step, steps[ends - 1], err_msg=f"{name} level {level}: last_step")
        np.testing.assert_array_equal(b.vmin, np.minimum.reduceat(values, starts), err_msg=f"{name} {level}: min")
        np.testing.assert_array_equal(b.vmax, np.maximum.reduceat(values, starts), err_msg=f"{name} {level}: max")
        np.testing.assert_array_equal(b.first, values[starts], err_msg=f"{name} level {level}: first")
        np.testing.assert_array_equal(b.last, values[ends - 1], err_msg=f"{name} level {level}: last")
        np.testing.assert_allclose(b.total, np.add.reduceat(values, starts), rtol=1e-9,
                                   err_msg=f"{name} level {level}: sum")


# -- in this process: a crash past the checkpoint, then the resume ---------------------------

def loss_of(step: np.ndarray | int, run: int) -> np.ndarray:
    """A float32-exact value per step, different in each run."""
    return np.float32(np.sin(np.asarray(step) * 0.01) + 2 + 10 * run).astype(np.float64)


def feed_epoch(reporter: Reporter, epoch: int, steps_per_epoch: int, run: int, upto: int | None = None,
               end: bool = True) -> None:
    """The training loop's calls for ``epoch`` (1-based): its steps (the first ``upto``)
    and, if ``end``, its epoch log."""
    first = (epoch - 1) * steps_per_epoch + 1
    for i, step in enumerate(range(first, first + steps_per_epoch)):
        if upto is not None and i >= upto:
            break
        reporter.on_step(None, StepLog(step, epoch - 1, i, float(loss_of(step, run)), 0.1, 4, grad_norm=1.0 + run))
    if end:
        step = epoch * steps_per_epoch
        reporter.on_epoch(None, {"epoch": epoch, "step": step, "loss": float(100 * run + epoch), "lr": 0.1,
                                 "time": 0.1})


def save_checkpoint(reporter: Reporter, folder: Path, epoch: int, steps_per_epoch: int, attempt: int) -> None:
    path = folder / f"epoch-{epoch:05d}-a{attempt}.npz"
    path.write_bytes(b"not a real checkpoint")
    reporter.checkpoint(epoch, epoch * steps_per_epoch, path, "0" * 64, {"loss": 1.0}, False)


def wait_for(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(("raw_steps", "steps_per_epoch"), [(None, 300), (0, 300), (5000, 3000)],
                         ids=["raw-all", "raw-none", "raw-5000"])
def test_a_resume_after_a_crash_past_the_checkpoint_leaves_each_step_once_with_the_replayed_value(
        db, tmp_path, raw_steps, steps_per_epoch):
    _, sessions = db
    job_id = queued_job(sessions)
    spe = steps_per_epoch
    epochs, kept_epochs, crash_at = 5, 3, spe // 2  # checkpoints of 1-3; epoch 4 and half of 5 unlisted
    with sessions() as s:
        lease = lifecycle.claim(s, job_id, "w1", 30)
    first = Attempt(sessions, lease, 30).start()
    reporter = Reporter(first, epochs, spe, raw_steps)
    for epoch in range(1, kept_epochs + 1):
        feed_epoch(reporter, epoch, spe, run=1)
        save_checkpoint(reporter, tmp_path, epoch, spe, attempt=1)
    feed_epoch(reporter, kept_epochs + 1, spe, run=1)
    feed_epoch(reporter, kept_epochs + 2, spe, run=1, upto=crash_at, end=False)
    crashed_at = (kept_epochs + 1) * spe + crash_at

    def flushed() -> bool:
        with sessions() as s:
            info = series_info(s, job_id, ["loss", "epoch_loss"])
        return (info.get("loss") is not None and info["loss"].last_step == crashed_at
                and info["epoch_loss"].last_step == (kept_epochs + 1) * spe)

    assert wait_for(flushed), "the writer thread writes the steps past the checkpoint"
    # the crash: the process is gone, its lease expires and the job is handed on
    reporter.close()
    first.stop()

    def handed_on() -> bool:
        # as the reaper does, every round: a row its last write still locks is skipped (PostgreSQL)
        with sessions() as s:
            lifecycle.requeue_expired(s, now=utcnow() + timedelta(seconds=60))
            return s.get(Job, job_id).status == "queued"

    assert wait_for(handed_on), "the crashed attempt's job is handed on"
    with sessions() as s:
        lease = lifecycle.claim(s, job_id, "w2", 30)
        ckpt = s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)
                         .order_by(Checkpoint.epoch.desc())).first()
        assert lease is not None and lease.attempt == 2 and ckpt.epoch == kept_epochs
        cut_step, cut = ckpt.step, ckpt.series_cut
    assert cut_step == kept_epochs * spe and cut is not None
    # what a resume does (worker.runner._run_attempt): cut back to the checkpoint, then train on
    with sessions() as s:
        cut_metrics(s, lease, cut_step, cut)
    second = Attempt(sessions, lease, 30).start()
    try:
        reporter = Reporter(second, epochs, spe, raw_steps)
        for epoch in range(kept_epochs + 1, epochs + 1):
            feed_epoch(reporter, epoch, spe, run=2)
            save_checkpoint(reporter, tmp_path, epoch, spe, attempt=2)
        reporter.flush()
    finally:
        second.stop()

    steps = np.arange(1, epochs * spe + 1)
    expected = np.where(steps <= cut_step, loss_of(steps, 1), loss_of(steps, 2))
    epoch_steps = np.arange(1, epochs + 1) * spe
    with sessions() as s:
        # epoch series keep their raw points whatever raw_steps says
        e_steps, e_epochs, e_values = raw_points(s, job_id, "epoch_loss")
        np.testing.assert_array_equal(e_steps, epoch_steps)
        np.testing.assert_array_equal(e_epochs, np.arange(1, epochs + 1))
        np.testing.assert_array_equal(e_values, [100 * (1 if e <= kept_epochs else 2) + e
                                                 for e in range(1, epochs + 1)])
        assert_rollups_are_the_points(s, job_id, "epoch_loss", e_steps, e_values)
        for name, values in (("loss", expected), ("grad_norm", np.where(steps <= cut_step, 2.0, 3.0))):
            # the rollups hold every step once, whatever raw points are kept
            assert_rollups_are_the_points(s, job_id, name, steps, values)
            got_steps, got_epochs, got_values = raw_points(s, job_id, name)
            raw_blocks = s.scalars(select(MetricBlock.block).where(
                MetricBlock.job_id == job_id, MetricBlock.name == name, MetricBlock.level == 0)).all()
            if raw_steps == 0:
                assert raw_blocks == [] and len(got_steps) == 0, name
                continue
            if raw_steps is None:
                kept_from = 1
            else:
                # whole blocks of RAW_SPAN steps go once all their steps are older than the last raw_steps
                floor = (epochs * spe - raw_steps + 1) // RAW_SPAN
                assert floor >= 1 and min(raw_blocks) == floor, (name, sorted(raw_blocks))
                kept_from = floor * RAW_SPAN
            np.testing.assert_array_equal(got_steps, steps[kept_from - 1:], err_msg=name)
            np.testing.assert_array_equal(got_values, values[kept_from - 1:], err_msg=name)
            np.testing.assert_array_equal(got_epochs, (steps[kept_from - 1:] - 1) // spe + 1, err_msg=name)
            if raw_steps is None:
                page, token = list_points(s, job_id, [name], None, None, 10_000, None)
                assert token is None and [p["step"] for p in page] == steps.tolist()


# -- real workers, SIGKILLed -----------------------------------------------------------------

MOONS = json.loads((ROOT / "examples/moons.json").read_text())
# 6,400 steps an epoch of about half a second: longer than the writer's 0.5 s between
# writes, so a kill mostly lands with points past the last checkpoint already written
CHAOS_SPEC = copy.deepcopy(MOONS)
CHAOS_SPEC.update(epochs=6, checkpoint_every=1, batch_size=1, max_restarts=10, retention={"keep_last": 2})
CHAOS_SPEC["data"]["n_samples"] = 8000
CHAOS_JOBS = 3
KILLS = 2


def _running_past_a_checkpoint_on(engine, worker_pid: int) -> list[int]:
    """Jobs the worker ``worker_pid`` is training whose current attempt has listed a
    checkpoint of its own: a kill now makes the next attempt resume from it."""
    with engine.connect() as conn:
        running = {j: a for j, a, owner in conn.execute(select(Job.id, Job.attempts, Job.lease_owner)
                                                        .where(Job.status == "running"))
                   # the lease owner is "<host>:<worker pid>/<pool child pid>"
                   if (m := re.search(r":(\d+)/\d+$", owner or "")) and int(m.group(1)) == worker_pid}
        paths = conn.execute(select(Checkpoint.job_id, Checkpoint.path).where(
            Checkpoint.job_id.in_(list(running)))).all() if running else []
    return sorted({j for j, p in paths if p.endswith(f"-a{running[j]}.npz")})


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("stack_name", ["stack", "redis_stack"], ids=["sqlite", "postgresql-redis"])
def test_sigkilled_workers_leave_every_step_and_epoch_stored_exactly_once(request, stack_name):
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    server, workers = request.getfixturevalue(stack_name)[:2]
    rng = random.Random(20261203)
    engine = create_engine(server.database_url, pool_pre_ping=True)
    s = server.session("alice")
    worker = workers.start(concurrency=2)
    ids = []
    for i in range(CHAOS_JOBS):
        r = s.post(f"{server.api}/jobs", json={"spec": {**CHAOS_SPEC, "seed": 100 + i}})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    kills = []
    t0 = time.monotonic()
    for _ in range(KILLS):
        assert wait_for(lambda pid=worker.pid: _running_past_a_checkpoint_on(engine, pid), 60), \
            "a job running on the live worker past a checkpoint of its attempt"
        time.sleep(rng.uniform(0.0, 1.2))  # somewhere in an epoch, or on a checkpoint's write
        workers.kill(worker)
        kills.append(round(time.monotonic() - t0, 1))
        worker = workers.start(concurrency=2)  # its reaper hands the killed attempts on

    def ended():
        with engine.connect() as conn:
            st = dict(conn.execute(select(Job.id, Job.status).where(Job.id.in_(ids))).all())
        return all(v in ("succeeded", "failed", "cancelled") for v in st.values())

    assert wait_for(ended, 120), "every job ends"
    spe = int(CHAOS_SPEC["data"]["n_samples"] * (1 - CHAOS_SPEC["data"]["validation_split"]))
    epochs = CHAOS_SPEC["epochs"]
    resumed = 0
    with Session(engine) as session:
        for job_id in ids:
            job = session.get(Job, job_id)
            assert job.status == "succeeded", (job_id, job.status, job.error)
            messages = session.scalars(select(Event.message).where(Event.job_id == job_id)).all()
            resumed += any(m.startswith("resumed from") for m in messages)
            assert job.result["steps"] == epochs * spe and job.result["epochs"] == epochs
            steps, step_epochs, values = raw_points(session, job_id, "loss")
            np.testing.assert_array_equal(steps, np.arange(1, epochs * spe + 1), err_msg=f"job {job_id}: loss steps")
            np.testing.assert_array_equal(step_epochs, (steps - 1) // spe + 1, err_msg=f"job {job_id}")
            assert_rollups_are_the_points(session, job_id, "loss", steps, values)
            e_steps, e_epochs, e_values = raw_points(session, job_id, "epoch_loss")
            np.testing.assert_array_equal(e_epochs, np.arange(1, epochs + 1), err_msg=f"job {job_id}: epochs")
            np.testing.assert_array_equal(e_steps, e_epochs * spe, err_msg=f"job {job_id}: epoch steps")
            assert_rollups_are_the_points(session, job_id, "epoch_loss", e_steps, e_values)
    engine.dispose()
    assert resumed >= 1, f"a kill hit a job past its checkpoint (kills at {kills} s)"
    print(f"\n{stack_name}: kills at {kills} s, {resumed}/{len(ids)} jobs resumed, "
          f"all ended {time.monotonic() - t0:.1f} s after the first submit")
