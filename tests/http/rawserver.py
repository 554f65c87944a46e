"""A loopback TCP server that answers with raw bytes on a schedule: what http.server cannot send.

Hostile upstreams for the tests: headers trickled one byte at a time, non-ASCII header values,
streams that never end. One request per connection; the answer is written by ``respond``, which gets
the connected socket and a stop event (set when the server closes: long streams end then).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

Respond = Callable[[socket.socket, threading.Event], None]


class RawServer:
    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.hits = 0
        self.stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.hits += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            head = b""
            try:
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.respond(conn, self.stop)
            except OSError:
                pass  # the client went away

    def close(self) -> None:
        self.stop.set()
        self._thread.join(2)
        self._sock.close()


def answer(status: int = 200, headers: bytes = b"", body: bytes = b"ok") -> Respond:
    """A complete answer with raw header bytes (``b"Retry-After: 1\\r\\n"``), then close."""
    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 %d X\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (status, headers, len(body), body))
    return respond


def trickled_headers(every: float) -> Respond:
    """A valid response whose header bytes arrive one every ``every`` seconds (slow loris)."""
    def respond(conn: socket.socket, stop: threading.Event) -> None:
        head = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"p" * 60 + b"\r\nContent-Length: 2\r\n\r\nok"
        for byte in head:
            if stop.wait(every):
                return
            conn.sendall(bytes([byte]))
    return respond


def event_stream(every: float) -> Respond:
    """Server-sent events forever: one small event at once, then one every ``every`` seconds."""
    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        n = 0
        started = time.monotonic()
        while not stop.is_set() and time.monotonic() - started < 60:
            event = b"data: %d\n\n" % n
            conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
            n += 1
            stop.wait(every)
    return respond
