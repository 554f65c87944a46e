"""``/healthz``, ``/readyz`` and ``/livez`` over HTTP, in the IETF health-check draft format.

One thread serves every connection with a selector: no thread per connection, so slow clients cost
a socket and a small buffer, never a worker. Against abuse (slowloris, floods): each connection must
deliver its request headers within ``HEADER_DEADLINE`` seconds and ``MAX_HEADER_BYTES`` bytes; at most
``MAX_CONNECTIONS`` are open, and a new connection past that closes the oldest one still sending its
headers, so a probe arriving during a flood is served. Bodies are never read. ``SO_REUSEADDR``
is set before ``bind`` so a restart on the same port works while old connections sit in TIME_WAIT.
Responses come from the latest report the sampler computed: a flood costs no evaluation work.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import io
import json
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from otel_hardening._logging import log_once
from otel_hardening.health._model import HealthReport, Status
from otel_hardening.health.config import HealthConfig

MAX_CONNECTIONS = 64
"""Open connections at most (bounded fds); the oldest still sending its headers gives way to a new one."""
HEADER_DEADLINE = 5.0
"""Seconds from accept to the end of the request headers: a client trickling bytes is cut."""
MAX_HEADER_BYTES = 16 * 1024
"""Request line plus headers; a bearer token of a few KiB fits, a flood of bytes does not."""
LINGER = 1.0
"""Seconds to drain unread input after answering, so closing does not reset the answer away."""
LISTEN_BACKLOG = 128
CONTENT_TYPE = "application/health+json"
_TICK = 0.1


def _iso(ts: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def health_document(report: HealthReport, details: bool) -> dict[str, Any]:
    """The ``/healthz`` body: ``status`` always; ``checks`` and ``output`` only with ``details``."""
    doc: dict[str, Any] = {"status": report.status.ietf, "description": "otel-hardening process health"}
    if not details:
        return doc
    if report.status is not Status.HEALTHY:
        doc["output"] = "; ".join(report.reasons)
    doc["notes"] = [f"status since {_iso(report.since)}"]
    checks: dict[str, list[dict[str, Any]]] = {}
    for comp in report.components:
        entry: dict[str, Any] = {"componentType": comp.component_type, "status": comp.status.ietf,
                                 "time": _iso(report.time)}
        if comp.observed_value is not None:
            entry["observedValue"] = comp.observed_value
        if comp.observed_unit is not None:
            entry["observedUnit"] = comp.observed_unit
        if comp.status is not Status.HEALTHY:
            entry["output"] = comp.reason
        if comp.details:
            entry["details"] = dict(comp.details)
        checks.setdefault(comp.name, []).append(entry)
    doc["checks"] = checks
    return doc


class _Handler(BaseHTTPRequestHandler):
    server: _HandlerView  # type: ignore[assignment]
    server_version = "otel-hardening"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # garbage gets a status line, not a bare HTML page
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"

    def setup(self) -> None:
        """The request bytes were already read by the server's loop; the answer is buffered."""
        self.connection = self.request
        self.rfile = io.BytesIO(self.request.data)
        self.wfile = io.BytesIO()

    def finish(self) -> None:
        self.server.answer = self.wfile.getvalue()  # type: ignore[attr-defined]

    def version_string(self) -> str:
        return self.server_version

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib puts request bytes in the reason phrase; answer with the standard phrase only."""
        super().send_error(code)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: access logs on stderr are the app's decision, and garbage input must not flood."""

    def _authorized(self) -> bool:
        cfg = self.server.config
        if cfg.details == "always":
            return True
        if cfg.details == "never" or not cfg.token:
            return False
        header = self.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode("utf-8", "replace"), cfg.token.encode("utf-8"))

    def _send(self, code: int, doc: dict[str, Any], head: bool) -> None:
        body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        self.send_response(code)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(body)
        self.close_connection = True

    def _route(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ("/healthz", "/readyz", "/livez"):
            self._send(404, {"status": "fail", "output": "not found: try /healthz, /readyz or /livez"}, head)
            return
        if path == "/livez":
            ok, why = self.server.alive()
            doc: dict[str, Any] = {"status": "pass" if ok else "fail"}
            if not ok and self._authorized():
                doc["output"] = why
            self._send(200 if ok else 503, doc, head)
            return
        if path == "/readyz":
            ready, not_ready = self.server.ready()
            doc = {"status": "pass" if ready else "fail"}
            if not ready and self._authorized():
                doc["output"] = "; ".join(not_ready)
            self._send(200 if ready else 503, doc, head)
            return
        report = self.server.report()
        doc = health_document(report, self._authorized())
        self._send(503 if report.status is Status.CRITICAL else 200, doc, head)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def _not_allowed(self) -> None:
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed


class _Request:
    """What the handler reads: the complete request head, and the peer for its ``client_address``."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _HandlerView:
    """The attributes the handler reads from its ``server``, plus where it leaves the answer."""

    def __init__(self, server: HealthServer) -> None:
        self.config = server.config
        self.report = server.report
        self.alive = server.alive
        self.ready = server.ready
        self.answer = b""


def _plain(code: int, phrase: str) -> bytes:
    body = f"{code} {phrase}\n".encode()
    return (f"HTTP/1.1 {code} {phrase}\r\nServer: otel-hardening\r\nConnection: close\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


class _Conn:
    __slots__ = ("buf", "deadline", "draining", "out", "sock")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.deadline = now + HEADER_DEADLINE
        self.buf = bytearray()
        self.out: bytes | None = None
        self.draining = False


def _head_complete(buf: bytearray) -> bool:
    return b"\r\n\r\n" in buf or b"\n\n" in buf


class HealthServer:
    """The listening socket and the one thread that serves it. ``start()`` / ``stop()``."""

    def __init__(self, config: HealthConfig, report: Callable[[], HealthReport],
                 alive: Callable[[], tuple[bool, str]],
                 ready: Callable[[], tuple[bool, tuple[str, ...]]] | None = None) -> None:
        assert config.endpoint is not None
        host, port = config.endpoint
        self.config = config
        self.report = report
        self.alive = alive
        self.ready = ready or self._ready_from_report
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if os.name == "posix":  # on Windows SO_REUSEADDR would let another process steal the port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.socket = sock
        self.server_address: tuple[Any, ...] = sock.getsockname()
        self._conns: dict[socket.socket, _Conn] = {}
        """Insertion order is accept order: the first entries are the oldest connections."""
        self._selector = selectors.DefaultSelector()
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.accepted = 0
        self.evicted = 0
        self.expired = 0

    def _ready_from_report(self) -> tuple[bool, tuple[str, ...]]:
        report = self.report()
        return report.ready, report.not_ready

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._selector.register(self.socket, selectors.EVENT_READ, None)
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._serve, name="otel-hardening-health-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wakeup_w.send(b"x")
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        for conn in list(self._conns.values()):
            self._close(conn)
        with contextlib.suppress(Exception):
            self._selector.close()
        for s in (self.socket, self._wakeup_r, self._wakeup_w):
            s.close()

    # -- the loop -----------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping:
            try:
                # Connections before the listener: a probe already connected is read before a burst
                # of new connections can push it out.
                events = sorted(self._selector.select(_TICK), key=lambda e: e[0].fileobj is self.socket)
                for key, mask in events:
                    if key.fileobj is self.socket:
                        self._accept()
                    elif key.fileobj is self._wakeup_r:
                        return
                    else:
                        conn = self._conns.get(key.fileobj)  # type: ignore[call-overload]
                        if conn is not None:
                            self._service(conn, mask)
                self._expire()
            except Exception:  # never die: a dead endpoint would fail every liveness probe
                log_once("health:endpoint-loop", logging.ERROR,
                         "otel_hardening: health endpoint loop error; it keeps serving", exc_info=True)
                time.sleep(_TICK)

    def _accept(self) -> None:
        for _ in range(LISTEN_BACKLOG):
            try:
                sock, _addr = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE / ENFILE: the backlog waits until fds are free again
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log_once("health:endpoint-accept", logging.WARNING,
                             "otel_hardening: health endpoint cannot accept (%s)", os.strerror(exc.errno or 0))
                    time.sleep(_TICK)
                return
            self.accepted += 1
            now = time.monotonic()
            if len(self._conns) >= MAX_CONNECTIONS:
                self._evict()
            sock.setblocking(False)
            conn = _Conn(sock, now)
            self._conns[sock] = conn
            self._selector.register(sock, selectors.EVENT_READ, None)
            self._service(conn, selectors.EVENT_READ)  # a probe's request is usually there already

    def _evict(self) -> None:
        """Make room: close the oldest connection still sending its request (else the oldest). A real
        client sends its request right after connecting and is answered at once, so the oldest
        unfinished one is the one most likely to be trickling."""
        victim = next((c for c in self._conns.values() if c.out is None), None)
        if victim is None:
            victim = next(iter(self._conns.values()))
        self.evicted += 1
        self._close(victim)

    def _expire(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self._conns.values() if c.deadline < now]:
            if conn.out is None:
                self.expired += 1
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        self._conns.pop(conn.sock, None)
        with contextlib.suppress(Exception):
            self._selector.unregister(conn.sock)
        conn.sock.close()

    def _service(self, conn: _Conn, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            try:
                data = conn.sock.recv(4096)
            except BlockingIOError:
                data = None
            except OSError:
                self._close(conn)
                return
            if data == b"":
                if conn.out is None or conn.draining:
                    self._close(conn)
                    return
            elif data is not None and conn.out is None:
                conn.buf += data
                if _head_complete(conn.buf):
                    self._answer(conn, self._handle(bytes(conn.buf)))
                elif len(conn.buf) > MAX_HEADER_BYTES:
                    too_long = b"\n" not in conn.buf
                    self._answer(conn, _plain(414, "Request-URI Too Long") if too_long
                                 else _plain(431, "Request Header Fields Too Large"))
        if conn.out:
            self._flush(conn)

    def _handle(self, head: bytes) -> bytes:
        view = _HandlerView(self)
        try:
            _Handler(_Request(head), ("", 0), view)  # type: ignore[arg-type]
        except Exception:
            log_once("health:endpoint-handler", logging.WARNING,
                     "otel_hardening: health endpoint request failed", exc_info=True)
            return _plain(500, "Internal Server Error")
        return view.answer or _plain(400, "Bad Request")

    def _answer(self, conn: _Conn, answer: bytes) -> None:
        conn.out = answer
        conn.buf = bytearray()
        conn.deadline = time.monotonic() + HEADER_DEADLINE  # to deliver the answer
        self._selector.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, None)

    def _flush(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out or b"")
        except BlockingIOError:
            return
        except OSError:
            self._close(conn)
            return
        conn.out = (conn.out or b"")[sent:]
        if conn.out:
            return
        # Answered. Half-close and drain what the client still sends (a body we did not read) for a
        # moment: closing with unread input would reset the connection and could discard the answer.
        conn.out = b""
        conn.draining = True
        conn.deadline = time.monotonic() + LINGER
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_WR)
        self._selector.modify(conn.sock, selectors.EVENT_READ, None)
