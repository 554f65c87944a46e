"""Does an OTLP endpoint answer? One short export of nothing, per signal, as the exporter would send it.

An empty export request is valid OTLP: a collector with a pipeline for the signal accepts it (HTTP 200 /
gRPC OK), one without answers 404 / UNIMPLEMENTED, and nothing listening is a refused or timed-out
connection. Headers configured for the exporter are sent (an authenticating gateway would refuse the
probe otherwise) and never printed; URLs are shown without userinfo or secret-looking query values.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from otel_hardening._redaction import redact_url

SIGNALS = ("traces", "metrics", "logs")
_GRPC_SERVICES = {
    "traces": ("opentelemetry.proto.collector.trace.v1.trace_service_pb2",
               "opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc", "TraceService",
               "ExportTraceServiceRequest"),
    "metrics": ("opentelemetry.proto.collector.metrics.v1.metrics_service_pb2",
                "opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc", "MetricsService",
                "ExportMetricsServiceRequest"),
    "logs": ("opentelemetry.proto.collector.logs.v1.logs_service_pb2",
             "opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc", "LogsService",
             "ExportLogsServiceRequest"),
}


@dataclass(frozen=True)
class Target:
    """Where one signal's exporter sends: ``protocol`` is ``grpc`` or ``http/protobuf``."""

    signal: str
    protocol: str
    endpoint: str
    """gRPC: ``host:port``; HTTP: the full URL of the signal's path."""
    secure: bool = False
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def shown(self) -> str:
        if self.protocol == "grpc":
            return f"{'https' if self.secure else 'http'}://{self.endpoint} (gRPC)"
        return f"{redact_url(self.endpoint)} (HTTP)"


@dataclass(frozen=True)
class Answer:
    ok: bool
    """The endpoint accepted an export for this signal."""
    reachable: bool
    """Something answered at all (a 404 or UNIMPLEMENTED is reachable, not ok)."""
    detail: str


def target_of(signal: str, exporter: Any) -> Target | None:
    """Where an OTLP exporter object sends, from the attributes the OTLP exporters keep; None for
    other exporters (console, in-memory, vendor ones)."""
    module = type(exporter).__module__
    endpoint = getattr(exporter, "_endpoint", None)
    if not isinstance(endpoint, str) or not module.startswith("opentelemetry.exporter.otlp"):
        return None
    # grpc exporters keep their headers, the HTTP ones in their client
    headers = getattr(exporter, "_headers", None) or getattr(getattr(exporter, "_client", None), "_headers", None) or ()
    if isinstance(headers, dict):
        headers = tuple(headers.items())
    pairs = tuple((str(k), str(v)) for k, v in headers)
    if ".grpc" in module:
        return Target(signal, "grpc", endpoint, secure=not getattr(exporter, "_insecure", True), headers=pairs)
    return Target(signal, "http/protobuf", endpoint, secure=endpoint.startswith("https:"), headers=pairs)


def probe(target: Target, timeout: float) -> Answer:
    """Never raises: every failure is an Answer that says what happened."""
    try:
        if target.protocol == "grpc":
            return _probe_grpc(target, timeout)
        return _probe_http(target, timeout)
    except Exception as exc:  # an unexpected library error is still one line, never a traceback
        return Answer(False, False, f"the probe failed: {type(exc).__name__}: {exc}")


def _probe_http(target: Target, timeout: float) -> Answer:
    request = urllib.request.Request(target.endpoint, data=b"", method="POST",
                                     headers={"Content-Type": "application/x-protobuf", **dict(target.headers)})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(True, True, f"accepted an empty export (HTTP {response.status})")
    except urllib.error.HTTPError as exc:
        code = exc.code
        if code == 404:
            return Answer(False, True, f"answers, but not at this path (HTTP 404): no {target.signal} pipeline, "
                                       "or a wrong endpoint path")
        if code in (401, 403):
            return Answer(False, True, f"refuses the export (HTTP {code}): check OTEL_EXPORTER_OTLP_HEADERS")
        return Answer(False, True, f"answers HTTP {code} to an empty export")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Answer(False, False, f"nothing answers ({_short(reason)})")


def _probe_grpc(target: Target, timeout: float) -> Answer:
    try:
        import importlib

        import grpc  # type: ignore[import-untyped]
    except ImportError:
        return _probe_tcp(target, timeout)
    pb2_name, grpc_name, service, request_name = _GRPC_SERVICES[target.signal]
    pb2, pb2_grpc = importlib.import_module(pb2_name), importlib.import_module(grpc_name)
    channel = (grpc.secure_channel(target.endpoint, grpc.ssl_channel_credentials()) if target.secure
               else grpc.insecure_channel(target.endpoint))
    try:
        stub = getattr(pb2_grpc, f"{service}Stub")(channel)
        metadata = tuple((k.lower(), v) for k, v in target.headers)
        stub.Export(getattr(pb2, request_name)(), timeout=timeout, metadata=metadata or None)
        return Answer(True, True, "accepted an empty export (gRPC OK)")
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else None
        name = getattr(code, "name", str(code))
        if name in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
            return Answer(False, False, f"nothing answers (gRPC {name})")
        if name == "UNIMPLEMENTED":
            return Answer(False, True, f"answers, but has no {target.signal} service (gRPC UNIMPLEMENTED): "
                                       f"the collector has no {target.signal} pipeline")
        if name in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
            return Answer(False, True, f"refuses the export (gRPC {name}): check OTEL_EXPORTER_OTLP_HEADERS")
        return Answer(False, True, f"answers gRPC {name} to an empty export")
    finally:
        channel.close()


def _probe_tcp(target: Target, timeout: float) -> Answer:
    import socket

    host, _, port = target.endpoint.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return Answer(True, True, "a TCP connection opens (grpcio is not installed: not checked further)")
    except (OSError, ValueError) as exc:
        return Answer(False, False, f"nothing answers ({_short(exc)})")


def _short(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    text = str(reason) or type(reason).__name__
    return text if len(text) <= 80 else text[:77] + "..."
