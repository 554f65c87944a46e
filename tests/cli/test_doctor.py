"""`otel-hardening doctor` against real set-ups: a misconfigured app names each problem and its fix, the
demo's own set-up passes, garbage never makes a traceback.

The collector is stood in for by real loopback servers speaking OTLP: a gRPC server with the
collector's trace / metrics / logs services (from opentelemetry-proto), and an HTTP server answering
the OTLP/HTTP paths. A real collector binary would answer the same way; these keep the test seconds
long and free of a build."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from otel_hardening.cli import _doctor
from otel_hardening.testing import closed_port

GOOD = {"OTEL_SEMCONV_STABILITY_OPT_IN": "http", "OTEL_METRIC_EXPORT_INTERVAL": "5000"}


def doctor(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GRPC_"))}
    return subprocess.run([sys.executable, "-m", "otel_hardening.cli", "doctor", "--timeout", "5", *args],
                          capture_output=True, text=True, timeout=90, cwd=cwd, env={**base, **(env or {})},
                          check=False)


class _Collector:
    def __init__(self) -> None:
        self.received: list[str] = []
        self.metadata: list[dict[str, str]] = []

    def answer(self, signal: str, response: Any, context: Any) -> Any:
        self.received.append(signal)
        self.metadata.append(dict(context.invocation_metadata()))
        return response


@pytest.fixture
def grpc_collector(request: pytest.FixtureRequest) -> Iterator[tuple[str, _Collector]]:
    """A gRPC OTLP receiver on loopback; ``@pytest.mark.parametrize(..., indirect)`` may drop logs."""
    signals = getattr(request, "param", ("traces", "metrics", "logs"))
    seen = _Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, req: Any, context: Any) -> Any:
            return seen.answer("traces", trace_service_pb2.ExportTraceServiceResponse(), context)

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, req: Any, context: Any) -> Any:
            return seen.answer("metrics", metrics_service_pb2.ExportMetricsServiceResponse(), context)

    class Logs(logs_service_pb2_grpc.LogsServiceServicer):
        def Export(self, req: Any, context: Any) -> Any:
            return seen.answer("logs", logs_service_pb2.ExportLogsServiceResponse(), context)

    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)  # type: ignore[no-untyped-call]
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)  # type: ignore[no-untyped-call]
    if "logs" in signals:
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.stop(0)


@pytest.fixture
def http_collector() -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """An OTLP/HTTP receiver on loopback: 200 on /v1/traces and /v1/metrics, 404 elsewhere (no logs)."""
    seen: list[tuple[str, dict[str, str]]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            ok = self.path in ("/v1/traces", "/v1/metrics")
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_demos_own_setup_passes(grpc_collector: tuple[str, _Collector]) -> None:
    endpoint, seen = grpc_collector
    result = doctor("--setup", "otel_hardening.demo._otel:setup",
                    env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SEMCONV_STABILITY_OPT_IN": "http"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and not result.stderr.strip(), result.stderr
    for line in ("ok    metrics: provider set, exported by InMemoryMetricReader, OTLPMetricExporter",
                 "ok    metric export interval: 5 s", "ok    collector (logs):", "ok    semantic conventions"):
        assert line in result.stdout, result.stdout
    assert sorted(set(seen.received)) == ["logs", "metrics", "traces"]  # each signal really was probed
    assert result.stdout.rstrip().endswith("0 broken, 0 warnings: exit 0")


MISCONFIGURED = '''
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

def setup():
    provider = TracerProvider()  # and no meter provider, no logger provider
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint="http://127.0.0.1:{port}")))
    trace.set_tracer_provider(provider)
'''

SLOW_METRICS = '''
from opentelemetry import metrics
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint="{endpoint}"), export_interval_millis=60000)
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
'''


def test_a_misconfigured_app_gets_each_problem_and_its_fix(tmp_path: Path) -> None:
    (tmp_path / "shop_telemetry.py").write_text(MISCONFIGURED.format(port=closed_port()))
    result = doctor("--setup", "shop_telemetry:setup", cwd=tmp_path)
    out = result.stdout
    assert result.returncode == 2, out + result.stderr
    assert "Traceback" not in out + result.stderr
    assert "FAIL  metrics: no SDK provider is set: no metrics: the dashboards stay empty" in out, out
    assert "fix: set a MeterProvider(metric_readers=[PeriodicExportingMetricReader(" in out, out
    assert "WARN  logs: no SDK provider is set: no leak-hunt reports" in out, out
    assert "FAIL  collector (traces): http://127.0.0.1:" in out and "nothing answers" in out, out
    assert "fix: start the collector (`otel-hardening stack up` prints its endpoint)" in out, out
    assert "WARN  semantic conventions" in out and "fix: OTEL_SEMCONV_STABILITY_OPT_IN=http" in out, out


def test_a_60_second_export_interval_is_named_with_what_it_costs(
        tmp_path: Path, grpc_collector: tuple[str, _Collector]) -> None:
    endpoint, _ = grpc_collector
    (tmp_path / "slow_metrics.py").write_text(SLOW_METRICS.format(endpoint=endpoint))
    result = doctor("--setup", "slow_metrics", cwd=tmp_path, env={"OTEL_SEMCONV_STABILITY_OPT_IN": "http"})
    assert result.returncode == 1, result.stdout + result.stderr  # warnings only: tracing and logs, the interval
    assert "WARN  metric export interval: 60 s: every alert fires up to 55 s later than with 5 s" in result.stdout
    assert "fix: OTEL_METRIC_EXPORT_INTERVAL=5000" in result.stdout
    assert "ok    collector (metrics)" in result.stdout


def test_zero_code_with_the_sdk_defaults_and_no_collector() -> None:
    """opentelemetry-instrument's view of a bare environment: 60 s export, nothing listening."""
    result = doctor(env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}"})
    out = result.stdout
    assert result.returncode == 2, out + result.stderr
    assert "ok    zero-code: distro installed" in out and "ok    metrics: provider set" in out, out
    assert "WARN  metric export interval: 60 s" in out, out
    for signal in ("traces", "metrics", "logs"):
        assert f"FAIL  collector ({signal}): http://127.0.0.1:" in out, out
    assert not result.stderr.strip(), result.stderr


