"""The demo as a service: an HTTP endpoint whose work is a call to an upstream through a hardened
httpx client, with OpenTelemetry exported over OTLP. The e2e tests drive it; ``otel-hardening demo``
is the self-contained demo.

    GET /work     calls the upstream once (retries and circuit breaking by otel-hardening);
                  200 with the upstream's status, or 502 when the hardened call gave up
    GET /healthz  200 while the process serves

The SDK is configured the standard way (OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_EXPORTER_OTLP_PROTOCOL=grpc|http/protobuf, OTEL_METRIC_EXPORT_INTERVAL, ...), then
``otel_hardening.install()`` is called, as an application would. ``OTEL_PYTHON_HARDENING_*``
variables tune retries and circuits.

    python -m otel_hardening.demo.service --port 8080 --upstream http://127.0.0.1:8081
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

import httpx
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_hardening
from otel_hardening.demo._otel import OtlpNotInstalled, otlp_exporters


def configure_otel() -> tuple[TracerProvider, MeterProvider]:
    """OTLP traces and metrics, protocol from OTEL_EXPORTER_OTLP_PROTOCOL (default grpc).

    Exporter warnings (collector unreachable, queue full) go to stderr as they come: the e2e tests read them."""
    span_exporter, metric_exporter, _ = otlp_exporters(os.environ)
    resource = Resource.create()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(metric_exporter)]
    )
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider


_TRACER = trace.get_tracer("demo.app")


class Worker:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.client = httpx.Client(timeout=5.0)  # hardened: install() ran before it was built

    def work(self) -> tuple[int, dict[str, Any]]:
        # One trace per unit of work: every attempt, and the hardening.request span of a retried
        # call, are children of this span (as under a real server framework's instrumentation).
        with _TRACER.start_as_current_span("GET /work", kind=trace.SpanKind.SERVER) as span:
            try:
                response = self.client.get(f"{self.upstream}/data")
            except Exception as exc:  # the hardened call gave up: breaker open, budget spent, ...
                span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
                span.set_attribute("http.response.status_code", 502)
                return 502, {"error": type(exc).__name__}
            span.set_attribute("http.response.status_code", 200)
            return 200, {"upstream_status": response.status_code}


def make_server(worker: Worker, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/work"):
                status, body = worker.work()
            elif self.path.startswith("/healthz"):
                status, body = 200, {"status": "ok"}
            else:
                status, body = 404, {"error": "not found"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def load_loop(worker: Worker, rps: float, stop: threading.Event) -> None:
    while not stop.wait(1.0 / rps):
        worker.work()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m otel_hardening.demo.service", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default=os.environ.get("DEMO_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8080")))
    parser.add_argument("--upstream", default=os.environ.get("DEMO_UPSTREAM_URL", ""), required=False)
    parser.add_argument("--load-rps", type=float, default=float(os.environ.get("DEMO_LOAD_RPS", "0")),
                        help="also call the upstream this many times a second (0: only on /work)")
    args = parser.parse_args(argv)
    if not args.upstream:
        parser.error("--upstream (or DEMO_UPSTREAM_URL) is required; `otel-hardening demo` embeds its own")

    logging.basicConfig(level=os.environ.get("DEMO_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        tracer_provider, meter_provider = configure_otel()
    except OtlpNotInstalled as exc:
        sys.exit(f"otel_hardening.demo.service: {exc}")
    otel_hardening.install()

    stop = threading.Event()
    worker = Worker(args.upstream)
    server = make_server(worker, args.host, args.port)
    if args.load_rps > 0:
        threading.Thread(target=load_loop, args=(worker, args.load_rps, stop), daemon=True).start()

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    print(f"demo service: serving on {args.host}:{server.server_address[1]}, upstream {args.upstream}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
        tracer_provider.shutdown()
        meter_provider.shutdown()


if __name__ == "__main__":
    main()
