"""GET /api/v1/jobs/<id>/stream (Server-Sent Events), Client.stream and ``trainyard logs``.

The protocol tests run against the API in this process (tests/inprocess.py) on SQLite
and PostgreSQL. Its transport hands the app's chunks over only as they are read, but
``requests`` reads a body in blocks, so a test reads each connection whole: a stream
of a running job closes after ``stream_max_s`` (short here), one of a finished job at
its ``end``. That is enough for ids, order and resuming; what a reader sees while the
connection is open (delivery as it happens) is checked through a real gunicorn server
with the CLI (``logs -f``), where a line must appear before the next event is written.

The job's rows are written with the store functions the worker uses (claim, fenced
events, metric points, finish): the same rows a real attempt leaves.
"""
from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import trainyard_cmd
from tests.inprocess import WSGIAdapter

XOR = json.loads((Path(__file__).parents[2] / "examples/xor.json").read_text())
PROBLEM = "application/problem+json"
STREAM_MAX_S = 0.6
API_SETTINGS = {"stream_max_s": STREAM_MAX_S, "max_streams": 3}
# the real server keeps a stream open long enough that only delivery as it happens
# can pass the CLI test's deadlines
API_SERVER_ENV = {"TRAINYARD_STREAM_MAX_S": "60"}


# -- writing a job's rows as an attempt does -------------------------------------------------

class Attempt:
    """A running attempt of a job on ``database_url``: claim, events, points, finish."""

    def __init__(self, database_url: str, job_id: int) -> None:
        from service.store.db import make_engine, make_sessionmaker
        from service.store.lifecycle import claim

        self.engine = make_engine(database_url)
        self.sessions = make_sessionmaker(self.engine)
        self.job_id = job_id
        with self.sessions() as s:
            self.lease = claim(s, job_id, "test/1", lease_s=600)
        assert self.lease is not None

    def log(self, *messages: str) -> None:
        from service.store.lifecycle import add_event

        with self.sessions() as s:
            for m in messages:
                add_event(s, self.lease, "log", m)

    def points(self, points: list[tuple[str, int, int, float]], time_s: float | None = None) -> None:
        from service.store.results import insert_metric_points

        with self.sessions() as s:
            insert_metric_points(s, self.job_id, points, time=time_s)

    def finish(self, status: str = "succeeded", error: str | None = None) -> None:
        from service.store.lifecycle import finish
        from service.store.status import JobStatus

        with self.sessions() as s:
            finish(s, self.lease, JobStatus(status), error=error)

    def close(self) -> None:
        self.engine.dispose()


@contextlib.contextmanager
def running_job(server: Any, user: str = "alice") -> Iterator[Attempt]:
    r = server.session(user).post(server.api + "/jobs", json={"spec": XOR})
    assert r.status_code == 201, r.text
    attempt = Attempt(server.database_url, r.json()["id"])
    try:
        yield attempt
    finally:
        attempt.close()


