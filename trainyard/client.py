"""A Python client for the trainyard API: the same calls as the CLI, typed, with errors
raised as exceptions that carry the server's problem document.

>>> from trainyard import Client
>>> c = Client("http://127.0.0.1:8000", "ty_...")
>>> job = c.wait(c.submit(spec)["id"])
>>> c.download(job["id"], "best")
PosixPath('job-1-epoch-8.npz')
"""
from __future__ import annotations

import base64
import codecs
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import requests

# the store's catalog of statuses, which imports nothing but the standard library
from service.store.status import FINISHED, JobStatus

#: which checkpoint: the newest, the one marked best, or an epoch number
CheckpointRef = Literal["latest", "best"] | int

#: the largest step (a BIGINT): "points past it" are none
_NO_STEP = 2**63 - 1
#: seconds between polls when the server cannot stream
_POLL_S = 2.0


class ApiError(Exception):
    """A 4xx/5xx answer; ``problem`` is its RFC 9457 document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status, self.problem = status, problem
        lines = [f"{problem.get('title', 'Error')} ({status}): {problem.get('detail', '')}".rstrip(": ")]
        lines += [f"  - {e.get('path') or 'body'}: {e.get('message')}" for e in problem.get("errors", [])]
        super().__init__("\n".join(lines))


class ChecksumError(Exception):
    """A downloaded file whose sha256 is not the one the server recorded; the file is
    not kept."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        self.expected, self.actual = expected, actual
        super().__init__(f"{what} arrived with sha256 {actual[:12]}... but the server recorded "
                         f"{expected[:12]}...; the download was corrupted or the file changed on the "
                         "server, so it was not kept")


class NoSuchCheckpoint(LookupError):
    """The job has no checkpoint of that kind (none yet, none marked best, not that epoch)."""


@dataclass(frozen=True)
class OnnxExport:
    """An ONNX export (:meth:`Client.export_onnx_described`): the file's bytes and what they hold."""

    data: bytes
    job_id: int
    epoch: int
    #: whether early stopping's best parameters were exported rather than the checkpoint's own
    best_params: bool
    n_inputs: int
    n_outputs: int


