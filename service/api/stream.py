"""GET /api/v1/jobs/<id>/stream: a job's status, log events and metric points as
Server-Sent Events, polled from the database and resumable with ``Last-Event-ID``.

    retry: 2000

    id: 7.-1
    event: status
    data: {"status": "running", "progress": {...}, "error": null, "updated_at": "..."}

    id: 8.-1
    event: log
    data: {"id": 8, "time": "...", "kind": "log", "message": "epoch 1/5 ..."}

    id: 8.40
    event: points
    data: {"items": [{"name": "loss", "step": 0, ...}, ...]}

    id: 9.99
    event: end
    data: {"status": "succeeded"}

Every message's id is ``<last event id sent>.<largest step sent>``: a client that
reconnects with it gets no event twice and no point missing. A points item is a
bucket of ``bucket_steps`` (a raw point for 1) shaped as GET /metrics gives it; the
first bucket after a reconnect may be a fuller version of one already sent, which a
client replaces by its ``step``. The stream ends with ``end`` once the job is finished
and all of it was sent, or after ``Settings.stream_max_s`` (reconnect and go on).
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from apiflask import APIBlueprint
from flask import Response, current_app, request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..store import metrics as metrics_store
from ..store import results as store
from ..store.db import unreachable
from ..store.errors import FieldProblem, Invalid
from ..store.models import Event, Job
from ..store.status import FINISHED, JobStatus
from .auth import auth, current_user
from .errors import problem
from .schemas import MAX_BIGINT, EventOut, MetricPoint, SeriesNames, iso
from .state import close_db, db, state

log = logging.getLogger(__name__)

bp = APIBlueprint("stream", __name__, url_prefix="/jobs", tag="Results")

#: how often a stream looks at the database, seconds
POLL_S = 0.25
#: a comment after this many seconds without a message, so proxies keep the connection,
#: and a client that left is noticed (its slot freed) within that time
KEEPALIVE_S = 5.0
#: what an EventSource waits before reconnecting, milliseconds
RETRY_MS = 2000
#: events read per poll; the rest come at the next one (and ``end`` waits for them)
EVENTS_PER_POLL = 500
#: points items per message at most (a message is cut only where the step changes)
ITEMS_PER_MESSAGE = 2000
LAST_EVENT_ID = "Last-Event-ID"
# [0-9], not \d: Python's \d takes every script's digits, and int() would read them
_LAST_EVENT_ID = re.compile(r"^([0-9]{1,19})\.(-1|[0-9]{1,19})$")


class StreamQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SeriesNames = Field(None, max_length=1000, description="Comma-separated series names; default all.")
    bucket_steps: int = Field(1, ge=1, le=MAX_BIGINT, description=(
        "Points as buckets of this many steps (count, mean as value, min, max, first, last), as GET /metrics "
        "with max_points gives them; 1 sends raw points."))
    after_step: int = Field(-1, ge=-1, le=MAX_BIGINT, description="Only points past this step.")
    after_event: int = Field(0, ge=0, le=MAX_BIGINT, description="Only events after this id.")


# -- the cursor: what has been sent, and what to send next ----------------------------------

@dataclass
class Follower:
    """One stream's position in a job: the last event id and the largest step sent,
    and what each poll has to add to them."""

    job_id: int
    names: list[str] | None
    bucket_steps: int
    event_id: int
    step: int
    status: dict[str, Any] | None = None
    #: (name, bucket step) -> what was sent of it, for the buckets the next poll reads again
    _sent: dict[tuple[str, int], tuple[Any, ...]] = field(default_factory=dict)
    _reread: bool = False
    #: the last poll left events unread: poll again without waiting
    behind: bool = False

    @property
    def id(self) -> str:
        return f"{self.event_id}.{self.step}"

    def poll(self, session: Session) -> tuple[list[str], bool]:
        """The messages that bring a client up to date, and whether the stream is done
        (the job finished and all of it was sent, or the job is gone)."""
        job = session.get(Job, self.job_id)
        if job is None:  # deleted meanwhile: close; the reconnect gets its 404
            return [], True
        # the status is read first: once it says finished, everything the job wrote
        # before finishing is visible to the reads below
        finished = job.status in FINISHED
        out: list[str] = []
        # attempts: a new attempt resumed from a checkpoint and replaced what the last
        # one wrote past it, so a client that drew those points reloads them
        status = {"status": job.status, "progress": job.progress, "error": job.error,
                  "updated_at": iso(job.updated_at), "attempts": job.attempts}
        if status != self.status:
            self.status = status
            out.append(self._message("status", status))
        events = list(session.scalars(select(Event).where(Event.job_id == self.job_id, Event.id > self.event_id)
                                      .order_by(Event.id).limit(EVENTS_PER_POLL)))
        for event in events:
            self.event_id = event.id
            out.append(self._message("log", EventOut.model_validate(event).model_dump(mode="json")))
        out += self._points(session)
        self.behind = len(events) == EVENTS_PER_POLL
        if finished and not self.behind:
            out.append(self._message("end", {"status": job.status}))
            return out, True
        return out, False

    def _points(self, session: Session) -> list[str]:
        # After the first points of this stream, the buckets at the cursor's step are read
        # again: a series that lags behind another (an epoch series written a flush
        # later than the step series of the same step) still gets its point at that step.
        # What was sent already is recognised and left out.
        after = self.step - 1 if self._reread else self.step
        fresh = [p for p in metrics_store.tail(session, self.job_id, self.names, after, self.bucket_steps)
                 if self._sent.get((p["name"], p["step"])) != _signature(p)]
        if not fresh:
            return []
        self._reread = True
        out, chunk = [], []
        width = self.bucket_steps
        for i, p in enumerate(fresh):
            chunk.append(p)
            self._sent[(p["name"], p["step"])] = _signature(p)
            last = i + 1 == len(fresh)
            # cut only between aligned buckets (steps, for raw points): an id then never
            # stands for part of a bucket's series, which a resume after it would skip
            if last or (len(chunk) >= ITEMS_PER_MESSAGE and fresh[i + 1]["step"] // width != p["step"] // width):
                self.step = max(self.step, *(q["last_step"] for q in chunk))
                out.append(self._message("points", {"items": [
                    MetricPoint.model_validate(q).model_dump(mode="json") for q in chunk]}))
                chunk = []
        # keep only what the next read can return again: buckets from the cursor's on
        floor = self.step // self.bucket_steps * self.bucket_steps
        self._sent = {k: v for k, v in self._sent.items() if k[1] >= floor}
        return out

    def _message(self, event: str, data: dict[str, Any]) -> str:
        return f"id: {self.id}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _signature(p: dict[str, Any]) -> tuple[Any, ...]:
    # a bucket grows (count, last_step) or, after a resumed attempt rewrote it, changes
    return p["count"], p["last_step"], p["value"], p["min"], p["max"]


def parse_last_event_id(value: str) -> tuple[int, int]:
    """``"<event id>.<step>"`` as this server sends it; Invalid (a 422) otherwise."""
    found = _LAST_EVENT_ID.match(value.strip())
    if found is None or int(found[1]) > MAX_BIGINT or int(found[2]) > MAX_BIGINT:
        raise Invalid(f"{LAST_EVENT_ID} must be an id this stream sent, \"<event id>.<step>\" such as "
                      f"\"12.340\", got {value[:40]!r}",
                      [FieldProblem(LAST_EVENT_ID, "must be <event id>.<step>, both whole numbers (step >= -1)")])
    return int(found[1]), int(found[2])


# -- how many streams a process serves ----------------------------------------------------

class _Slots:
    """A count of the streams open in this process, against ``Settings.max_streams``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open = 0

    def take(self, limit: int) -> Callable[[], None] | None:
        """A release function (idempotent) for a new stream, or None when ``limit`` are open."""
        with self._lock:
            if self.open >= limit:
                return None
            self.open += 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if not released.is_set():
                    released.set()
                    self.open -= 1

        return release