@pytest.mark.parametrize("grpc_collector", [("traces", "metrics")], indirect=True)
def test_a_collector_without_a_logs_pipeline_is_a_warning(grpc_collector: tuple[str, _Collector]) -> None:
    endpoint, _ = grpc_collector
    result = doctor(env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **GOOD})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "WARN  collector (logs):" in result.stdout and "no logs service (gRPC UNIMPLEMENTED)" in result.stdout
    assert "ok    collector (traces)" in result.stdout and "ok    collector (metrics)" in result.stdout


def test_zero_code_over_http_sends_the_headers_and_never_prints_them(
        http_collector: tuple[str, list[tuple[str, dict[str, str]]]]) -> None:
    endpoint, seen = http_collector
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
           "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20s3cr3t-token", **GOOD}
    result = doctor(env=env)
    assert "ok    collector (traces): " + endpoint + "/v1/traces (HTTP) accepted" in result.stdout, result.stdout
    assert "WARN  collector (logs):" in result.stdout and "HTTP 404" in result.stdout
    assert result.returncode == 1, result.stdout + result.stderr
    assert {path for path, _ in seen} == {"/v1/traces", "/v1/metrics", "/v1/logs"}
    assert all(headers.get("authorization") == "Bearer s3cr3t-token" for _, headers in seen), seen
    assert "s3cr3t" not in result.stdout + result.stderr


