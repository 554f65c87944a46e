"""The app behind the dashboard and alert end-to-end tests: hardened httpx traffic (sync, and async
from an event loop) to the test's flaky upstream in a steady loop, and all three signals (traces,
metrics, logs) over OTLP, as an application configures them. The logs carry what the dashboards show
from VictoriaLogs: health-change records and leak hunt reports.

    python -m tests.e2e.workload --port 8080 --upstream http://127.0.0.1:8081 --rps 10 [--outbox DIR]
        [--bypass] [--leak-kib-per-second N]

With ``--outbox DIR`` it also writes through two outboxes stored in DIR (docs/outbox.md), a POST a
second each: ``orders`` to /orders (deferred during an outage, replayed after it) and to
/orders-rejected (deferred, then answered 422 on replay: a dead letter, when the upstream rejects
that path), and ``audit`` (room for 2 entries) to /audit (refused once full).

With ``--bypass`` it also sends a GET a second through a client hardening cannot apply to: its
transport's connection pool is the app's own wrapper, not httpcore's pool (otel_hardening/http/hooks.py
refuses it and counts ``hardening.bypassed{reason="hook_missing"}``). With ``--leak-kib-per-second N``
it keeps N KiB a second forever (RSS grows steadily: the leak detector's case).

    GET /hunt?seconds=2  allocate and keep memory from one line while otel_hardening.resources.hunt()
                         watches, inside a traced request; answers the report's top site as JSON
    GET /saturate?seconds=20
                         for that long, 6 threads call the upstream's /slow path (answered after 1 s)
                         through one client with 2 connections and a 0.5 s pool timeout: the pool is
                         saturated (requests wait, time in queue grows, calls end in PoolTimeout) and
                         the calls are slow requests; answers at once, the traffic runs behind
    GET /healthz         200 while the process serves

The SDK reads OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_METRIC_EXPORT_INTERVAL, ... and
otel-hardening its OTEL_PYTHON_HARDENING_* variables, as in any application.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_hardening
from otel_hardening import resources
from otel_hardening.outbox import Outbox, OutboxPolicy

_LEAK: list[bytearray] = []


class Providers:
    def __init__(self) -> None:
        resource = Resource.create()
        self.tracer = TracerProvider(resource=resource)
        self.tracer.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        reader = PeriodicExportingMetricReader(OTLPMetricExporter())
        self.meter = MeterProvider(resource=resource, metric_readers=[reader])
        self.logger = LoggerProvider(resource=resource)
        self.logger.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))

    def shutdown(self) -> None:
        for provider in (self.tracer, self.meter, self.logger):
            provider.shutdown()


def traffic(client: httpx.Client, upstream: str, rps: float, tracer: trace.Tracer, stop: threading.Event) -> None:
    """One logical call every 1/rps seconds, each under a SERVER span as a web framework would make."""
    while not stop.wait(1.0 / rps):
        # The hardened call may give up (circuit open, retries exhausted): it counts that itself.
        with tracer.start_as_current_span("GET /work", kind=trace.SpanKind.SERVER), \
                contextlib.suppress(httpx.HTTPError):
            client.get(f"{upstream}/data")


def async_traffic(upstream: str, rps: float, tracer: trace.Tracer, stop: threading.Event) -> None:
    """The same traffic from an asyncio event loop (httpx.AsyncClient; asyncio task metrics)."""
    async def run() -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while not stop.is_set():
                await asyncio.sleep(1.0 / rps)
                with tracer.start_as_current_span("GET /work-async", kind=trace.SpanKind.SERVER), \
                        contextlib.suppress(httpx.HTTPError):
                    await client.get(f"{upstream}/data")

    asyncio.run(run())


def writes(upstream: str, directory: str, providers: Providers, stop: threading.Event) -> None:
    """Writes through two outboxes, one a second per path (see the module's docstring)."""
    def outbox(name: str, policy: OutboxPolicy) -> Outbox:
        return Outbox(f"{directory}/{name}.sqlite3", name=name, policy=policy, before_replay=lambda r: r,
                      tracer_provider=providers.tracer, meter_provider=providers.meter)

    quick = OutboxPolicy(backoff_initial=0.5, backoff_max=2.0, poll=1.0)
    orders = otel_hardening.harden(httpx.Client(timeout=2.0), outbox=outbox("orders", quick))
    audit = otel_hardening.harden(httpx.Client(timeout=2.0),
                                  outbox=outbox("audit", OutboxPolicy(max_entries=2, poll=1.0)))
    tracer = providers.tracer.get_tracer("tests.e2e.workload")
    with orders, audit:
        while not stop.wait(1.0):
            for client, path in ((orders, "/orders"), (orders, "/orders-rejected"), (audit, "/audit")):
                # RequestDeferred and OutboxRefused are httpx errors: the outbox counts them itself.
                with tracer.start_as_current_span(f"POST {path}", kind=trace.SpanKind.SERVER), \
                        contextlib.suppress(httpx.HTTPError):
                    client.post(f"{upstream}{path}", json={"at": time.time()})


class CountingPool:
    """An app's own wrapper around httpcore's pool (counting requests): not an httpcore pool, so the
    layer cannot put its deadline under it and leaves the client unhardened."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.requests = 0

    def handle_request(self, request: Any) -> Any:
        self.requests += 1
        return self.pool.handle_request(request)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> CountingPool:  # httpx.Client's ``with`` enters its transport's pool
        self.pool.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.__exit__(*exc)


def bypassed_traffic(upstream: str, tracer: trace.Tracer, stop: threading.Event) -> None:
    """A GET a second through a client whose transport's pool is a CountingPool (see --bypass)."""
    transport = httpx.HTTPTransport()
    transport._pool = CountingPool(transport._pool)  # type: ignore[assignment]
    with httpx.Client(transport=transport, timeout=2.0) as client:  # install() cannot harden it
        while not stop.wait(1.0):
            with tracer.start_as_current_span("GET /work-bypassed", kind=trace.SpanKind.SERVER), \
                    contextlib.suppress(httpx.HTTPError):
                client.get(f"{upstream}/data")


SATURATING_THREADS = 6


def saturate(upstream: str, seconds: float, tracer: trace.Tracer) -> None:
    """SATURATING_THREADS callers share 2 connections to /slow for ``seconds`` (see /saturate)."""
    client = httpx.Client(limits=httpx.Limits(max_connections=2), timeout=httpx.Timeout(5.0, pool=0.5))
    end = time.monotonic() + seconds

    def caller() -> None:
        while time.monotonic() < end:
            with tracer.start_as_current_span("GET /work-slow", kind=trace.SpanKind.SERVER), \
                    contextlib.suppress(httpx.HTTPError):  # PoolTimeout: counted as outcome pool_timeout
                client.get(f"{upstream}/slow")

    callers = [threading.Thread(target=caller, daemon=True) for _ in range(SATURATING_THREADS)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join()
    client.close()


def leak_forever(kib_per_second: float, stop: threading.Event) -> None:
    """Keep ``kib_per_second`` KiB a second, in ten steps a second, each page written (counted in RSS)."""
    step = int(kib_per_second * 1024 / 10)
    while not stop.wait(0.1):
        _LEAK.append(bytearray(b"\x01") * step)


def hunt(seconds: float, tracer: trace.Tracer) -> dict[str, Any]:
    """A leak for the hunt to name: a thread keeps 64 KiB a tick from one line while it watches."""
    done = threading.Event()

    def leak() -> None:
        while not done.wait(0.05):
            _LEAK.append(bytearray(64 * 1024))

    with tracer.start_as_current_span("GET /hunt", kind=trace.SpanKind.SERVER) as span:
        thread = threading.Thread(target=leak, daemon=True)
        thread.start()
        try:
            report = resources.hunt(seconds)
        finally:
            done.set()
            thread.join()
        trace_id = format(span.get_span_context().trace_id, "032x")
    top = report.sites[0] if report.sites else None
    return {"error": report.error, "trace_id": trace_id, "sites": len(report.sites),
            "top": f"{top.file}:{top.line}" if top else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--rps", type=float, default=10.0)
    parser.add_argument("--outbox", metavar="DIR", help="also write through outboxes stored in DIR")
    parser.add_argument("--bypass", action="store_true", help="also send through a client hardening cannot apply to")
    parser.add_argument("--leak-kib-per-second", type=float, default=0.0, help="keep this much memory a second")
    args = parser.parse_args(argv)

    providers = Providers()
    otel_hardening.install(tracer_provider=providers.tracer, meter_provider=providers.meter,
                           logger_provider=providers.logger)
    tracer = providers.tracer.get_tracer("tests.e2e.workload")
    client = httpx.Client(timeout=2.0)  # hardened: install() ran first
    stop = threading.Event()
    upstream = args.upstream.rstrip("/")
    threading.Thread(target=traffic, args=(client, upstream, args.rps, tracer, stop), daemon=True).start()
    threading.Thread(target=async_traffic, args=(upstream, args.rps / 2, tracer, stop), daemon=True).start()
    if args.outbox:
        threading.Thread(target=writes, args=(upstream, args.outbox, providers, stop), daemon=True).start()
    if args.bypass:
        threading.Thread(target=bypassed_traffic, args=(upstream, tracer, stop), daemon=True).start()
    if args.leak_kib_per_second > 0:
        threading.Thread(target=leak_forever, args=(args.leak_kib_per_second, stop), daemon=True).start()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/hunt":
                body = hunt(float(parse_qs(url.query).get("seconds", ["2"])[0]), tracer)
            elif url.path == "/saturate":
                seconds = float(parse_qs(url.query).get("seconds", ["20"])[0])
                threading.Thread(target=saturate, args=(upstream, seconds, tracer), daemon=True).start()
                body = {"saturating": seconds}
            elif url.path == "/healthz":
                body = {"status": "ok"}
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
        client.close()
        providers.shutdown()


if __name__ == "__main__":
    main()