def _slots() -> _Slots:
    # one count per app (tests run several apps in one process)
    return current_app.extensions.setdefault("trainyard.streams", _Slots())


# -- the route ----------------------------------------------------------------------------

def _message_schema(event: str, data: dict[str, Any]) -> dict[str, Any]:
    """One message of the stream, as OpenAPI 3.1 describes an event of text/event-stream:
    its fields, with ``data`` a JSON document of ``data``'s schema."""
    return {"type": "object", "required": ["event", "id", "data"], "properties": {
        "event": {"const": event},
        "id": {"type": "string", "pattern": _LAST_EVENT_ID.pattern},
        "retry": {"type": "integer"},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data}}}


_STATUS_DATA = {"type": "object", "required": ["status", "progress", "error", "updated_at", "attempts"],
                "properties": {
                    "status": {"enum": [s.value for s in JobStatus]}, "progress": {"type": ["object", "null"]},
                    "error": {"type": ["string", "null"]}, "updated_at": {"type": "string"},
                    "attempts": {"type": "integer"}}}
_SSE_RESPONSE = {
    "description": "`retry`, then `status`, `log`, `points` and finally `end` messages, each with "
                   "`id: <last event id>.<largest step>` (send it back as Last-Event-ID to resume), and "
                   "`: keepalive` comments. It closes after `end`, or after the server's stream time limit: "
                   "reconnect with Last-Event-ID.",
    "content": {"text/event-stream": {"schema": {"oneOf": [
        _message_schema("status", _STATUS_DATA),
        _message_schema("log", EventOut.model_json_schema()),
        _message_schema("points", {"type": "object", "required": ["items"], "properties": {
            "items": {"type": "array", "items": MetricPoint.model_json_schema()}}}),
        _message_schema("end", {"type": "object", "required": ["status"], "properties": {
            "status": {"enum": [s.value for s in FINISHED]}}}),
    ]}}},
}