def test_the_hardening_config_in_effect_and_what_fell_back() -> None:
    env = {"OTEL_PYTHON_HARDENING_RETRY_MAX_ATTEMPTS": "zero", "OTEL_PYTHON_HARDENING_RETRY_MAX_ATTEMPT": "5",
           "OTEL_PYTHON_HARDENING_CIRCUIT_FAIL_MAX": "7", "OTEL_PYTHON_HARDENING_HEALTH_TOKEN": "t0k3n-secret",
           "OTEL_PYTHON_HARDENING_CIRCUIT_STORAGE": "redis//:pa55word@cache"}
    result = doctor("--no-probe", env={**env, **GOOD})
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert ("WARN  hardening config: OTEL_PYTHON_HARDENING_RETRY_MAX_ATTEMPTS='zero' is not accepted, so the "
            "default 3 is in effect") in out, out
    assert "fix: accepted: a whole number >= 1" in out, out
    assert "WARN  hardening config: OTEL_PYTHON_HARDENING_RETRY_MAX_ATTEMPT is not a setting" in out, out
    assert "circuit opens after 7 failures" in out and "5 OTEL_PYTHON_HARDENING_* variable(s) set" in out, out
    assert "t0k3n" not in out + result.stderr
    assert "outbox off;" in out, out


def test_the_outbox_in_effect_without_its_password() -> None:
    result = doctor("--no-probe", env={"OTEL_PYTHON_HARDENING_OUTBOX": "redis://app:pa55word@cache:6379/2", **GOOD})
    assert "outbox on, redis://cache:6379/2;" in result.stdout, result.stdout
    assert "pa55word" not in result.stdout + result.stderr


@pytest.mark.parametrize("env", [
    {"OTEL_EXPORTER_OTLP_TIMEOUT": "abc", "OTEL_METRIC_EXPORT_INTERVAL": "soon"},
    {"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1", "OTEL_EXPORTER_OTLP_HEADERS": "%%,=,\x7f"},
    {"OTEL_EXPORTER_OTLP_ENDPOINT": "::::", "OTEL_TRACES_EXPORTER": "nope,,none"},
    {"OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "console", "OTEL_SEMCONV_STABILITY_OPT_IN": ",,,"},
    {"OTEL_PYTHON_HARDENING_HEALTH_INTERVAL": "1e999", "OTEL_PYTHON_HARDENING_MAX_UPSTREAMS": "-1",
     "OTEL_PYTHON_HARDENING_RETRY_STATUSES": "999,abc", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "hardening"},
], ids=["bad-numbers", "bad-protocol", "bad-url-and-headers", "bad-names", "none-and-console", "bad-hardening"])
def test_garbage_in_the_environment_is_findings_never_a_traceback(env: dict[str, str]) -> None:
    result = doctor("--timeout", "1", env=env)
    assert result.returncode in (1, 2), result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not result.stderr.strip(), result.stderr
    assert result.stdout.rstrip().endswith(f"exit {result.returncode}")


@pytest.mark.parametrize(("args", "expected"), [
    (["--setup", "no_such_module_here:setup"], "ModuleNotFoundError"),
    (["--setup", "json:nope"], "AttributeError"),
    (["--setup", ":"], "expected MODULE or MODULE:FUNCTION"),
    (["--timeout", "0"], "--timeout 0"),
    (["--timeout", "x"], "invalid float value"),
])
def test_bad_arguments_are_one_line(args: list[str], expected: str) -> None:
    result = doctor(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr, result.stderr


def test_setup_code_that_raises_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken_setup.py").write_text("def setup():\n    raise RuntimeError('no config file')\n")
    result = doctor("--setup", "broken_setup:setup", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("otel-hardening doctor: --setup broken_setup:setup failed: RuntimeError: "
                                     "no config file"), result.stderr


def test_versions_are_judged_against_the_declared_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    [ok] = _doctor.versions()
    assert ok.level == "ok" and "within its declared range" in ok.what
    monkeypatch.setattr(_doctor, "requires", lambda name: ["httpx>=99", "no-such-package-xyz>=1",
                                                           'redis>=5; extra == "redis"'])
    found = {f.what.split(" ")[0]: f for f in _doctor.versions()}
    assert found["httpx"].level == "warn" and "outside the tested range >=99" in found["httpx"].what
    assert found["no-such-package-xyz"].level == "fail" and found["no-such-package-xyz"].fix
    assert "redis" not in found  # an extra that is not installed is not a problem
