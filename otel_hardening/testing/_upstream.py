"""A real loopback HTTP/1.1 server whose answers are scripted, for fault injection in tests and the demo."""

from __future__ import annotations

import itertools
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (read timeouts, slow successes)."""
    reset_after: int | None = None
    """Send the headers and this many body bytes, then reset the connection (RST)."""
    trickle: float = 0.0
    """Seconds between body bytes: the body arrives one byte at a time (slow-loris upstreams)."""
    retry_after: float | str | None = None
    """Sent as the ``Retry-After`` header: seconds, or an HTTP date as a string."""


class ReceivedRequest(NamedTuple):
    method: str
    path: str
    """Path and query as sent."""
    headers: dict[str, str]
    body: bytes


Rule = Callable[[ReceivedRequest], "Reply | None"]
"""Decides the answer to a request that no script covers; ``None`` falls through to ``default``."""


class FlakyUpstream:
    """A loopback server answering with scripted replies, then with ``rule`` or ``default``.

    Order for each request: the path's own script (:meth:`on`), then the shared script (:meth:`then`),
    then ``rule(request)`` (set it, or use :meth:`cycle`), then ``default`` (:meth:`always`).
    Everything received is counted and kept.

    >>> with FlakyUpstream() as upstream:
    ...     upstream.then(Reply(503), Reply(503))       # the next two requests fail, then 200
    ...     upstream.on("/slow", Reply(200, delay=2))   # only requests to /slow
    ...     upstream.cycle(Reply(503), Reply(200))      # after the scripts: fail every other request
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, default: Reply | None = None) -> None:
        self.script: deque[Reply] = deque()
        self.paths: dict[str, deque[Reply]] = {}
        self.default = default or Reply()
        self.rule: Rule | None = None
        self.hits = 0
        self.requests: list[ReceivedRequest] = []
        self.keep_requests = 10_000
        """Requests kept in ``requests`` (the oldest are dropped past it; ``hits`` keeps counting)."""
        self.by_path: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = _Server((host, port), _handler(self), bind_and_activate=False)
        self._httpd.request_queue_size = 128
        self._httpd.daemon_threads = True
        try:
            self._httpd.server_bind()
            self._httpd.server_activate()
        except OSError:
            self._httpd.server_close()
            raise
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True,
                                        name=f"flaky-upstream-{self.port}")
        self._thread.start()

    # -- scripting -----------------------------------------------------------------------------

    def then(self, *replies: Reply) -> FlakyUpstream:
        """Answer the next requests (any path) with these replies, in order."""
        with self._lock:
            self.script.extend(replies)
        return self

    def on(self, path: str, *replies: Reply) -> FlakyUpstream:
        """Answer the next requests to ``path`` (without the query) with these replies, in order."""
        with self._lock:
            self.paths.setdefault(path, deque()).extend(replies)
        return self

    def always(self, reply: Reply) -> FlakyUpstream:
        """Drop every script and answer everything with ``reply`` from now on."""
        with self._lock:
            self.script.clear()
            self.paths.clear()
            self.rule = None
            self.default = reply
        return self

    def cycle(self, *replies: Reply) -> FlakyUpstream:
        """Drop every script and answer with these replies in turn, forever (``cycle(Reply(503), Reply())``:
        every other request fails, so each failed call succeeds on its retry)."""
        if not replies:
            raise ValueError("cycle() needs at least one Reply")
        turn = itertools.cycle(replies)
        lock = threading.Lock()

        def rule(request: ReceivedRequest) -> Reply:
            with lock:
                return next(turn)

        with self._lock:
            self.script.clear()
            self.paths.clear()
            self.rule = rule
        return self

    def count(self, path: str | None = None) -> int:
        """Requests received (to ``path`` only, without the query, if given)."""
        with self._lock:
            return self.hits if path is None else self.by_path[path]

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FlakyUpstream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FlakyUpstream({self.url}, hits={self.hits})"

    # -- serving ------------------------------------------------------------------------------

    def _next(self, request: ReceivedRequest) -> Reply:
        path = urlsplit(request.path).path
        with self._lock:
            self.hits += 1
            self.by_path[path] += 1
            self.requests.append(request)
            if len(self.requests) > self.keep_requests:
                del self.requests[: len(self.requests) - self.keep_requests]
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            scripted = self.paths.get(path)
            if scripted:
                reply: Reply | None = scripted.popleft()
            elif self.script:
                reply = self.script.popleft()
            else:
                reply = None
            rule = self.rule
        if reply is None and rule is not None:
            reply = rule(request)
        reply = reply or self.default
        with self._lock:
            self.by_status[reply.status] += 1
        return reply

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that hung up (reset, timeout, circuit opened): its business, not an error
        super().handle_error(request, client_address)


def _handler(upstream: FlakyUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            reply = upstream._next(ReceivedRequest(self.command, self.path, dict(self.headers), body))
            try:
                self._answer(reply)
            except (ConnectionError, TimeoutError):
                self.close_connection = True  # the client went away: that is its business
            finally:
                upstream._done()

        def _answer(self, reply: Reply) -> None:
            if reply.delay:
                time.sleep(reply.delay)
            self.send_response(reply.status)
            for k, v in reply.headers.items():
                self.send_header(k, v)
            if reply.retry_after is not None:
                self.send_header("Retry-After", str(reply.retry_after))
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if reply.reset_after is not None:
                self.wfile.write(reply.body[: reply.reset_after])
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                return
            if self.command == "HEAD":
                return
            if reply.trickle > 0:
                for i in range(len(reply.body)):
                    self.wfile.write(reply.body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(reply.trickle)
            else:
                self.wfile.write(reply.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    return Handler


def closed_port() -> int:
    """A loopback port with nothing listening: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