@bp.get("/<int:job_id>/stream")
@bp.auth_required(auth)
@bp.input(StreamQuery, location="query")
@bp.doc(summary="Follow a job live (Server-Sent Events)",
        description="The job's status whenever it changes, its events in order and its metric points (raw, or "
                    "buckets of bucket_steps), polled on the server. A `Last-Event-ID` header (an id this "
                    "stream sent) wins over after_event and after_step.",
        responses={200: _SSE_RESPONSE, 401: "Authentication error", 404: "No such job",
                   422: "Invalid query or Last-Event-ID",
                   503: {"description": "This server streams as many jobs as it may; poll GET /jobs/{job_id}, "
                                        "/events and /metrics instead, or retry after Retry-After seconds",
                         "headers": {"Retry-After": {"description": "Seconds to wait before retrying",
                                                     "schema": {"type": "integer"}}}}})
def stream(job_id: int, query_data: StreamQuery) -> Any:
    q = query_data
    event_id, step = q.after_event, q.after_step
    header = request.headers.get(LAST_EVENT_ID)
    if header is not None:
        event_id, step = parse_last_event_id(header)
    names = [n.strip() for n in q.name.split(",") if n.strip()] if q.name else None
    store.get_job(db(), current_user(), job_id)  # a 404 before the first byte, not inside the stream
    settings, sessions = state().settings, state().sessions
    release = _slots().take(settings.max_streams)
    if release is None:
        return problem(503, "Service Unavailable",
                       f"this server already streams {settings.max_streams} jobs at once; poll GET "
                       f"/api/v1/jobs/{job_id} instead, or retry shortly", headers={"Retry-After": "5"})
    close_db()  # the stream opens a session per poll; it holds none between them
    follower = Follower(job_id, names, q.bucket_steps, event_id, step)
    response = Response(_follow(sessions, follower, settings.stream_max_s), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    # on close, not in the generator's finally: a response closed before its first read
    # never runs the generator at all
    response.call_on_close(release)
    return response


def _follow(sessions: sessionmaker[Session], follower: Follower, max_s: float) -> Iterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    deadline = time.monotonic() + max_s
    quiet_since = time.monotonic()
    while True:
        try:
            with sessions() as session:  # closed before the sleep: no transaction spans it
                messages, done = follower.poll(session)
        except sa_exc.SQLAlchemyError as exc:
            if not unreachable(exc):
                raise
            # the client reconnects and is told 503 while the database stays away
            log.warning("stream of job %s: the database is unreachable, closing: %s", follower.job_id,
                        str(getattr(exc, "orig", None) or exc).strip().splitlines()[0])
            return
        if messages:
            yield "".join(messages)
            quiet_since = time.monotonic()
        if done or time.monotonic() >= deadline:
            return
        if time.monotonic() - quiet_since >= KEEPALIVE_S:
            yield ": keepalive\n\n"
            quiet_since = time.monotonic()
        if not follower.behind:
            time.sleep(POLL_S)
