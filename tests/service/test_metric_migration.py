"""Revision 0005 moves the old ``metrics`` rows (one a point) into packed blocks with
rollups, on SQLite and PostgreSQL: every point arrives once with its epoch, value
(float32 for step series) and time to the millisecond; a step an old resumed job wrote
twice keeps its first-written point; the old table is gone. Downgrading writes the
points back as rows."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa
from alembic import command
from sqlalchemy import create_engine, inspect
from sqlalchemy.orm import Session

from service.store.metrics import MIN_POINTS, downsample, list_points, point_count, series_rows
from service.store.migrate import alembic_config, current, upgrade
from tests.service.test_migrations import database_url, head  # noqa: F401  (the fixture)
from tests.worker.test_metric_exactly_once import assert_rollups_are_the_points

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
STEP_SERIES = ("loss", "lr")  # float32 after the move (the catalog's step series)

users = sa.table("users", sa.column("id"), sa.column("name"), sa.column("is_admin"),
                 sa.column("created_at", sa.DateTime(timezone=True)))
jobs = sa.table("jobs", sa.column("id"), sa.column("owner_id"), sa.column("spec", sa.JSON),
                sa.column("status"), sa.column("priority"), sa.column("attempts"), sa.column("max_restarts"),
                sa.column("cancel_requested"), sa.column("created_at", sa.DateTime(timezone=True)),
                sa.column("updated_at", sa.DateTime(timezone=True)))
# as the old models wrote them: UTC datetimes in a timezone-aware column
old_metrics = sa.table("metrics", sa.column("id"), sa.column("job_id"), sa.column("name"), sa.column("step"),
                       sa.column("epoch"), sa.column("value", sa.Float), sa.column("time", sa.DateTime(timezone=True)))


def _at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def old_rows() -> list[dict]:
    """The rows of three jobs in the order the old workers wrote them (ids ascending).

    Job 1 ran to step 4200 (epochs of 1000 steps), died, and its resumed attempt wrote
    steps 3001-9000 and epochs 4-9 again from its checkpoint of epoch 3: steps
    3001-4200 and epoch 4 are there twice, across the block boundary at 4096. Job 2 is
    short; job 3 has no points."""
    rng = np.random.default_rng(5)
    rows = []

    def add(job, name, step, epoch, value, ms):
        rows.append({"job_id": job, "name": name, "step": step, "epoch": epoch, "value": float(value),
                     "time": _at(ms)})

    for attempt, (lo, hi) in enumerate(((1, 4200), (3001, 9000))):
        for step in range(lo, hi + 1):
            ms = 7 * step + 500_000 * attempt
            epoch = (step - 1) // 1000 + 1
            add(1, "loss", step, epoch, 2 + np.sin(step / 300) + rng.normal(0, 0.01) + attempt, ms)
            add(1, "lr", step, epoch, 0.1 / (1 + step * 1e-3) + attempt, ms + 1)
            if step % 1000 == 0:
                add(1, "epoch_loss", step, step // 1000, 1.0 / step + 1e-13 + attempt, ms + 2)
                add(1, "val_loss", step, step // 1000, 1.5 / step + 1e-13 + attempt, ms + 3)
                add(1, "custom_figure", step, step // 1000, np.pi * step + attempt, ms + 4)
    for step in range(1, 101):
        add(2, "loss", step, 1, 1.0 + 1.0 / step, 3 * step)
        add(2, "lr", step, 1, 0.01, 3 * step)
    return rows


def first_written(rows: list[dict]) -> dict[tuple[int, str, int], dict]:
    out: dict[tuple[int, str, int], dict] = {}
    for r in rows:
        out.setdefault((r["job_id"], r["name"], r["step"]), r)
    return out


def stored(name: str, value: float) -> float:
    return float(np.float32(value)) if name in STEP_SERIES else value


def test_old_metric_rows_move_into_blocks_once_each_and_come_back_on_downgrade(database_url):  # noqa: F811
    upgrade(database_url, "0004")
    assert current(database_url) == "0004"
    rows = old_rows()
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(users), [{"id": 1, "name": "alice", "is_admin": False, "created_at": T0}])
            conn.execute(sa.insert(jobs), [{"id": j, "owner_id": 1, "spec": {}, "status": "succeeded",
                                            "priority": 0, "attempts": 2, "max_restarts": 2,
                                            "cancel_requested": False, "created_at": T0, "updated_at": T0}
                                           for j in (1, 2, 3)])
            conn.execute(sa.insert(old_metrics), rows)
        assert len(rows) > len(first_written(rows))  # there are duplicates to resolve
        expected = first_written(rows)
        by_job = {j: sorted((k for k in expected if k[0] == j), key=lambda k: (k[2], k[1])) for j in (1, 2, 3)}

        upgrade(database_url)
        assert current(database_url) == head()
        assert "metrics" not in inspect(engine).get_table_names()
        with Session(engine) as s:
            for job_id, keys in by_job.items():
                got, token = [], None
                while True:  # pages of 1,000: every point exactly once, in (step, name) order
                    page, token = list_points(s, job_id, None, None, None, 1000, token)
                    got += page
                    if token is None:
                        break
                assert [(job_id, p["name"], p["step"]) for p in got] == keys, job_id
                for p in got:
                    want = expected[(job_id, p["name"], p["step"])]
                    assert p["epoch"] == want["epoch"], p
                    assert p["value"] == stored(p["name"], want["value"]), (p, want)
                    assert abs(p["time"] - want["time"].timestamp()) < 1e-4, (p, want)
                assert point_count(s, job_id) == len(keys)
                for name in {k[1] for k in keys}:
                    steps = np.array([k[2] for k in keys if k[1] == name])
                    values = np.array([stored(name, expected[(job_id, name, st)]["value"]) for st in steps])
                    assert_rollups_are_the_points(s, job_id, name, steps, values)
                    buckets = downsample(s, job_id, [name], None, None, MIN_POINTS)
                    assert sum(b["count"] for b in buckets) == len(steps)
            assert series_rows(s, 3) == []
            # the loss of job 1 spans three raw blocks of 4096 steps
            assert [b for n, lv, b in series_rows(s, 1) if n == "loss" and lv == 0] == [0, 1, 2]

        command.downgrade(alembic_config(database_url), "0004")
        assert current(database_url) == "0004"
        assert "metric_blocks" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            back = conn.execute(sa.select(old_metrics.c.job_id, old_metrics.c.name, old_metrics.c.step,
                                          old_metrics.c.epoch, old_metrics.c.value, old_metrics.c.time)).all()
        keys = [(r.job_id, r.name, r.step) for r in back]
        assert len(keys) == len(set(keys)) and set(keys) == set(expected)
        for r in back:
            want = expected[(r.job_id, r.name, r.step)]
            assert r.epoch == want["epoch"] and r.value == stored(r.name, want["value"]), (r, want)
            when = r.time if r.time.tzinfo else r.time.replace(tzinfo=UTC)
            assert abs(when - want["time"]) < timedelta(milliseconds=0.1), (r, want)
    finally:
        engine.dispose()
