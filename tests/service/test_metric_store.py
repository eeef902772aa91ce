"""The metric store (service.store.metrics, seriescodec): blocks and rollups against a
NumPy reference, at every level, on SQLite and PostgreSQL."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from sqlalchemy import func, select

from service.store.metrics import (
    SeriesWriter,
    cut_series,
    downsample,
    iter_points,
    list_points,
    point_count,
    series_info,
    tail,
)
from service.store.models import Job, MetricBlock, User
from service.store.seriescodec import LEVELS, RAW_SPAN, WIDTHS, Buckets, block_span, decode, encode, rollup

from ..inprocess import store_sessions

T0 = 1.7e9


@pytest.fixture
def sessions(db_template, tmp_path):
    with store_sessions(db_template, tmp_path) as (_, make):
        yield make


def new_job(sessions) -> int:
    with sessions() as s:
        user = s.scalar(select(User).where(User.name == "metrics")) or User(name="metrics")
        s.add(user)
        s.flush()
        job = Job(owner_id=user.id, spec={})
        s.add(job)
        s.commit()
        return job.id


def write(sessions, job_id: int, name: str, steps: np.ndarray, values: np.ndarray, raw_steps: int | None = None,
          batch: int = 250_000, writer: SeriesWriter | None = None) -> SeriesWriter:
    with sessions() as s:
        w = writer or SeriesWriter(job_id, raw_steps).load(s)
        for i in range(0, len(steps), batch):
            part = slice(i, i + batch)
            w.append(name, steps[part], steps[part] // 1000, T0 + steps[part] / 1000, values[part])
            w.flush(s)
            s.commit()
            w.written()
    return w


def reference(steps: np.ndarray, values: np.ndarray, item: dict) -> None:
    """The bucket ``item`` against NumPy over the points of its step range."""
    m = (steps >= item["step"]) & (steps <= item["last_step"])
    part = values[m]
    assert item["count"] == len(part), item
    assert (item["min"], item["max"], item["first"], item["last"]) == \
        (part.min(), part.max(), part[0], part[-1]), item
    assert item["value"] == pytest.approx(part.mean(), rel=1e-9)
    assert steps[m][0] == item["step"] and steps[m][-1] == item["last_step"]


def f32(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32).astype(np.float64)


# -- the codec --------------------------------------------------------------------------------

@pytest.mark.parametrize("value_bytes", [4, 8])
def test_blocks_decode_to_what_was_encoded(value_bytes):
    rng = np.random.default_rng(1)
    steps = np.cumsum(rng.integers(1, 5, 3000)) + 10**9
    values = rng.normal(size=3000) * 1e3
    if value_bytes == 4:
        values = f32(values)
    pts = Buckets.points(steps, steps // 7, T0 + np.arange(3000) * 0.25, values)
    back = decode(encode(0, pts, value_bytes))
    assert np.array_equal(back.first_step, steps) and np.array_equal(back.first, values)
    assert np.array_equal(back.first_epoch, steps // 7) and np.allclose(back.time, pts.time, atol=5e-4, rtol=0)
    for level in LEVELS:
        b = rollup(pts, WIDTHS[level])
        got = decode(encode(level, b, value_bytes))
        for field in ("key", "count", "first_step", "last_step", "first_epoch", "vmin", "vmax", "first", "last",
                      "total"):
            assert np.array_equal(getattr(got, field), getattr(b, field)), (level, field)


# -- queries against NumPy ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def long_series():
    """10 M steps of a random walk with a planted spike and dip (made fast, not by training)."""
    n = 10_000_000
    rng = np.random.default_rng(7)
    values = f32(np.cumsum(rng.normal(size=n)) * 1e-3 + 5.0)
    spike, dip = 6_543_210, 1_234_567
    values[spike - 1], values[dip - 1] = 1e4, -1e4
    return np.arange(1, n + 1, dtype=np.int64), values, spike, dip


def test_a_10m_step_series_downsampled_at_every_level_matches_numpy(sessions, long_series):
    steps, values, spike, dip = long_series
    job_id = new_job(sessions)
    write(sessions, job_id, "loss", steps, values, batch=1_000_000)
    with sessions() as s:
        assert point_count(s, job_id) == len(steps)
        # every level answers for some number of points; each bucket is exact against NumPy
        for max_points in (4, 150, 2000, 10_000):
            items = downsample(s, job_id, ["loss"], None, None, max_points)
            assert 1 < len(items) <= max_points
            assert sum(i["count"] for i in items) == len(steps)
            assert max(i["max"] for i in items) == 1e4 and min(i["min"] for i in items) == -1e4
            hit = next(i for i in items if i["step"] <= spike <= i["last_step"])
            assert hit["max"] == 1e4
            for item in items[:3] + items[len(items) // 2:len(items) // 2 + 2] + items[-3:] + [hit]:
                reference(steps, values, item)
        # a zoomed range: served at the resolution it needs, raw points once it is short
        for lo, hi, max_points in ((5_000_000, 5_100_000, 1000), (spike - 500, spike + 500, 1000),
                                   (dip - 1_000_000, dip + 3_000_000, 500)):
            items = downsample(s, job_id, ["loss"], lo, hi, max_points)
            assert len(items) <= max_points
            assert items[0]["step"] <= lo + 1 and items[-1]["last_step"] >= hi - 1
            for item in items[:2] + items[-2:]:
                reference(steps, values, item)
            if hi - lo <= 1000:
                assert all(i["count"] == 1 for i in items) and [i["step"] for i in items] == list(range(lo + 1, hi))
        # 4 series x 1000 points reads a handful of blocks, not the series
        rows = s.scalar(select(func.count()).select_from(MetricBlock).where(MetricBlock.job_id == job_id))
        assert rows > 2400  # ~2,442 raw blocks and ~165 rollup blocks were written


@pytest.mark.parametrize("level", list(LEVELS))
def test_a_spike_and_a_dip_survive_at_every_level(sessions, level):
    # long enough that `level` is the coarsest level giving max_points buckets, and is
    # kept (a level is kept once the one below spans more than one block)
    max_points = 8
    n = max(WIDTHS[level] * max_points * 2, block_span(level - 1) * 2)
    # the longest levels with a point every `stride` steps: ~2 M points at most
    stride = max(1, n // 2_000_000)
    job_id = new_job(sessions)
    steps = np.arange(0, n, stride, dtype=np.int64)
    values = np.ones(len(steps))
    values[len(steps) // 3], values[2 * len(steps) // 3] = 99.0, -99.0
    write(sessions, job_id, "loss", steps, values, raw_steps=0, batch=4_000_000)
    with sessions() as s:
        items = downsample(s, job_id, ["loss"], None, None, max_points)
    assert items[0]["bucket_steps"] % WIDTHS[level] == 0
    with sessions() as s:  # and the levels above it are not kept yet
        assert series_info(s, job_id)["loss"].top == level
    assert len(items) <= max_points and sum(i["count"] for i in items) == len(steps)
    spike = next(i for i in items if i["step"] <= steps[len(steps) // 3] <= i["last_step"])
    dip = next(i for i in items if i["step"] <= steps[2 * len(steps) // 3] <= i["last_step"])
    assert spike["max"] == 99.0 and dip["min"] == -99.0 and spike["min"] == 1.0 and dip["max"] == 1.0


def test_raw_points_are_paged_once_each_across_series_and_blocks(sessions):
    job_id = new_job(sessions)
    steps = np.arange(1, 3 * RAW_SPAN + 100, dtype=np.int64)
    write(sessions, job_id, "loss", steps, f32(np.sin(steps)))
    write(sessions, job_id, "val_loss", steps[::1000], np.cos(steps[::1000]))
    seen, token = [], None
    with sessions() as s:
        while True:
            page, token = list_points(s, job_id, None, None, None, 777, token)
            seen += [(p["step"], p["name"]) for p in page]
            if token is None:
                break
        expected = sorted([(int(st), "loss") for st in steps] + [(int(st), "val_loss") for st in steps[::1000]])
        assert seen == expected
        between, _ = list_points(s, job_id, ["loss"], 4095, 4099, 100, None)
        assert [p["step"] for p in between] == [4096, 4097, 4098]
        assert [p["value"] for p in between] == f32(np.sin(np.array([4096, 4097, 4098]))).tolist()


def test_raw_points_kept_for_all_none_or_the_last_n_steps_and_rollups_always(sessions):
    n = 5 * RAW_SPAN
    steps = np.arange(1, n + 1, dtype=np.int64)
    values = f32(np.linspace(0, 1, n))
    kept = {}
    for raw_steps in (None, 0, RAW_SPAN):
        job_id = new_job(sessions)
        write(sessions, job_id, "loss", steps, values, raw_steps=raw_steps, batch=3000)
        write(sessions, job_id, "epoch_loss", steps[::RAW_SPAN], values[::RAW_SPAN], raw_steps=raw_steps)
        with sessions() as s:
            raw = [p["step"] for p in iter_points(s, job_id, ["loss"])]
            epochs = list_points(s, job_id, ["epoch_loss"], None, None, 100, None)[0]
            items = downsample(s, job_id, ["loss"], None, None, 50)
        kept[raw_steps] = raw
        assert len(epochs) == 5  # an epoch series always keeps its points
        assert sum(i["count"] for i in items) == n and items[-1]["last"] == values[-1]
        for item in items:
            reference(steps, values, item)
    assert kept[None] == steps.tolist() and kept[0] == []
    # the last N steps at least, in whole blocks
    assert kept[RAW_SPAN][-1] == n and n - RAW_SPAN + 1 >= kept[RAW_SPAN][0] > n - 2 * RAW_SPAN


@pytest.mark.parametrize("raw_steps", [None, 0])
def test_a_cut_leaves_exactly_the_points_up_to_the_checkpoint(sessions, raw_steps):
    rng = np.random.default_rng(3)
    steps = np.arange(1, 70_001, dtype=np.int64)
    first, second = f32(rng.normal(size=len(steps))), f32(rng.normal(size=len(steps)))
    job_id = new_job(sessions)
    at = 41_234  # a checkpoint's step: the writer's cut is taken there
    w = write(sessions, job_id, "loss", steps[:at], first[:at], raw_steps=raw_steps, batch=5000)
    cut = w.cut()
    write(sessions, job_id, "loss", steps[at:], first[at:], writer=w, batch=5000)  # the attempt that crashed
    with sessions() as s:
        cut_series(s, job_id, at, cut)
        s.commit()
        assert series_info(s, job_id)["loss"].last_step == at
    # the resumed attempt writes the steps after the checkpoint again, with other values
    write(sessions, job_id, "loss", steps[at:], second[at:], raw_steps=raw_steps, batch=5000)
    expected = np.r_[first[:at], second[at:]]
    with sessions() as s:
        for max_points in (10, 300, 10_000):
            items = downsample(s, job_id, ["loss"], None, None, max_points)
            assert sum(i["count"] for i in items) == len(steps)
            for item in items:
                reference(steps, expected, item)
        if raw_steps is None:
            page, _ = list_points(s, job_id, ["loss"], None, None, 10_000, None)
            assert [p["step"] for p in page] == list(range(1, 10_001))


def test_a_resume_without_a_cut_rebuilds_the_straddling_buckets_from_raw_points(sessions):
    steps = np.arange(1, 20_001, dtype=np.int64)
    values = f32(np.cos(steps / 100))
    job_id = new_job(sessions)
    write(sessions, job_id, "loss", steps, values)
    with sessions() as s:
        cut_series(s, job_id, 9_999, None)
        s.commit()
        items = downsample(s, job_id, ["loss"], None, None, 4)
    assert sum(i["count"] for i in items) == 9_999
    for item in items:
        reference(steps[:9_999], values[:9_999], item)


def test_tail_gives_the_buckets_past_a_step_at_the_width_asked(sessions):
    steps = np.arange(1, 100_001, dtype=np.int64)
    values = f32(np.sqrt(steps))
    job_id = new_job(sessions)
    write(sessions, job_id, "loss", steps, values)
    with sessions() as s:
        items = tail(s, job_id, ["loss"], 90_000, 512)
        assert all(i["bucket_steps"] == 512 and i["step"] % 512 == 0 for i in items)
        assert items[0]["step"] <= 90_001 <= items[0]["last_step"] and items[-1]["last_step"] == 100_000
        for item in items:
            reference(steps, values, item)
        raw = tail(s, job_id, ["loss"], 99_990, 1)
        assert [i["step"] for i in raw] == list(range(99_991, 100_001))


def test_steps_that_go_back_are_refused(sessions):
    job_id = new_job(sessions)
    w = write(sessions, job_id, "loss", np.arange(1, 10), np.ones(9))
    with pytest.raises(ValueError, match="steps must increase"):
        w.append("loss", np.array([5]), np.array([0]), np.array([T0]), np.array([1.0]))


# -- the API ----------------------------------------------------------------------------------

def test_metrics_export_streams_every_raw_point_as_csv(api_server):
    from service.store.results import insert_metric_points

    c = api_server.client("alice")
    job_id = c.submit({"model": {"layers": [{"units": 1, "activation": "sigmoid"}]}, "loss": "mse",
                       "data": {"dataset": "xor"}})["id"]
    points = [("loss", st, 1, float(np.float32(1 / st))) for st in range(1, 9001)]
    points += [("val_loss", st, st // 3000, 0.1 * st) for st in (3000, 6000, 9000)]
    from service.store.db import make_engine, make_sessionmaker

    engine = make_engine(api_server.database_url)
    with make_sessionmaker(engine)() as s:
        insert_metric_points(s, job_id, points)
    engine.dispose()
    with api_server.session("alice").get(f"{api_server.url}/api/v1/jobs/{job_id}/metrics.csv") as r:
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["name"], int(row["step"])) for row in rows] == sorted(((p[0], p[1]) for p in points),
                                                                        key=lambda p: (p[1], p[0]))
    assert {(row["name"], int(row["step"])): float(row["value"]) for row in rows} == \
        {(p[0], p[1]): p[3] for p in points}
    with api_server.session("alice").get(f"{api_server.url}/api/v1/jobs/{job_id}/metrics.csv?name=val_loss") as r:
        assert len(list(csv.DictReader(io.StringIO(r.text)))) == 3
    other = api_server.session("bob").get(f"{api_server.url}/api/v1/jobs/{job_id}/metrics.csv")
    assert other.status_code == 404 and other.headers["Content-Type"] == "application/problem+json"


def test_raw_steps_come_from_the_spec_before_the_server(tmp_path, monkeypatch):
    from nncore.spec import SpecError, validate_spec
    from service.shared.settings import Settings, raw_steps_for

    spec = {"model": {"layers": [{"units": 1, "activation": "sigmoid"}]}, "loss": "mse", "data": {"dataset": "xor"}}
    monkeypatch.setenv("TRAINYARD_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("TRAINYARD_METRICS_RAW_STEPS", "5000")
    server = Settings.from_env()
    assert raw_steps_for(validate_spec(spec), server) == 5000
    for given, kept in (("all", None), ("none", 0), (123, 123)):
        assert raw_steps_for(validate_spec({**spec, "metrics": {"raw_steps": given}}), server) == kept
    assert raw_steps_for(validate_spec(spec), Settings.from_env(metrics_raw_steps="all")) is None
    for bad in (0, -1, "some", True, 1.5):
        with pytest.raises(SpecError, match="metrics.raw_steps"):
            validate_spec({**spec, "metrics": {"raw_steps": bad}})
    monkeypatch.setenv("TRAINYARD_METRICS_RAW_STEPS", "0")
    with pytest.raises(ValueError, match="TRAINYARD_METRICS_RAW_STEPS must be 'all', 'none' or a positive number"):
        Settings.from_env()


@pytest.mark.parametrize("path", ["metrics", "metrics.csv", "stream"])
def test_a_nul_in_a_series_name_is_a_422_naming_it(api_server, path):
    c = api_server.client("alice")
    job_id = c.submit({"model": {"layers": [{"units": 1, "activation": "sigmoid"}]}, "loss": "mse",
                       "data": {"dataset": "xor"}})["id"]
    r = api_server.session("alice").get(f"{api_server.url}/api/v1/jobs/{job_id}/{path}", params={"name": "lo\x00ss"})
    assert r.status_code == 422 and r.headers["Content-Type"] == "application/problem+json", r.text
    assert [e["path"] for e in r.json()["errors"]] == ["query.name"]