class Client:
    """``Client(url, token)``; both default to TRAINYARD_URL and TRAINYARD_TOKEN.

    Every method raises :class:`ApiError` for an error answer and ``ConnectionError``
    when the server cannot be reached or does not answer within ``timeout`` seconds.
    """

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("TRAINYARD_URL") or "http://127.0.0.1:8000").rstrip("/")
        self.api = self.url + "/api/v1"
        self.timeout = timeout
        self.session = requests.Session()
        token = token or os.environ.get("TRAINYARD_TOKEN")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            resp = self.session.request(method, self.api + path, timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise ConnectionError(f"cannot reach the trainyard API at {self.url}; is it running "
                                  "(trainyard up), and is TRAINYARD_URL right?") from None
        except requests.Timeout:
            raise ConnectionError(f"the trainyard API at {self.url} did not answer within "
                                  f"{self.timeout:g} s") from None
        except requests.exceptions.InvalidJSONError:
            # NaN and Infinity are not JSON; nothing was sent
            raise ValueError(f"cannot send this to {path}: it holds NaN or Infinity, which JSON cannot "
                             "carry; replace them with numbers") from None
        if resp.status_code >= 400:
            try:
                problem = resp.json()
            except ValueError:
                problem = {"title": resp.reason, "status": resp.status_code, "detail": resp.text[:200]}
            finally:
                resp.close()
            raise ApiError(resp.status_code, problem)
        return resp

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._request(method, path, **kwargs)
        if resp.status_code == 204:
            return None
        if resp.headers.get("Content-Type", "").startswith("application/json"):
            return resp.json()
        return resp.content

    # -- jobs ------------------------------------------------------------------------------

    def submit(self, spec: dict[str, Any], priority: int = 0, idempotency_key: str | None = None) -> dict[str, Any]:
        """Queue a job; the answer is the job (status ``queued``). A repeated
        ``idempotency_key`` returns the job it first created instead of a new one."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/jobs", json={"spec": spec, "priority": priority}, headers=headers)

    def jobs(self, status: str | Iterable[JobStatus | str] | None = None, limit: int = 50,
             page_token: str | None = None) -> dict[str, Any]:
        """One page of your jobs, newest first: ``{"items": [...], "next_page_token": ...}``.
        ``status`` is comma-separated (``"queued,running"``) or a collection of statuses
        (``[JobStatus.QUEUED, JobStatus.RUNNING]``, or ``FINISHED``)."""
        if status is not None and not isinstance(status, str):
            wanted = {JobStatus(s) for s in status}  # a ValueError names an unknown status here
            status = ",".join(s.value for s in JobStatus if s in wanted)
        params = {k: v for k, v in {"status": status, "limit": limit, "page_token": page_token}.items() if v}
        return self._call("GET", "/jobs", params=params)

    def job(self, job_id: int) -> dict[str, Any]:
        """One job: status, progress, result (the training summary once it ended), spec."""
        return self._call("GET", f"/jobs/{job_id}")

    def wait(self, job_id: int, timeout: float | None = None, poll_s: float = 0.5) -> dict[str, Any]:
        """Poll the job until it has ended (succeeded, failed or cancelled) and return it;
        ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in FINISHED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout:g} s")
            time.sleep(poll_s)

    def stream(self, job_id: int, names: str | Sequence[str] | None = None, bucket_steps: int = 1,
               after_step: int = -1, after_event: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
        """Follow a job live: ``(event, data)`` pairs until the job has ended.

        - ``("status", {"status", "progress", "error", "updated_at", "attempts"})`` first and on every change;
        - ``("log", {"id", "time", "kind", "message"})`` for each event, in order;
        - ``("points", {"items": [...]})``: metric points as GET /metrics gives them, in
          buckets of ``bucket_steps`` (1: raw points); a bucket may come again, fuller:
          replace it by its ``name`` and ``step``;
        - ``("end", {"status"})`` last, once everything up to the end was given.

        ``names`` picks the series (default all; an empty list: no points at all).
        Read from the server's event stream (``GET /jobs/<id>/stream``), reconnecting
        where it left off when the server closes it; a server that will not stream
        (busy: 503, or older, without the route) is polled every 2 s instead, with the
        same pairs.
        """
        no_points = names is not None and not isinstance(names, str) and len(names) == 0
        if names is not None and not isinstance(names, str):
            names = ",".join(names)
        if no_points:
            after_step = _NO_STEP  # no series reaches past the largest step
        params: dict[str, Any] = {"bucket_steps": bucket_steps, "after_step": after_step,
                                  "after_event": after_event, **({"name": names} if names else {})}
        parser = _EventStream()
        while True:
            headers = {"Accept": "text/event-stream"}
            if parser.last_id:
                headers["Last-Event-ID"] = parser.last_id
            try:
                resp = self._request("GET", f"/jobs/{job_id}/stream", params=params, headers=headers, stream=True)
            except ApiError as exc:
                if exc.status == 503 or (exc.status == 404 and self._no_stream_route(job_id)):
                    if parser.last_id:
                        params["after_event"], params["after_step"] = _cursor(parser.last_id)
                    yield from self._poll(job_id, names or None, bucket_steps, params["after_step"],
                                          params["after_event"], no_points)
                    return
                raise
            try:
                with resp:
                    for chunk in resp.iter_content(chunk_size=None):
                        for event, data in parser.feed(chunk):
                            yield event, data
                            if event == "end":
                                return
            except requests.RequestException:
                pass  # the connection broke: reconnect from the last id, as after a close
            time.sleep(parser.retry_s)

    def _no_stream_route(self, job_id: int) -> bool:
        """Whether a 404 from /stream means the server has no such route (the job exists)
        rather than no such job (then the job's own 404 is raised)."""
        self.job(job_id)
        return True

    def _poll(self, job_id: int, names: str | None, bucket_steps: int, after_step: int, after_event: int,
              no_points: bool) -> Iterator[tuple[str, dict[str, Any]]]:
        """:meth:`stream`'s pairs from GET /jobs/<id>, /events and /metrics, every 2 s."""
        status: dict[str, Any] | None = None
        while True:
            # the job first: once it says finished, all it wrote before is in the reads below
            job = self.job(job_id)
            now = {k: job.get(k) for k in ("status", "progress", "error", "updated_at", "attempts")}
            if now != status:
                status = now
                yield "status", now
            while True:
                page = self.events(job_id, after_id=after_event, limit=1000)
                for event in page["items"]:
                    after_event = event["id"]
                    yield "log", event
                if page.get("next_after_id") is None:
                    break
            # each bucket that reaches past the last step sent, from its first step
            start = (after_step + 1) // bucket_steps * bucket_steps
            if not no_points and start <= _NO_STEP:
                raw = self.metrics(job_id, names, after_step=start - 1 if start > 0 else None)
                items = [b for b in _buckets(raw, bucket_steps) if b["last_step"] > after_step]
                if items:
                    after_step = max(b["last_step"] for b in items)
                    yield "points", {"items": items}
            if job["status"] in FINISHED:
                yield "end", {"status": job["status"]}
                return
            time.sleep(_POLL_S)

    def cancel(self, job_id: int) -> dict[str, Any]:
        """Cancel a job; a running one stops at its next step (the answer still says running)."""
        return self._call("POST", f"/jobs/{job_id}/cancel")

    def delete(self, job_id: int) -> None:
        """Delete a finished job with its metrics and checkpoint files."""
        self._call("DELETE", f"/jobs/{job_id}")

    def events(self, job_id: int, after_id: int | None = None, limit: int = 100) -> dict[str, Any]:
        """A page of the job's events (state changes, log lines):
        ``{"items": [...], "next_after_id": ...}``."""
        params = {"limit": limit, **({"after_id": after_id} if after_id is not None else {})}
        return self._call("GET", f"/jobs/{job_id}/events", params=params)

    # -- results ---------------------------------------------------------------------------

    def metrics(self, job_id: int, names: str | Sequence[str] | None = None, *, after_step: int | None = None,
                before_step: int | None = None, max_points: int | None = None,
                page_size: int = 10_000) -> list[dict[str, Any]]:
        """Metric points ``{"name", "step", "epoch", "value", "time"}`` ordered by step, then
        name: every point of the series ``names`` (comma-separated or a list; default all),
        fetched page by page.

        With ``max_points`` each series comes downsampled to at most that many points in
        one answer (its first and last points and each step range's minimum and maximum).
        """
        if names is not None and not isinstance(names, str):
            names = ",".join(names)
        params: dict[str, Any] = {k: v for k, v in {"name": names or None, "after_step": after_step,
                                                    "before_step": before_step}.items() if v is not None}
        if max_points is not None:
            # a downsampled answer is whole; the server takes no page size or token with it
            return self._call("GET", f"/jobs/{job_id}/metrics", params={**params, "max_points": max_points})["items"]
        params["limit"] = page_size
        items: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", f"/jobs/{job_id}/metrics", params=params)
            items += page["items"]
            if not page.get("next_page_token"):
                return items
            params["page_token"] = page["next_page_token"]

    def checkpoints(self, job_id: int) -> list[dict[str, Any]]:
        """The job's checkpoints by epoch, oldest first: epoch, step, sha256, size_bytes,
        metrics, is_best, created_at, download_url."""
        return self._call("GET", f"/jobs/{job_id}/checkpoints")["items"]

    def checkpoint(self, job_id: int, which: CheckpointRef = "latest") -> dict[str, Any]:
        """One checkpoint of the listing: the latest, the one marked best, or of an epoch.
        :class:`NoSuchCheckpoint` (with a message for a person) if there is none."""
        rows = self.checkpoints(job_id)
        if not rows:
            raise NoSuchCheckpoint(f"job {job_id} has no checkpoint yet (the first is written after "
                              "checkpoint_every epochs)")
        if which == "latest":
            return rows[-1]
        if which == "best":
            best = [r for r in rows if r["is_best"]]
            if not best:
                raise NoSuchCheckpoint(f"job {job_id} has no checkpoint marked best; its epochs: {_epochs(rows)}")
            return best[-1]
        found = [r for r in rows if r["epoch"] == which]
        if not found:
            raise NoSuchCheckpoint(f"job {job_id} has no checkpoint of epoch {which}; its epochs: {_epochs(rows)}")
        return found[-1]

    def download(self, job_id: int, which: CheckpointRef = "latest", path: str | Path | None = None,
                 chunk_bytes: int = 1 << 20) -> Path:
        """Download a checkpoint (.npz) and return where it was written.

        ``path`` defaults to ``job-<id>-epoch-<epoch>.npz`` in the current folder; an
        existing folder gets that name inside it. The file streams to a temporary file
        next to ``path`` and is renamed only once its sha256 equals the one in the
        checkpoint listing, so ``path`` never holds a partial or corrupt file
        (:class:`ChecksumError` otherwise). :class:`NoSuchCheckpoint` if there is none.
        """
        ckpt = self.checkpoint(job_id, which)
        name = f"job-{job_id}-epoch-{ckpt['epoch']}.npz"
        target = Path(name) if path is None else Path(path)
        if target.is_dir():
            target = target / name
        digest = hashlib.sha256()
        # not mkstemp: its files are private (0600), and the checkpoint should get the
        # permissions any other file of the user gets
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.part"
        try:
            with open(tmp, "xb") as fh:
                resp = self._request("GET", f"/jobs/{job_id}/checkpoints/{ckpt['epoch']}", stream=True)
                with resp:
                    for chunk in resp.iter_content(chunk_bytes):
                        fh.write(chunk)
                        digest.update(chunk)
            actual = digest.hexdigest()
            what = f"the checkpoint of epoch {ckpt['epoch']} of job {job_id}"
            if actual != ckpt["sha256"]:
                raise ChecksumError(what, ckpt["sha256"], actual)
            header = _repr_digest(resp.headers.get("Repr-Digest"))
            if header is not None and header != actual:
                raise ChecksumError(what, header, actual)
            os.replace(tmp, target)
        except requests.RequestException as exc:  # the connection broke mid-file
            tmp.unlink(missing_ok=True)
            raise ConnectionError(f"the download from {self.url} broke off: {exc}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target

    def export_onnx(self, job_id: int, checkpoint: CheckpointRef = "latest") -> bytes:
        """The model of a job's checkpoint as ONNX bytes (input ``input``: raw feature rows,
        float32 [N, n_features]; output ``output``: what :meth:`predict` gives). ``checkpoint``
        is resolved as predict resolves it: "best" is the checkpoint marked best, or else
        the latest one with early stopping's best parameters. :class:`NoSuchCheckpoint` if
        there is none; an :class:`ApiError` 501 when the server lacks the onnx packages."""
        return self.export_onnx_described(job_id, checkpoint).data

    def export_onnx_described(self, job_id: int, checkpoint: CheckpointRef = "latest") -> OnnxExport:
        """:meth:`export_onnx` with what was exported: the checkpoint's epoch, whether its
        best parameters were used, and the model's input and output widths."""
        rows = self.checkpoints(job_id)
        best_params = False
        if checkpoint == "best" and rows and not any(r["is_best"] for r in rows):
            ckpt, best_params = rows[-1], True  # as predict does
        else:
            ckpt = self.checkpoint(job_id, checkpoint)
        path = f"/jobs/{job_id}/checkpoints/{ckpt['epoch']}/model.onnx"
        resp = self._request("GET", path, params={"best_params": "true"} if best_params else None)
        data = resp.content
        header = _repr_digest(resp.headers.get("Repr-Digest"))
        actual = hashlib.sha256(data).hexdigest()
        if header is not None and header != actual:
            raise ChecksumError(f"the ONNX export of epoch {ckpt['epoch']} of job {job_id}", header, actual)
        return OnnxExport(data, job_id, ckpt["epoch"], best_params, int(resp.headers.get("Model-Inputs", 0)),
                          int(resp.headers.get("Model-Outputs", 0)))

    def predict(self, job_id: int, inputs: Iterable[Sequence[float]], checkpoint: CheckpointRef = "latest"
                ) -> dict[str, Any]:
        """Outputs of a job's checkpoint for raw (unstandardised) input rows (lists or a 2-D
        array): ``{"outputs": [[...]], "labels": [...] or None, "checkpoint": {...}}``;
        ``labels`` are class indices for classifiers."""
        rows = inputs.tolist() if hasattr(inputs, "tolist") else [list(r) for r in inputs]
        return self._call("POST", f"/jobs/{job_id}/predict", json={"inputs": rows, "checkpoint": checkpoint})

    # -- datasets --------------------------------------------------------------------------

    def upload_dataset(self, path: str | Path, name: str | None = None, target: str | None = None) -> dict[str, Any]:
        """Upload a .csv (numbers, optional header row, target column by ``target`` name or
        index, default the last) or a .npz with arrays X and y; the answer describes the
        checked dataset (id, n_samples, n_features, task, ...). Use its id in a job spec as
        ``"data": {"dataset_id": id}``."""
        path = Path(path)
        data = {k: v for k, v in {"name": name, "target": target}.items() if v}
        with open(path, "rb") as fh:
            return self._call("POST", "/datasets", files={"file": (path.name, fh)}, data=data)

    def datasets(self, limit: int = 50, page_token: str | None = None) -> dict[str, Any]:
        """One page of your datasets, newest first: ``{"items": [...], "next_page_token": ...}``."""
        params = {"limit": limit, **({"page_token": page_token} if page_token else {})}
        return self._call("GET", "/datasets", params=params)

    def dataset(self, dataset_id: int) -> dict[str, Any]:
        """One dataset's description."""
        return self._call("GET", f"/datasets/{dataset_id}")

    def delete_dataset(self, dataset_id: int) -> None:
        """Delete a dataset and its file (refused with 409 while a queued or running job uses it)."""
        self._call("DELETE", f"/datasets/{dataset_id}")

    # -- tokens ----------------------------------------------------------------------------

    def tokens(self, user: str | None = None, all_users: bool = False) -> list[dict[str, Any]]:
        """Your API tokens by id (revoked and expired ones too): id, name, user,
        created_at, last_used_at, expires_at, revoked_at, expired; never a secret. An
        administrator may ask for ``user``'s or (``all_users``) everyone's."""
        params = {k: v for k, v in {"user": user, "all": "true" if all_users else None}.items() if v}
        return self._call("GET", "/tokens", params=params)["items"]

    def create_token(self, name: str, expires_in_days: int | None = None, expires_at: datetime | str | None = None,
                     user: str | None = None) -> dict[str, Any]:
        """A new token named ``name`` (what it is for), for you or (administrators) for
        ``user``; it never expires unless given ``expires_in_days`` or ``expires_at`` (an
        aware datetime or RFC 3339 text). The answer is the token's entry with its secret
        under ``token``: shown only this once."""
        if isinstance(expires_at, datetime):
            expires_at = expires_at.isoformat()
        body = {k: v for k, v in {"name": name, "expires_in_days": expires_in_days, "expires_at": expires_at,
                                  "user": user}.items() if v is not None}
        return self._call("POST", "/tokens", json=body)

    def revoke_token(self, token_id: int) -> None:
        """Revoke a token (this client's own too: its next call is then a 401)."""
        self._call("DELETE", f"/tokens/{token_id}")

    # -- the service ---------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """Who this token belongs to: ``{"name": ..., "is_admin": ...}``."""
        return self._call("GET", "/me")

    def workers(self) -> list[dict[str, Any]]:
        """Workers seen in the last day (alive, lost or stopped), each with the running
        jobs you may see and how many it runs in all."""
        return self._call("GET", "/workers")["items"]

    def health(self) -> dict[str, Any]:
        """Whether the API reaches its database and broker (the problem document when not)."""
        try:
            return self._call("GET", "/health")
        except ApiError as exc:
            return exc.problem


class _EventStream:
    """An incremental Server-Sent Events parser (the WHATWG rules this API needs):
    bytes in, complete ``(event, data)`` messages out, with the last ``id`` and the
    server's ``retry`` delay kept for the reconnect."""

    def __init__(self) -> None:
        self.last_id = ""
        self.retry_s = 2.0
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str, dict[str, Any]]]:
        self._text += self._decode.decode(chunk)
        out = []
        while True:
            cut = min((i for i in (self._text.find("\n"), self._text.find("\r")) if i >= 0), default=-1)
            # a \r at the end may be the first half of \r\n: wait for the next chunk
            if cut < 0 or (self._text[cut] == "\r" and cut + 1 == len(self._text)):
                return out
            line = self._text[:cut]
            skip = 2 if self._text.startswith("\r\n", cut) else 1
            self._text = self._text[cut + skip:]
            message = self._line(line)
            if message is not None:
                out.append(message)

    def _line(self, line: str) -> tuple[str, dict[str, Any]] | None:
        if not line:  # a blank line ends a message
            event, data = self._event or "message", self._data
            self._event, self._data = "", []
            return (event, json.loads("\n".join(data))) if data else None
        if line.startswith(":"):  # a comment: the keepalive
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry_s = int(value) / 1000
        return None


