"""What the HTTP server itself bounds, against the real ``trainyard api`` (gunicorn with
trainyard/httpworker.py): slow clients cost it a socket, not a thread (the API keeps
answering while 32 of them dribble their heads, and each is closed); a request line or
head over the bounds is answered at once with a problem document, not after seconds of
parsing, and not with gunicorn's HTML; a slow body times out with a 408 problem."""
from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import ApiServer, start_api_server, stop_api_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: what the server gives a client for its head (trainyard/httpworker.py HEADER_TIMEOUT_S),
#: with a margin for its once-a-second check and a loaded machine
CLOSED_WITHIN_S = 10.0 + 5.0
HEALTH_WITHIN_S = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ApiServer]:
    # SQLite: nothing here depends on the database
    s = start_api_server("sqlite", tmp_path_factory.mktemp("http-limits"), None)
    yield s
    stop_api_server(s)


def _address(server: ApiServer) -> tuple[str, int]:
    parts = urlsplit(server.url)
    return parts.hostname, parts.port


def _health_latencies(server: ApiServer, n: int, every_s: float = 0.3) -> list[float]:
    """Seconds each of ``n`` fresh GET /health took to answer (inf if it did not in 5 s)."""
    out = []
    for _ in range(n):
        started = time.monotonic()
        try:
            assert requests.get(server.api + "/health", timeout=5).status_code == 200
            out.append(time.monotonic() - started)
        except requests.Timeout:
            out.append(float("inf"))
        time.sleep(every_s)
    return out


class SlowClient(threading.Thread):
    """Sends ``data`` ``step`` bytes at a time, ``interval`` seconds apart, and notes when
    and how the server closed the connection; ``hold``: keeps its own end open after
    that until stopped."""

    def __init__(self, address: tuple[str, int], data: bytes, interval: float, step: int = 1,
                 hold: bool = False) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(address, timeout=5)
        self.data, self.interval, self.step, self.hold = data, interval, step, hold
        self.answer = b""
        self.closed_after: float | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        self.sock.settimeout(self.interval)
        sent = 0
        try:
            while not self.stopping.is_set():
                if sent < len(self.data):
                    self.sock.sendall(self.data[sent:sent + self.step])
                    sent += self.step
                try:
                    got = self.sock.recv(65536)
                except TimeoutError:
                    continue
                if not got:
                    break
                self.answer += got
        except OSError:
            pass  # reset by the server
        self.closed_after = time.monotonic() - started
        if self.hold:
            self.stopping.wait()
        self.sock.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


