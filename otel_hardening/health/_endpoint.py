"""``/healthz``, ``/readyz`` and ``/livez`` over HTTP, in the IETF health-check draft format.

Bounded: one accept thread, at most ``MAX_WORKERS`` handler threads (further connections get an
immediate 503 and are closed), a per-read socket timeout plus a total deadline per connection
against slow clients, the stdlib limits on request line and headers, no request bodies read.
Responses come from the latest report the sampler computed, so a flood of requests costs no
evaluation work.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from otel_hardening.health._model import HealthReport, Status
from otel_hardening.health.config import HealthConfig

MAX_WORKERS = 4
SOCKET_TIMEOUT = 2.0
CONNECTION_DEADLINE = 5.0
"""Seconds a connection may take in total: a client trickling bytes under the per-read timeout is cut."""
CONTENT_TYPE = "application/health+json"
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n"
         b"Retry-After: 1\r\n\r\n")


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
        checks.setdefault(comp.name, []).append(entry)
    doc["checks"] = checks
    return doc


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer
    server_version = "otel-hardening"
    sys_version = ""
    timeout = SOCKET_TIMEOUT
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # garbage gets a status line, not a bare HTML page
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"

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
        report = self.server.report()
        if path == "/readyz":
            ready = report.status is not Status.CRITICAL
            doc = {"status": "pass" if ready else "fail"}
            if not ready and self._authorized():
                doc["output"] = "; ".join(report.reasons)
            self._send(200 if ready else 503, doc, head)
            return
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


class HealthServer(HTTPServer):
    """An HTTPServer with a fixed cap on concurrent handlers instead of a thread per connection."""

    request_queue_size = 16
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, config: HealthConfig, report: Callable[[], HealthReport],
                 alive: Callable[[], tuple[bool, str]]) -> None:
        assert config.endpoint is not None
        host, port = config.endpoint
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.config = config
        self.report = report
        self.alive = alive
        self._slots = threading.BoundedSemaphore(MAX_WORKERS)
        self._active: dict[Any, float] = {}
        self._active_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); not needed and can block.
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(0.2)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self._work, args=(request, client_address), daemon=True,
                                  name="otel-hardening-health-http")
        thread.start()

    def _work(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            self._active[request] = time.monotonic()
        try:
            self.finish_request(request, client_address)
        except Exception:
            pass  # a broken client connection is the client's problem
        finally:
            with self._active_lock:
                self._active.pop(request, None)
            self.shutdown_request(request)
            self._slots.release()

    def service_actions(self) -> None:
        """Called by ``serve_forever`` every poll interval: cut connections past their deadline."""
        cutoff = time.monotonic() - CONNECTION_DEADLINE
        with self._active_lock:
            late = [conn for conn, started in self._active.items() if started < cutoff]
        for conn in late:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Silent: never print tracebacks for client garbage."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="otel-hardening-health-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server_close()
