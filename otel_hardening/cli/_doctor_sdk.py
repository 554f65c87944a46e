"""What an app's OpenTelemetry SDK set-up exports, per signal: built the way ``opentelemetry-instrument``
would build it from this environment (zero-code), or read from the global providers that the app's own
set-up code left (``--setup``)."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

SIGNALS = ("traces", "metrics", "logs")
SDK_DEFAULT_INTERVAL_MS = 60_000.0
OTLP_NAMES = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}


class SetupError(Exception):
    """The app's set-up code could not be run; the message is one line."""


@dataclass
class Finding:
    level: str
    """``ok``, ``info``, ``warn`` (exit 1) or ``fail`` (exit 2)."""
    subject: str
    what: str
    fix: str | None = None


@dataclass
class Pipeline:
    """One signal: is there an SDK provider, and what leaves it."""

    provider: bool = False
    requested: list[str] = field(default_factory=list)
    """Zero-code: the exporter names asked for (one that could not be made is its own finding)."""
    exporters: list[Any] = field(default_factory=list)
    pull_readers: list[str] = field(default_factory=list)
    """Metric readers that are read rather than pushing (Prometheus scrape, in-memory)."""


@dataclass
class Setup:
    mode: str
    pipelines: dict[str, Pipeline] = field(default_factory=lambda: {s: Pipeline() for s in SIGNALS})
    interval_ms: float | None = None
    """Export interval of the periodic metric reader; None without one."""
    findings: list[Finding] = field(default_factory=list)


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _entry_point(group: str, name: str) -> Any | None:
    return next(iter(entry_points(group=group, name=name)), None)


def zero_code(env: Mapping[str, str]) -> Setup:
    """The providers ``opentelemetry-instrument`` would configure: its distro's defaults, then the SDK
    configurator's choice of exporter per signal, each exporter created as it would be (no network)."""
    setup = Setup("zero-code: as `opentelemetry-instrument` would set up this environment")
    distros = [ep.name for ep in entry_points(group="opentelemetry_distro")]
    if not distros:
        setup.findings.append(Finding(
            "fail", "zero-code", "no OpenTelemetry distro is installed: `opentelemetry-instrument` configures no "
            "SDK, so nothing is exported at all",
            "pip install 'otel-hardening[otlp]' (opentelemetry-distro and the OTLP exporters)"))
        return setup
    effective = dict(env)
    if "distro" in distros:  # opentelemetry-distro's own defaults (opentelemetry/distro/__init__.py)
        for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"):
            effective.setdefault(name, "otlp")
        effective.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    if not list(entry_points(group="opentelemetry_configurator")):
        setup.findings.append(Finding("fail", "zero-code", f"the distro ({', '.join(distros)}) has no SDK "
                                      "configurator: no provider is set up",
                                      "pip install opentelemetry-distro opentelemetry-sdk"))
        return setup
    setup.findings.append(Finding("ok", "zero-code", f"distro installed ({', '.join(distros)})"))
    for signal in SIGNALS:
        variable = f"OTEL_{signal.upper()}_EXPORTER"
        names = [n.strip() for n in effective.get(variable, "").split(",") if n.strip()]
        pipeline = setup.pipelines[signal]
        pipeline.provider = True
        if not names or names == ["none"]:
            continue
        pipeline.requested = names
        for name in names:
            exporter = _zero_code_exporter(signal, name, effective, setup)
            if exporter is not None:
                pipeline.exporters.append(exporter)
    if setup.pipelines["metrics"].exporters:
        setup.interval_ms = _interval_from_env(effective, setup)
    return setup


