"""gunicorn's threaded worker, made to cost a slow client a socket rather than a thread.

gunicorn's ``gthread`` hands a connection to a thread as soon as its first byte arrives
(27.0 waits up to 5 s for that byte in the thread, then parks it): from there the thread
reads the request with blocking reads and no deadline, so a client that sends its head
a byte every few seconds holds a thread for as long as it likes, and a handful of them
hold every thread of the server. ``HeadBufferingWorker`` reads each request's head
(request line and header fields) in the worker's event loop instead, non-blocking and
bounded in size and time, together with its body when that is small, and gives the
connection to a thread only once all of it is here. A thread still reads a large body
(an upload), but each of those reads waits ``BODY_TIMEOUT_S`` at most and the body has
to keep up ``MIN_BODY_RATE`` on average; the event stream (SSE) holds its thread for as
long as it is open, by design, as it did.

The server answers what it refuses by itself with RFC 9457 problem documents like the
API's: 414 for a request line over ``MAX_REQUEST_LINE``, 431 for a head over
``MAX_HEAD_BYTES`` (or gunicorn's own field limits), 408 for a head not in by
``HEADER_TIMEOUT_S``, 400 for what gunicorn's parser rejects. It closes a connection
by lingering on it in the event loop (half-closed, discarding what the client still
sends, ``LINGER_S`` at most) so that the answer is not lost to a reset, where gunicorn
lingers in a blocking call on the event loop's own thread.

Plain HTTP/1.1 only: with TLS or HTTP/2 configured, it is gunicorn's gthread unchanged.
"""
from __future__ import annotations

import errno
import json
import math
import re
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from functools import partial
from typing import Any

from gunicorn import http, util
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker
from werkzeug.exceptions import RequestTimeout

from service.api.errors import PROBLEM_MEDIA_TYPE, problem_type

#: longest request line (method, target, version) in bytes; gunicorn's own maximum
MAX_REQUEST_LINE = 8190
#: longest header field line, and most header fields (gunicorn checks these two)
MAX_HEADER_FIELD = 8190
MAX_HEADER_FIELDS = 100
#: the whole head, request line and header fields; nginx's default is 4 x 8 KiB too
MAX_HEAD_BYTES = 32 * 1024
#: seconds a client has for its head, from connecting (or from the first byte of the
#: next request on a kept-alive connection)
HEADER_TIMEOUT_S = 10.0
#: bodies of known length up to this are read with the head, in the event loop: a job
#: submission is a few KiB; larger ones (uploads) are read by the thread
BUFFERED_BODY_BYTES = 64 * 1024
#: longest wait for the next piece of a body: in the event loop for a small one (all of
#: it), in the thread for each read of a large one
BODY_TIMEOUT_S = 10.0
#: a large body must arrive this fast on average (bytes a second), after BODY_GRACE_S:
#: each read's timeout alone would let a client trickle a byte every few seconds
MIN_BODY_RATE = 16 * 1024
BODY_GRACE_S = 10.0
#: seconds a closed connection is read and discarded before it is dropped
LINGER_S = 2.0

_REASONS = {400: "Bad Request", 408: "Request Timeout", 414: "URI Too Long",
            431: "Request Header Fields Too Large"}
# header fields that decide whether the body can be read with the head; matched on the
# head from the end of the request line, so each field starts after a CRLF
_BODY_FIELDS = re.compile(rb"\r\n(transfer-encoding|expect|content-length)[ \t]*:", re.IGNORECASE)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([0-9]{1,18})[ \t]*\r\n", re.IGNORECASE)