def _cursor(last_id: str) -> tuple[int, int]:
    """(after_event, after_step) of a stream id ``<event id>.<step>``."""
    event, _, step = last_id.partition(".")
    return int(event), int(step)


def _buckets(points: list[dict[str, Any]], width: int) -> list[dict[str, Any]]:
    """Raw points (ordered by step) as the stream's buckets of ``width`` steps: the
    first point's step and epoch, the last's step, count, mean as value, min, max,
    first, last and the latest time."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for p in points:
        key = (p["name"], p["step"] // width)
        b = out.get(key)
        if b is None:
            out[key] = {"name": p["name"], "step": p["step"], "epoch": p["epoch"], "value": p["value"],
                        "time": p["time"], "last_step": p["step"], "count": 1, "min": p["value"],
                        "max": p["value"], "first": p["value"], "last": p["value"], "bucket_steps": width,
                        "_total": p["value"]}
            continue
        b["count"] += 1
        b["_total"] += p["value"]
        b["last_step"], b["last"] = p["step"], p["value"]
        b["min"], b["max"] = min(b["min"], p["value"]), max(b["max"], p["value"])
        if datetime.fromisoformat(p["time"]) > datetime.fromisoformat(b["time"]):
            b["time"] = p["time"]
    items = []
    for b in out.values():
        b["value"] = b.pop("_total") / b["count"]
        items.append(b)
    items.sort(key=lambda b: (b["step"], b["name"]))
    return items


def _epochs(rows: list[dict[str, Any]]) -> str:
    shown = ", ".join(str(r["epoch"]) for r in rows[-10:])
    return ("..., " if len(rows) > 10 else "") + shown


def _repr_digest(header: str | None) -> str | None:
    """The sha-256 of an RFC 9530 ``Repr-Digest: sha-256=:<base64>:`` header, in hex."""
    for part in (header or "").split(","):
        algo, _, value = part.strip().partition("=")
        if algo.lower() == "sha-256" and value.startswith(":") and value.endswith(":"):
            try:
                return base64.b64decode(value[1:-1], validate=True).hex()
            except ValueError:
                return None
    return None