def _zero_code_exporter(signal: str, name: str, env: dict[str, str], setup: Setup) -> Any | None:
    resolved = name
    if name == "otlp":
        protocol = (env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
                    or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc").strip()
        if protocol not in OTLP_NAMES:
            setup.findings.append(Finding(
                "fail", signal, f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not an OTLP protocol the SDK knows: "
                "the app fails to start under opentelemetry-instrument", "use grpc or http/protobuf"))
            return None
        resolved = OTLP_NAMES[protocol]
    ep = _entry_point(f"opentelemetry_{signal}_exporter", resolved)
    if ep is None:
        package = {"otlp_proto_grpc": "opentelemetry-exporter-otlp-proto-grpc",
                   "otlp_proto_http": "opentelemetry-exporter-otlp-proto-http"}.get(resolved)
        setup.findings.append(Finding(
            "fail", signal, f"exporter {resolved!r} (from OTEL_{signal.upper()}_EXPORTER={name}) is not installed: "
            f"no {signal} leave this app",
            f"pip install {package}" if package else f"install the package providing {resolved!r}"))
        return None
    try:
        with _environ(env):
            return ep.load()()
    except Exception as exc:
        setup.findings.append(Finding("fail", signal, f"the {resolved} exporter cannot be created from this "
                                      f"environment: {type(exc).__name__}: {exc}",
                                      "fix the OTEL_EXPORTER_OTLP_* variable it names"))
        return None


def _interval_from_env(env: Mapping[str, str], setup: Setup) -> float:
    raw = env.get("OTEL_METRIC_EXPORT_INTERVAL")
    if raw is None:
        return SDK_DEFAULT_INTERVAL_MS
    try:
        return float(raw)
    except ValueError:
        setup.findings.append(Finding("warn", "metrics", f"OTEL_METRIC_EXPORT_INTERVAL={raw!r} is not a number of "
                                      "milliseconds: the SDK ignores it and exports every 60 s",
                                      "OTEL_METRIC_EXPORT_INTERVAL=5000"))
        return SDK_DEFAULT_INTERVAL_MS


def run_setup(spec: str) -> None:
    """Import ``module`` and, with ``module:attr``, call ``attr()``: the app's own SDK set-up."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise SetupError(f"--setup {spec!r}: expected MODULE or MODULE:FUNCTION, e.g. myapp.telemetry:setup")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: the app's own modules are importable
    try:
        module = importlib.import_module(module_name)
        if attr:
            target = module
            for part in attr.split("."):
                target = getattr(target, part)
            if callable(target):
                target()
    except SystemExit as exc:
        raise SetupError(f"--setup {spec}: the set-up code exited ({exc.code})") from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise SetupError(f"--setup {spec} failed: {type(exc).__name__}: {exc}") from None


def from_globals(mode: str) -> Setup:
    """The providers the app set globally, and what each exports (read from the SDK's objects)."""
    from opentelemetry import metrics, trace
    from opentelemetry._logs import get_logger_provider

    setup = Setup(mode)
    tracer_provider = trace.get_tracer_provider()
    if _is_sdk(tracer_provider, "opentelemetry.sdk.trace"):
        pipeline = setup.pipelines["traces"]
        pipeline.provider = True
        active = getattr(tracer_provider, "_active_span_processor", None)
        pipeline.exporters = [e for p in getattr(active, "_span_processors", ()) if (e := _exporter(p)) is not None]
    meter_provider = metrics.get_meter_provider()
    if _is_sdk(meter_provider, "opentelemetry.sdk.metrics"):
        pipeline = setup.pipelines["metrics"]
        pipeline.provider = True
        config = getattr(meter_provider, "_sdk_config", None)
        readers = getattr(config, "metric_readers", None) or getattr(meter_provider, "_metric_readers", None)
        for reader in readers or ():
            exporter = getattr(reader, "_exporter", None)
            if exporter is None:
                pipeline.pull_readers.append(type(reader).__name__)
                continue
            pipeline.exporters.append(exporter)
            interval = getattr(reader, "_export_interval_millis", None)
            if isinstance(interval, (int, float)) and not _in_memory(exporter):
                setup.interval_ms = float(interval) if setup.interval_ms is None else min(setup.interval_ms, interval)
    logger_provider = get_logger_provider()
    if _is_sdk(logger_provider, "opentelemetry.sdk._logs"):
        pipeline = setup.pipelines["logs"]
        pipeline.provider = True
        multi = getattr(logger_provider, "_multi_log_record_processor", None)
        processors = getattr(multi, "_log_record_processors", ())
        pipeline.exporters = [e for p in processors if (e := _exporter(p)) is not None]
    return setup


def _is_sdk(provider: object, package: str) -> bool:
    return type(provider).__module__.startswith(package)


def _exporter(processor: object) -> Any | None:
    for holder in (processor, getattr(processor, "_batch_processor", None)):
        for name in ("span_exporter", "_exporter", "exporter"):
            exporter = getattr(holder, name, None)
            if exporter is not None:
                return exporter
    return None


def _in_memory(exporter: object) -> bool:
    return "InMemory" in type(exporter).__name__
