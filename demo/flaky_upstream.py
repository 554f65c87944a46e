"""A flaky HTTP upstream that goes through fault phases, for the demo and the e2e tests.

Phases:
  healthy    every request answers 200 at once
  alternate  requests alternate 503, 200, 503, 200, ... (each logical request is retried once)
  flaky      a share of requests (``--error-rate``) answers 503
  slow       every request waits ``--slow-seconds`` then answers 200
  down       every request answers 503

``--cycle`` walks healthy -> flaky -> slow -> down -> healthy, ``--phase-seconds`` each (the demo);
without it the phase stays put until ``GET /control/phase?name=<phase>`` changes it (the tests).
``GET /control/stats`` returns the request counts. Listens on 127.0.0.1 unless told otherwise.

    python -m demo.flaky_upstream --port 8081 --cycle
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PHASES = ("healthy", "alternate", "flaky", "slow", "down")
CYCLE = ("healthy", "flaky", "slow", "down")


class Upstream:
    def __init__(self, error_rate: float = 0.3, slow_seconds: float = 0.5, phase: str = "healthy") -> None:
        self.error_rate = error_rate
        self.slow_seconds = slow_seconds
        self.phase = phase
        self.counts: dict[str, int] = {"requests": 0, "errors": 0}
        self._lock = threading.Lock()
        self._alternate = itertools.cycle((503, 200))

    def set_phase(self, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; one of {', '.join(PHASES)}")
        with self._lock:
            self.phase = phase
            self._alternate = itertools.cycle((503, 200))

    def decide(self) -> tuple[int, float]:
        """(status, delay) for the next request."""
        with self._lock:
            self.counts["requests"] += 1
            phase = self.phase
            status, delay = 200, 0.0
            if phase == "alternate":
                status = next(self._alternate)
            elif phase == "flaky" and random.random() < self.error_rate:
                status = 503
            elif phase == "slow":
                delay = self.slow_seconds
            elif phase == "down":
                status = 503
            if status != 200:
                self.counts["errors"] += 1
        return status, delay

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"phase": self.phase, **self.counts}


def make_server(upstream: Upstream, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/control/phase":
                try:
                    upstream.set_phase(parse_qs(url.query).get("name", [""])[0])
                except ValueError as exc:
                    self._send(400, {"error": str(exc)})
                    return
                self._send(200, upstream.stats())
            elif url.path == "/control/stats":
                self._send(200, upstream.stats())
            else:
                status, delay = upstream.decide()
                if delay:
                    time.sleep(delay)
                self._send(status, {"status": status})

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def cycle_phases(upstream: Upstream, seconds: float, stop: threading.Event) -> None:
    for phase in itertools.cycle(CYCLE):
        upstream.set_phase(phase)
        print(f"flaky_upstream: phase {phase}", flush=True)
        if stop.wait(seconds):
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--phase", default="healthy", choices=PHASES)
    parser.add_argument("--cycle", action="store_true", help="walk through the fault phases")
    parser.add_argument("--phase-seconds", type=float, default=60.0)
    parser.add_argument("--error-rate", type=float, default=0.3)
    parser.add_argument("--slow-seconds", type=float, default=0.5)
    args = parser.parse_args(argv)
    upstream = Upstream(args.error_rate, args.slow_seconds, args.phase)
    server = make_server(upstream, args.host, args.port)
    stop = threading.Event()
    if args.cycle:
        threading.Thread(target=cycle_phases, args=(upstream, args.phase_seconds, stop), daemon=True).start()
    print(f"flaky_upstream: listening on {args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        stop.set()


if __name__ == "__main__":
    main()