def problem_bytes(status: int, detail: str, title: str | None = None) -> bytes:
    """A whole HTTP/1.1 response carrying the problem document for ``status``; the
    connection closes after it."""
    title = title or _REASONS.get(status, "Error")
    body = json.dumps({"type": problem_type(status), "title": title, "status": status, "detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {title}\r\nDate: {util.http_date()}\r\nConnection: close\r\n"
            f"Content-Type: {PROBLEM_MEDIA_TYPE}\r\nContent-Length: {len(body)}\r\n"
            "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\r\n")
    return head.encode("latin-1") + body


def _write_problem(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    # stands in for gunicorn.util.write_error (its HTML page) in this worker's process
    util.write_nonblock(sock, problem_bytes(status_int, mesg or reason, reason))


class BodyTimeout(RequestTimeout):
    """A body that stopped arriving, or arrives too slowly. A werkzeug HTTPException, so
    the API answers it as a 408 problem like any other; deliberately not an OSError,
    which werkzeug would take for a client that went away (a 400)."""

    description = "the request body did not arrive in time"


class _TimedUnreader(SocketUnreader):
    """gunicorn's socket reader for a thread, whose reads wait ``BODY_TIMEOUT_S`` at
    most and which gives up on a body slower than ``MIN_BODY_RATE``."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.start_request()

    def start_request(self) -> None:
        self.waited = 0.0
        self.received = 0
        self.timed_out = False

    def chunk(self, size_hint: int | None = None) -> bytes:
        if self.timed_out:
            raise BodyTimeout()
        # the time spent waiting for this client, not the application's own time, is
        # what the rate is measured on
        budget = BODY_GRACE_S + self.received / MIN_BODY_RATE - self.waited
        bound = self.sock.gettimeout()  # set by gunicorn while it drains an unread body
        wait = max(0.0, min(BODY_TIMEOUT_S, budget, math.inf if bound is None else bound))
        started = time.monotonic()
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        ready = poller.poll(wait * 1000)
        self.waited += time.monotonic() - started
        if not ready:
            self.timed_out = True
            raise BodyTimeout()
        data = super().chunk(size_hint)
        self.received += len(data)
        return data


class HeadBufferingWorker(ThreadWorker):
    """See the module's documentation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffering = not self.cfg.is_ssl and self.cfg.http2_cleartext not in ("prior-knowledge", "both")
        # connections whose request is being read, and closed ones lingering, by the event loop
        self.reading: dict[TConn, None] = {}
        self.lingering: dict[TConn, None] = {}
        self.stop_deadline: float | None = None
        self.local = threading.local()

    def init_process(self) -> None:
        # gunicorn writes the errors of its parser (and of an application that fails
        # outright) as an HTML page through this function; this process is this worker's
        util.write_error = _write_problem
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = self._close_when_body_unread(self.wsgi)

    # -- the event loop -------------------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        if not self.buffering:
            return super().accept(listener)
        try:
            client, addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._read_request(TConn(self.cfg, client, addr, listener.getsockname()), b"")

    def enqueue_req(self, conn: TConn) -> None:
        # gunicorn calls this for a kept-alive connection that became readable: its next
        # request is read here too, with what a body drain may have read ahead of it
        if not self.buffering:
            return super().enqueue_req(conn)
        ahead = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        self._read_request(conn, ahead)

    def _read_request(self, conn: TConn, data: bytes) -> None:
        conn.sock.setblocking(False)
        conn.head = bytearray(data)
        conn.scanned = 0
        conn.line_end = -1
        conn.need = None  # bytes of head and buffered body, once the head is in
        conn.registered = False
        conn.deadline = time.monotonic() + HEADER_TIMEOUT_S
        self.reading[conn] = None
        if data and self._examine(conn):
            return
        try:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
        except (OSError, ValueError, KeyError):  # the client is gone already
            self._stop_reading(conn)
            self._close(conn)
            return
        conn.registered = True

    def _on_readable(self, conn: TConn, _sock: socket.socket) -> None:
        try:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._stop_reading(conn)
                self._close(conn)
                return
            conn.head += data
            self._examine(conn)
        except Exception:
            # an error here would end the event loop, and the worker with every connection
            self.log.exception("Error reading a request")
            self._stop_reading(conn)
            self._close(conn)

    def _examine(self, conn: TConn) -> bool:
        """Dispatch or refuse the request once enough of it is here; whether it was."""
        buf: bytearray = conn.head
        if conn.need is None:
            start = 2 if buf[:2] == b"\r\n" else 0  # RFC 9112 2.2: one empty line may come first
            if conn.line_end < 0:
                conn.line_end = buf.find(b"\r\n", max(start, conn.scanned - 1))
                line = (conn.line_end if conn.line_end >= 0 else len(buf)) - start
                if line > MAX_REQUEST_LINE:
                    return self._refuse(conn, 414, f"the request line is longer than this server accepts "
                                                   f"({MAX_REQUEST_LINE} bytes)")
            end = buf.find(b"\r\n\r\n", max(conn.line_end, conn.scanned - 3)) if conn.line_end >= 0 else -1
            if self._bare_lf(buf, conn.scanned, end + 4 if end >= 0 else len(buf)):
                # gunicorn's parser answers that (400) without waiting for more
                return self._dispatch(conn)
            conn.scanned = len(buf)
            if end < 0 and len(buf) <= MAX_HEAD_BYTES:
                return False
            if end < 0 or end + 4 > MAX_HEAD_BYTES:
                return self._refuse(conn, 431, f"the request's header fields are larger than this server accepts "
                                               f"({MAX_HEAD_BYTES} bytes with the request line)")
            conn.need = end + 4 + self._buffered_body(bytes(buf[conn.line_end:end + 2]))
            if conn.need > end + 4:
                conn.deadline = time.monotonic() + BODY_TIMEOUT_S
        if len(buf) >= conn.need:
            return self._dispatch(conn)
        return False

    @staticmethod
    def _bare_lf(buf: bytearray, start: int, stop: int) -> bool:
        i = buf.find(b"\n", start, stop)
        while i >= 0:
            if i == 0 or buf[i - 1] != 0x0D:
                return True
            i = buf.find(b"\n", i + 1, stop)
        return False

    @staticmethod
    def _buffered_body(fields: bytes) -> int:
        """How many bytes of body to read with this head: its Content-Length when small;
        none for a chunked body, ``Expect: 100-continue`` (the client waits for the
        application to ask) or a length gunicorn will refuse."""
        if [name.lower() for name in _BODY_FIELDS.findall(fields)] != [b"content-length"]:
            return 0
        length = _CONTENT_LENGTH.search(fields)
        return int(length[1]) if length and int(length[1]) <= BUFFERED_BODY_BYTES else 0

    def _stop_reading(self, conn: TConn) -> None:
        self.reading.pop(conn, None)
        if getattr(conn, "registered", False):
            conn.registered = False
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _dispatch(self, conn: TConn) -> bool:
        self._stop_reading(conn)
        data, conn.head = bytes(conn.head), None
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            conn.parser.unreader = _TimedUnreader(conn.sock)
        conn.parser.unreader.unread(data)
        conn.data_ready = True  # gthread's handle() is not to wait for data: it is here
        super().enqueue_req(conn)
        return True

    def _refuse(self, conn: TConn, status: int, detail: str) -> bool:
        self._stop_reading(conn)
        level = self.log.info if status == 408 else self.log.warning
        level("Invalid request from ip=%s: %s %s", conn.client[0] if conn.client else "", status, detail)
        try:
            conn.sock.send(problem_bytes(status, detail))
        except OSError:
            pass
        self._linger(conn)
        return True

    def _linger(self, conn: TConn) -> None:
        """Close after the answer: FIN first, then read and drop what the client still
        sends for LINGER_S at most, so that the kernel does not answer it with a reset
        that would discard the response before the client read it (RFC 9112 9.6)."""
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_linger_readable, conn))
        except (OSError, ValueError, KeyError):  # gone already
            self._close(conn)
            return
        conn.deadline = time.monotonic() + LINGER_S
        self.lingering[conn] = None

    def _on_linger_readable(self, conn: TConn, _sock: socket.socket) -> None:
        try:
            if conn.sock.recv(65536):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass  # reset: done
        self._end_linger(conn)

    def _end_linger(self, conn: TConn) -> None:
        self.lingering.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        self._close(conn)

    def _close(self, conn: TConn) -> None:
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        if not self.alive:
            # stopping: a request on its way gets as long as a kept-alive connection does
            self.stop_deadline = self.stop_deadline or now + STOP_KEEPALIVE_LINGER
        for conn in [c for c in self.reading if min(c.deadline, self.stop_deadline or math.inf) <= now]:
            if conn.head:
                self._refuse(conn, 408, f"the request did not arrive within {HEADER_TIMEOUT_S:g} s"
                                        if conn.need is None else
                                        f"the request body did not arrive within {BODY_TIMEOUT_S:g} s")
            else:  # a connection that never sent anything, or an idle kept-alive one
                self._stop_reading(conn)
                self._close(conn)
        for conn in [c for c in self.lingering if c.deadline <= now]:
            self._end_linger(conn)

    def finish_request(self, conn: TConn, fs: Future) -> None:
        """gthread's, but a connection that is not kept alive lingers in the event loop."""
        if not self.buffering:
            return super().finish_request(conn, fs)
        try:
            keepalive = not fs.cancelled() and bool(fs.result())
        except Exception:
            keepalive = False
        if not keepalive:
            self._linger(conn)
            return
        if conn.parser.unreader.buf.getvalue():
            # a body drain read ahead into the next request: the socket may not become readable
            self.enqueue_req(conn)
            return
        try:
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))
        except (OSError, ValueError, KeyError):  # the client is gone
            self._close(conn)
            return
        conn.set_timeout()
        if not self.alive:
            conn.timeout = min(conn.timeout, time.monotonic() + STOP_KEEPALIVE_LINGER)
        self.keepalived_conns.append(conn)

    # -- the threads ----------------------------------------------------------------------

    def handle_request(self, req: Any, conn: TConn) -> bool:
        if isinstance(conn.parser.unreader, _TimedUnreader):
            conn.parser.unreader.start_request()
        self.local.req = req
        try:
            return super().handle_request(req, conn)
        finally:
            self.local.req = None

    def _keepalive_after(self, conn: TConn, keepalive: bool) -> bool:
        try:
            return super()._keepalive_after(conn, keepalive)
        except BodyTimeout:
            return False

    def _close_when_body_unread(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        """The application, whose response says ``Connection: close`` when it answers
        before reading the body and that body is not all here yet (a 401 or 413 to an
        upload): the rest is then discarded in the event loop, not read by a thread."""
        local = self.local

        def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                req = getattr(local, "req", None)
                if req is not None and not _body_here(req):
                    req.force_close()
                return start_response(status, headers, exc_info)

            return app(environ, start)

        return wrapped


def _body_here(req: Any) -> bool:
    """Whether what is left of the request's body has been read from the socket already."""
    reader = getattr(req.body, "reader", None)
    if isinstance(reader, LengthReader):
        buffered = req.unreader.buf
        buffered.seek(0, 2)
        return reader.length <= buffered.tell()
    if isinstance(reader, ChunkedReader):
        return reader.parser is None
    return True
