"""otel-hardening: circuit breakers, retries, leak tracking and health status for httpx clients,
observable through OpenTelemetry.

Three ways to turn it on: ``opentelemetry-instrument`` (zero code), :func:`install` (one line) or
:func:`harden` (one client). See the README for configuration.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics, trace

from otel_hardening._version import __version__
from otel_hardening.config import BudgetPolicy, CircuitPolicy, HardeningConfig, RetryPolicy
from otel_hardening.http.errors import CircuitOpenError
from otel_hardening.http.harden import harden
from otel_hardening.instrumentor import HardeningInstrumentor

__all__ = [
    "BudgetPolicy",
    "CircuitOpenError",
    "CircuitPolicy",
    "HardeningConfig",
    "HardeningInstrumentor",
    "RetryPolicy",
    "__version__",
    "harden",
    "install",
    "uninstall",
]


def install(
    config: HardeningConfig | None = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    logger_provider: Any = None,
) -> None:
    """Harden every httpx client created from now on, and turn on resource tracking and health.

    Also turns on opentelemetry-instrumentation-httpx when it is off, so that each attempt gets a
    CLIENT span; :func:`uninstall` turns off only what this call turned on. Idempotent.
    """
    if config is not None and not isinstance(config, HardeningConfig):
        raise TypeError(f"install() takes a HardeningConfig or None, got {type(config).__name__}; "
                        "e.g. install(HardeningConfig(retry=RetryPolicy(max_attempts=5)))")
    HardeningInstrumentor().instrument(
        config=config, tracer_provider=tracer_provider, meter_provider=meter_provider,
        logger_provider=logger_provider, instrument_httpx=True,
    )


def uninstall() -> None:
    """Undo :func:`install`: new clients are plain, clients it hardened pass requests straight through.

    Calling it when nothing is installed does nothing (and says nothing).
    """
    instrumentor = HardeningInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