def loss(step: int) -> tuple[str, int, int, float]:
    return ("loss", step, step // 10, 0.5 + step / 4)  # quarters: exact in float32


# -- reading a stream ------------------------------------------------------------------------

@dataclass
class Message:
    id: str
    event: str
    data: dict[str, Any]


def parse(body: str) -> tuple[list[str], list[Message]]:
    """(the field lines outside messages — retry, comments —, the messages) of an SSE body,
    split by hand: independent of the client's parser."""
    assert "\r" not in body
    loose, out = [], []
    for block in body.split("\n\n"):
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n") if not line.startswith(":"))
        if "data" in fields:
            out.append(Message(fields["id"], fields["event"], json.loads(fields["data"])))
        else:
            loose.append(block)
    return loose, out


def read(server: Any, job_id: int, user: str = "alice", last_id: str | None = None,
         **params: Any) -> tuple[requests.Response, list[str], list[Message]]:
    headers = {"Last-Event-ID": last_id} if last_id is not None else {}
    r = server.session(user).get(server.api + f"/jobs/{job_id}/stream", params=params, headers=headers)
    if r.status_code != 200:
        return r, [], []
    return (r, *parse(r.text))


def events_of(messages: list[Message]) -> list[dict[str, Any]]:
    return [m.data for m in messages if m.event == "log"]


def points_of(messages: list[Message]) -> list[dict[str, Any]]:
    return [p for m in messages if m.event == "points" for p in m.data["items"]]


def all_events(server: Any, job_id: int) -> list[dict[str, Any]]:
    return server.session().get(server.api + f"/jobs/{job_id}/events", params={"limit": 1000}).json()["items"]


def raw_points(server: Any, job_id: int) -> list[dict[str, Any]]:
    return server.session().get(server.api + f"/jobs/{job_id}/metrics", params={"limit": 10_000}).json()["items"]


def as_stream_point(p: dict[str, Any]) -> dict[str, Any]:
    """A raw point of GET /metrics as the stream sends it: a bucket of one."""
    return {**p, "last_step": p["step"], "count": 1, "min": p["value"], "max": p["value"], "first": p["value"],
            "last": p["value"], "bucket_steps": 1}


def assert_problem(r: requests.Response, status: int, path: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == PROBLEM
    body = r.json()
    if path is not None:
        assert path in [e["path"] for e in body["errors"]], body
    return body


# -- the protocol ----------------------------------------------------------------------------

def test_status_events_and_points_arrive_in_order_with_their_ids(api_server):
    with running_job(api_server) as job:
        job.log("epoch 1", "epoch 2", "epoch 3")
        job.points([loss(s) for s in range(10)] + [("val_loss", 9, 0, 0.25)])
        r, loose, messages = read(api_server, job.job_id)
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert r.headers["Cache-Control"] == "no-cache" and r.headers["X-Accel-Buffering"] == "no"
    assert r.text.startswith("retry: 2000\n\n") and loose == ["retry: 2000"]
    status = messages[0]
    assert status.event == "status" and status.data["status"] == "running"
    assert set(status.data) == {"status", "progress", "error", "updated_at", "attempts"}
    assert status.data["updated_at"].endswith("Z")
    # every event once, in id order, shaped as GET /events shows it
    assert events_of(messages) == all_events(api_server, job.job_id)
    assert [e["message"] for e in events_of(messages)][-3:] == ["epoch 1", "epoch 2", "epoch 3"]
    # every point once, ordered by (step, name), shaped as GET /metrics shows it (time in ISO 8601)
    assert points_of(messages) == [as_stream_point(p) for p in raw_points(api_server, job.job_id)]
    assert [(p["name"], p["step"]) for p in points_of(messages)][-2:] == [("loss", 9), ("val_loss", 9)]
    # each id: the last event id and the largest step sent up to and with its message
    event_id, step = 0, -1
    for m in messages:
        event_id = m.data["id"] if m.event == "log" else event_id
        step = max([step, *(p["last_step"] for p in m.data.get("items", []))])
        assert m.id == f"{event_id}.{step}", m
    assert messages[-1].id == f"{all_events(api_server, job.job_id)[-1]['id']}.9"
    assert "end" not in [m.event for m in messages]  # still running: closed by the time limit


def test_resuming_with_last_event_id_sends_nothing_twice_and_nothing_missing(api_server):
    with running_job(api_server) as job:
        job.log("a", "b", "c")
        job.points([loss(s) for s in range(6)])
        _, _, first = read(api_server, job.job_id)
        # a client that got only as far as the second log line
        cut = [i for i, m in enumerate(first) if m.event == "log"][-2]
        seen = first[:cut + 1]
        job.log("d")
        job.points([loss(s) for s in range(6, 12)])
        _, _, second = read(api_server, job.job_id, last_id=seen[-1].id)
        assert second[0].event == "status"  # a reconnect is told the status first
        seen += second
        job.log("e")
        job.points([loss(s) for s in range(12, 15)])
        job.finish()
        _, _, third = read(api_server, job.job_id, last_id=seen[-1].id)
        seen += third
    assert events_of(seen) == all_events(api_server, job.job_id)
    assert points_of(seen) == [as_stream_point(p) for p in raw_points(api_server, job.job_id)]
    assert [p["step"] for p in points_of(seen)] == list(range(15))
    assert third[-1].event == "end" and third[-1].data == {"status": "succeeded"}
    # the header wins over the query
    _, _, again = read(api_server, job.job_id, last_id=seen[-1].id, after_event=0, after_step=-1)
    assert [m.event for m in again] == ["status", "end"]


def test_the_query_starts_the_stream_where_it_says(api_server):
    with running_job(api_server) as job:
        job.log("a", "b")
        job.points([loss(s) for s in range(8)] + [("accuracy", s, 0, 0.5) for s in range(8)])
        job.finish()
        events = all_events(api_server, job.job_id)
        _, _, messages = read(api_server, job.job_id, after_event=events[-2]["id"], after_step=4, name="loss")
    assert events_of(messages) == events[-1:]
    assert [(p["name"], p["step"]) for p in points_of(messages)] == [("loss", s) for s in (5, 6, 7)]


def test_buckets_are_resent_fuller_and_replace_by_step(api_server):
    with running_job(api_server) as job:
        job.points([loss(s) for s in range(6)])
        _, _, first = read(api_server, job.job_id, bucket_steps=4)
        job.points([loss(s) for s in range(6, 10)])
        job.finish()
        _, _, second = read(api_server, job.job_id, bucket_steps=4, last_id=first[-1].id)
        want = api_server.session().get(api_server.api + f"/jobs/{job.job_id}/metrics",
                                        params={"max_points": 4, "before_step": 12}).json()["items"]
    assert [(p["step"], p["last_step"], p["count"]) for p in points_of(first)] == [(0, 3, 4), (4, 5, 2)]
    # the bucket of steps 4-7 comes again, now full; then the new one
    assert [(p["step"], p["last_step"], p["count"]) for p in points_of(second)] == [(4, 7, 4), (8, 9, 2)]
    merged = {p["step"]: p for p in points_of(first) + points_of(second)}
    bucket = merged[4]
    assert bucket["value"] == pytest.approx(sum(loss(s)[3] for s in range(4, 8)) / 4)
    assert (bucket["min"], bucket["max"], bucket["first"], bucket["last"]) == (1.5, 2.25, 1.5, 2.25)
    assert [p["bucket_steps"] for p in merged.values()] == [4, 4, 4]
    # the same keys as the buckets of GET /metrics
    assert all(set(p) == set(want[0]) for p in merged.values())


def test_a_series_written_late_for_a_step_already_sent_still_arrives(api_server):
    """An epoch series can land a flush after the step series of its step: the stream
    reads the cursor's step again and sends only what is new there."""
    from service.api.stream import Follower

    with running_job(api_server) as job:
        follower = Follower(job.job_id, None, 1, 0, -1)
        polls = []
        for write in ([loss(s) for s in range(5)], [("val_loss", 4, 0, 0.25)], [loss(5)], []):
            if write:
                job.points(write)
            with job.sessions() as s:
                messages, _ = follower.poll(s)
            polls.append([(p["name"], p["step"]) for m in messages if "event: points" in m
                          for p in json.loads(m.split("data: ", 1)[1])["items"]])
    assert polls == [[("loss", s) for s in range(5)], [("val_loss", 4)], [("loss", 5)], []]


def test_long_catch_ups_are_cut_between_steps_and_resume_from_any_cut(api_server, monkeypatch):
    from service.api import stream

    monkeypatch.setattr(stream, "ITEMS_PER_MESSAGE", 3)
    with running_job(api_server) as job:
        job.points([loss(s) for s in range(6)] + [("accuracy", s, 0, 0.5) for s in range(6)])
        job.finish()
        _, _, messages = read(api_server, job.job_id)
        batches = [m for m in messages if m.event == "points"]
        # a step's points stay in one message: 4 items each (2 steps of 2 series), not 3
        assert [[(p["step"], p["name"]) for p in m.data["items"]] for m in batches] == [
            [(s, n) for s in steps for n in ("accuracy", "loss")] for steps in ((0, 1), (2, 3), (4, 5))]
        assert [m.id.split(".")[1] for m in batches] == ["1", "3", "5"]
        _, _, rest = read(api_server, job.job_id, last_id=batches[0].id)
    assert [p["step"] for p in points_of(rest)] == [2, 2, 3, 3, 4, 4, 5, 5]


def test_a_quiet_stream_sends_keepalive_comments(api_server, monkeypatch):
    from service.api import stream

    monkeypatch.setattr(stream, "KEEPALIVE_S", 0.2)  # the pace, not the behaviour
    with running_job(api_server) as job:
        r, loose, messages = read(api_server, job.job_id)
    assert [m.event for m in messages] == ["status", "log", "log"]  # queued, running
    assert ": keepalive" in loose and r.text.index(": keepalive") > r.text.index("event: log")


def test_a_finished_job_streams_everything_then_end_and_closes(api_server):
    with running_job(api_server) as job:
        job.log("done soon")
        job.points([loss(s) for s in range(3)])
        job.finish("failed", "diverged")
        started = time.monotonic()
        _, _, messages = read(api_server, job.job_id)
    assert time.monotonic() - started < STREAM_MAX_S  # closed at its end, not by the time limit
    assert messages[0].data["status"] == "failed" and messages[0].data["error"] == "diverged"
    assert [e["message"] for e in events_of(messages)][-2:] == ["done soon", "failed: diverged"]
    assert [m.event for m in messages][-2:] == ["points", "end"]
    assert messages[-1].data == {"status": "failed"}
    assert messages[-1].id == f"{events_of(messages)[-1]['id']}.2"


def test_another_users_job_is_a_404_and_an_administrator_may_follow_it(api_server):
    with running_job(api_server, "alice") as job:
        job.finish()
        r = api_server.session("bob").get(api_server.api + f"/jobs/{job.job_id}/stream", stream=True)
        assert_problem(r, 404)
        r = api_server.session("alice").get(api_server.api + "/jobs/999999/stream", stream=True)
        assert_problem(r, 404)
        r = api_server.session(None).get(api_server.api + f"/jobs/{job.job_id}/stream")
        assert_problem(r, 401)
        _, _, messages = read(api_server, job.job_id, user="root")
    assert messages[-1].event == "end"


@pytest.mark.parametrize("value", ["", "7", "7.", ".3", "a.b", "1.-2", "-1.3", "1.2.3", "99999999999999999999.1",
                                   "1.9223372036854775808", "1.\u0663"])
def test_a_malformed_last_event_id_is_a_422_naming_it(api_server, value):
    with running_job(api_server) as job:
        r = api_server.session().get(api_server.api + f"/jobs/{job.job_id}/stream",
                                     headers={"Last-Event-ID": value.encode()})
    body = assert_problem(r, 422, "Last-Event-ID")
    assert "Last-Event-ID" in body["detail"]


@pytest.mark.parametrize(("params", "path"), [({"bucket_steps": 0}, "query.bucket_steps"),
                                              ({"after_step": -2}, "query.after_step"),
                                              ({"after_event": -1}, "query.after_event"),
                                              ({"limit": 3}, "query.limit")])
def test_a_bad_query_is_a_422_naming_the_field(api_server, params, path):
    with running_job(api_server) as job:
        r = api_server.session().get(api_server.api + f"/jobs/{job.job_id}/stream", params=params)
    assert_problem(r, 422, path)


def test_past_max_streams_the_answer_is_503_with_retry_after(api_server):
    with running_job(api_server) as job:
        url = api_server.api + f"/jobs/{job.job_id}/stream"
        open_ = [api_server.session().get(url, stream=True) for _ in range(API_SETTINGS["max_streams"])]
        assert [r.status_code for r in open_] == [200] * len(open_)
        busy = api_server.session().get(url)
        body = assert_problem(busy, 503)
        assert busy.headers["Retry-After"] == "5" and "poll" in body["detail"]
        open_.pop().close()  # a closed stream frees its place
        again = api_server.session().get(url, stream=True)
        assert again.status_code == 200
        for r in [*open_, again]:
            r.close()


def test_the_openapi_document_describes_the_stream(api_server):
    spec = api_server.session(None).get(api_server.api + "/openapi.json").json()
    op = spec["paths"]["/api/v1/jobs/{job_id}/stream"]["get"]
    assert "text/event-stream" in op["responses"]["200"]["content"]
    assert {"401", "404", "422", "503"} <= set(op["responses"])
    assert "Retry-After" in op["responses"]["503"]["headers"]
    assert {p["name"] for p in op["parameters"]} >= {"job_id", "name", "bucket_steps", "after_step", "after_event"}


# -- the client --------------------------------------------------------------------------------

def _count_streams(client: Any) -> list[int]:
    """The status of every /stream answer the client gets (a requests response hook)."""
    seen: list[int] = []
    client.session.hooks["response"].append(
        lambda r, *a, **k: seen.append(r.status_code) if r.url.split("?")[0].endswith("/stream") else None)
    return seen


def _write_while_following(job: Attempt, steps: int = 12) -> threading.Thread:
    def run() -> None:
        for s in range(steps):
            job.log(f"step {s}")
            job.points([loss(s)])
            time.sleep(0.1)
        job.finish()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_client_stream_follows_a_job_across_reconnects(api_server):
    client = api_server.client("alice")
    answers = _count_streams(client)
    with running_job(api_server) as job:
        writer = _write_while_following(job)
        got = list(client.stream(job.job_id))
        writer.join()
    assert got[0][0] == "status" and got[-1] == ("end", {"status": "succeeded"})
    assert [d for e, d in got if e == "log"] == all_events(api_server, job.job_id)
    points = [p for e, d in got if e == "points" for p in d["items"]]
    assert points == [as_stream_point(p) for p in raw_points(api_server, job.job_id)]
    assert [d["status"] for e, d in got if e == "status"][-1] == "succeeded"
    # the writer takes longer than one stream lives: the client reconnected, from where it was
    assert len(answers) >= 2 and set(answers) == {200}


def test_client_stream_without_points(api_server):
    client = api_server.client("alice")
    with running_job(api_server) as job:
        job.points([loss(s) for s in range(3)])
        job.finish()
        got = list(client.stream(job.job_id, names=[]))
    assert {e for e, _ in got} == {"status", "log", "end"}


@pytest.fixture
def polling_only(api_server, tmp_path, broker_url):
    """A second app on the same database that streams nothing (max_streams 0), and
    alice's client on it: every stream is refused with 503."""
    from service.api import create_app
    from service.shared.settings import Settings

    app = create_app(Settings(database_url=api_server.database_url, broker_url=broker_url,
                              artifact_dir=api_server.artifact_dir, max_streams=0))
    client = api_server.client("alice")
    client.session.mount(api_server.url + "/", WSGIAdapter(app))
    yield client
    app.extensions["trainyard"].engine.dispose()


@pytest.mark.parametrize("bucket_steps", [1, 4])
def test_the_polling_fallback_yields_what_the_stream_does(api_server, polling_only, bucket_steps, monkeypatch):
    import trainyard.client

    monkeypatch.setattr(trainyard.client, "_POLL_S", 0.05)  # the fallback's pace, not its behaviour
    answers = _count_streams(polling_only)
    with running_job(api_server) as job:
        job.log("a", "b")
        job.points([loss(s) for s in range(10)] + [("val_loss", 9, 0, 0.25)])
        job.finish()
        streamed = list(api_server.client("alice").stream(job.job_id, bucket_steps=bucket_steps))
        polled = list(polling_only.stream(job.job_id, bucket_steps=bucket_steps))
    assert answers == [503]
    assert [e for e, _ in polled] == [e for e, _ in streamed] == ["status", *["log"] * 5, "points", "end"]
    for (_, a), (_, b) in zip(streamed, polled, strict=True):
        if "items" in a:
            assert [{**p, "value": pytest.approx(p["value"])} for p in a["items"]] == b["items"]
        else:
            assert a == b


def test_the_polling_fallback_follows_a_running_job(api_server, polling_only, monkeypatch):
    import trainyard.client

    monkeypatch.setattr(trainyard.client, "_POLL_S", 0.05)
    with running_job(api_server) as job:
        writer = _write_while_following(job, steps=6)
        got = list(polling_only.stream(job.job_id, after_step=2))
        writer.join()
    assert [d for e, d in got if e == "log"] == all_events(api_server, job.job_id)
    assert [p["step"] for e, d in got if e == "points" for p in d["items"]] == [3, 4, 5]
    assert got[-1] == ("end", {"status": "succeeded"})


def test_client_stream_of_a_missing_job_raises_its_404(api_server):
    from trainyard.client import ApiError

    with pytest.raises(ApiError) as info:
        list(api_server.client("bob").stream(999999))
    assert info.value.status == 404


# -- the CLI, against a real server (gunicorn) ------------------------------------------------

def _cli(server: Any, *args: str, **kwargs: Any) -> subprocess.Popen:
    env = {**server.env, "TRAINYARD_URL": server.url, "TRAINYARD_TOKEN": server.tokens["alice"]}
    return subprocess.Popen(trainyard_cmd() + list(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def _next_line(proc: subprocess.Popen, timeout: float) -> str:
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert got, f"no line within {timeout} s"
    return got[0]


@pytest.mark.integration
@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_cli_logs_prints_the_events_and_follows_until_the_end(live_api_server, outcome):
    with running_job(live_api_server) as job:
        job.log("first line", "second line")
        shown = _cli(live_api_server, "logs", str(job.job_id))
        out, err = shown.communicate(timeout=60)
        assert shown.returncode == 0, err
        lines = out.splitlines()
        assert [line.split(None, 3)[2:] for line in lines] == [
            ["state", "queued"], ["state", "running (attempt 1) on test/1"], ["log", "first line"],
            ["log", "second line"]]
        as_json = _cli(live_api_server, "logs", str(job.job_id), "--json").communicate(timeout=60)[0]
        assert [json.loads(line) for line in as_json.splitlines()] == all_events(live_api_server, job.job_id)

        follow = _cli(live_api_server, "logs", str(job.job_id), "-f")
        try:
            for _ in lines:  # what happened so far, at once
                _next_line(follow, 15)
            for i in range(3):
                job.log(f"live {i}")
                # printed while the stream is open: well before it would close (60 s)
                assert _next_line(follow, 5).rstrip().endswith(f"log    live {i}")
            job.finish(outcome, None if outcome == "succeeded" else "diverged")
            assert _next_line(follow, 5).rstrip().endswith(outcome + (": diverged" if outcome == "failed" else ""))
            follow.wait(15)
            # through the file object: what readline buffered would escape communicate()
            rest, err = follow.stdout.read(), follow.stderr.read()
        finally:
            follow.kill()
    assert rest.splitlines() == [f"job {job.job_id} {outcome}" + (": diverged" if outcome == "failed" else "")]
    assert follow.returncode == (0 if outcome == "succeeded" else 1), err


@pytest.mark.integration
def test_cli_logs_of_another_users_job_fails_with_the_servers_message(live_api_server):
    with running_job(live_api_server, "bob") as job:
        proc = _cli(live_api_server, "logs", str(job.job_id), "-f")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "does not exist" in err and "Traceback" not in err