def _raw(address: tuple[str, int], data: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send ``data`` (from a thread, the server may answer before it is all sent) and
    return the whole answer and the seconds until its first byte."""
    sock = socket.create_connection(address, timeout=timeout)

    def send() -> None:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server answered and closed before all of it was sent

    started = time.monotonic()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer, first = b"", None
    try:
        while chunk := sock.recv(65536):
            first = first if first is not None else time.monotonic() - started
            answer += chunk
    except OSError:
        pass
    sock.close()
    sender.join(timeout)
    return answer, first if first is not None else float("inf")


def _problem(answer: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


def _assert_problem(answer: bytes, status: int, slug: str) -> dict:
    code, headers, body = _problem(answer)
    assert code == status, answer[:300]
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-content-type-options"] == "nosniff"
    assert body["type"] == f"https://trainyard.dev/problems/{slug}" and body["status"] == status
    assert body["title"] and body["detail"]
    return body


HEAD = (b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\n"
        + b"".join(b"X-Field-%d: value\r\n" % i for i in range(20)) + b"\r\n")


def test_slow_header_clients_cost_a_socket_not_a_thread(server):
    # 32 clients, twice the server's threads (2 workers x 8), each sending its head a
    # byte every 0.5 s: it would take them 4 minutes
    clients = [SlowClient(_address(server), HEAD, 0.5) for _ in range(32)]
    for c in clients:
        c.start()
    try:
        time.sleep(1.5)  # every one of them has sent a few bytes: gthread gave each a thread
        latencies = _health_latencies(server, 8)
        assert max(latencies) < HEALTH_WITHIN_S, f"/health took {latencies} s with 32 slow clients open"
        deadline = time.monotonic() + CLOSED_WITHIN_S
        for c in clients:
            c.join(max(0.0, deadline - time.monotonic()))
        assert all(c.closed_after is not None for c in clients), "every slow client is closed"
        assert max(c.closed_after for c in clients) < CLOSED_WITHIN_S
    finally:
        for c in clients:
            c.stop()
    answered = [c for c in clients if c.answer]
    assert answered, "the server says why it closes"
    for c in answered:
        _assert_problem(c.answer, 408, "request-timeout")
    assert requests.get(server.api + "/health", timeout=5).status_code == 200


def test_a_header_line_a_second_and_clients_that_never_close(server):
    # two more patterns: a whole header line every second (each read returns something,
    # so no per-read timeout ends it), and clients that got their answer with
    # "Connection: close" but never close their end (gunicorn lingers on those in a
    # blocking call of the worker's event loop, 2 s each)
    lines = [line + b"\r\n" for line in HEAD.split(b"\r\n")[:-1]]
    by_line = [SlowClient(_address(server), b"".join(lines), 1.0, step=len(lines[0])) for _ in range(16)]
    never_close = []
    for _ in range(16):
        c = SlowClient(_address(server), b"GET /api/v1/health HTTP/1.0\r\n\r\n", 0.5, step=1 << 16, hold=True)
        never_close.append(c)
    for c in by_line + never_close:
        c.start()
    try:
        time.sleep(1.5)
        latencies = _health_latencies(server, 8)
        assert max(latencies) < HEALTH_WITHIN_S, f"/health took {latencies} s"
        assert all(c.answer.startswith(b"HTTP/1.0 200 OK\r\n") for c in never_close)
    finally:
        for c in by_line + never_close:
            c.stop()


def test_an_8_mib_request_line_is_refused_at_once_with_a_problem(server):
    answer, first = _raw(_address(server), b"GET /api/v1/health?q=" + b"a" * (8 << 20)
                         + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert first < 1.0, f"answered after {first:.2f} s"
    body = _assert_problem(answer, 414, "uri-too-long")
    assert "8190" in body["detail"]
    assert requests.get(server.api + "/health", timeout=5).status_code == 200


def test_long_but_legal_urls_and_headers_still_work(server):
    # a request line just under the bound, and a header field just under its own
    target = "/api/v1/health?q=" + "a" * (8190 - len("GET /api/v1/health?q= HTTP/1.1") - 10)
    r = requests.get(server.url + target, headers={"X-Long": "b" * 8000}, timeout=5)
    assert r.status_code == 200, r.text
    # a long path that names nothing is the API's own 404 problem
    r = requests.get(server.api + "/jobs/" + "9" * 4000, timeout=5)
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("head, why", [
    (b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", "a field over 8190 bytes"),
    (b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(120)) + b"\r\n",
     "over 100 fields"),
    (b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"c" * 8000) for i in range(5))
     + b"\r\n", "a head over 32 KiB"),
    (b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n" + b"X-Endless: " + b"d" * (4 << 20), "a field that never ends"),
])
def test_header_fields_over_the_bounds_are_a_431_problem(server, head, why):
    answer, first = _raw(_address(server), head)
    assert first < 1.0, why
    _assert_problem(answer, 431, "header-fields-too-large")


def test_a_malformed_request_is_a_400_problem_not_html(server):
    answer, _ = _raw(_address(server), b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    _assert_problem(answer, 400, "bad-request")


def test_a_slow_body_times_out_with_a_408_problem(server):
    alice = f"Bearer {server.tokens['alice']}".encode()
    # small enough to be read with the head (by the event loop), and too large for that
    small = (b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: " + alice
             + b"\r\nContent-Length: 2000\r\n\r\n{")
    large = (b"POST /api/v1/datasets HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
             b"Authorization: " + alice + b"\r\nContent-Length: 1000000\r\n\r\n--b\r\n")
    started = time.monotonic()
    # 16 small ones cost sockets; the 4 large ones hold a thread each until they time out
    # (4 of a worker's 8 at worst), which only an authenticated client can make them do
    clients = [SlowClient(_address(server), small, 0.5, step=len(small)) for _ in range(16)]
    clients += [SlowClient(_address(server), large, 0.5, step=len(large)) for _ in range(4)]
    for c in clients:
        c.start()
    try:
        time.sleep(1.5)
        latencies = _health_latencies(server, 6)
        assert max(latencies) < HEALTH_WITHIN_S, f"/health took {latencies} s with 20 stalled bodies"
        for c in clients:
            c.join(max(0.0, started + 10.0 + 10.0 - time.monotonic()))
        assert all(c.closed_after is not None for c in clients), "every stalled body is given up on"
    finally:
        for c in clients:
            c.stop()
    for c in clients:
        body = _assert_problem(c.answer, 408, "request-timeout")
        assert "body" in body["detail"]


def test_an_unread_body_is_not_waited_for(server):
    # no token: the API answers 401 without reading the 1 MB body, which the client
    # never sends; the connection is closed after that answer, no thread waits on it
    head = (b"POST /api/v1/datasets HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 1000000\r\n\r\n")
    clients = [SlowClient(_address(server), head, 0.5, step=len(head)) for _ in range(32)]
    for c in clients:
        c.start()
    try:
        time.sleep(1.0)
        latencies = _health_latencies(server, 4)
        assert max(latencies) < HEALTH_WITHIN_S, f"/health took {latencies} s"
        for c in clients:
            c.join(8)
        assert all(c.closed_after is not None and c.closed_after < 8 for c in clients)
    finally:
        for c in clients:
            c.stop()
    for c in clients:
        code, headers, body = _problem(c.answer)
        assert code == 401 and headers["connection"] == "close", c.answer[:300]
