"""otel-hardening: circuit breakers, retries, leak tracking and health status for httpx clients,
observable through OpenTelemetry.

Three ways to turn it on: ``opentelemetry-instrument`` (zero code), :func:`install` (one line) or
:func:`harden` (one client). See the README for configuration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace

from otel_hardening._version import __version__
from otel_hardening.config import (
    BudgetPolicy,
    CircuitPolicy,
    HardeningConfig,
    QualityPolicy,
    RetryPolicy,
    SlowRequestPolicy,
)
from otel_hardening.http.errors import CircuitOpenError
from otel_hardening.http.harden import harden
from otel_hardening.http.harden import providers_of as _providers_of
from otel_hardening.instrumentor import HardeningInstrumentor

if TYPE_CHECKING:
    from otel_hardening.outbox import Outbox

__all__ = [
    "BudgetPolicy",
    "CircuitOpenError",
    "CircuitPolicy",
    "HardeningConfig",
    "HardeningInstrumentor",
    "QualityPolicy",
    "RetryPolicy",
    "SlowRequestPolicy",
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
    outbox: Outbox | None = None,
) -> None:
    """Harden every httpx client created from now on, and turn on resource tracking and health.

    Also turns on opentelemetry-instrumentation-httpx when it is off, so that each attempt gets a
    CLIENT span; :func:`uninstall` turns off only what this call turned on.

    Calling it again with an equal configuration and the same tracer and meter providers does
    nothing; with a different one it raises ``ValueError``: call :func:`uninstall` first. (Applying
    it in place would leave clients mid-request on the old policies, health and resource tracking
    restarted under the application's feet, and half the telemetry on the old providers.)
    ``config=None`` means ``HardeningConfig.from_env()``, which is what zero code installed.

    ``outbox``: every client hardened from now on defers its writes that still fail for a retryable
    reason to it (docs/outbox.md); default: an outbox on ``config.outbox``
    (``OTEL_PYTHON_HARDENING_OUTBOX``) if set, else none.
    """
    if config is not None and not isinstance(config, HardeningConfig):
        raise TypeError(f"install() takes a HardeningConfig or None, got {type(config).__name__}; "
                        "e.g. install(HardeningConfig(retry=RetryPolicy(max_attempts=5)))")
    if outbox is not None:
        from otel_hardening.outbox import Outbox

        if not isinstance(outbox, Outbox):
            raise TypeError(f"install(outbox=...) takes an otel_hardening.outbox.Outbox or None, got "
                            f"{type(outbox).__name__}; e.g. outbox=Outbox('/var/lib/app/outbox.sqlite3', ...)")
    current = HardeningInstrumentor._installation
    if current is not None:
        wanted = config if config is not None else HardeningConfig.from_env()
        if wanted != current.config:
            raise ValueError("otel_hardening.install(): already installed with a different HardeningConfig; "
                             "call otel_hardening.uninstall() first, then install() the new one")
        if _providers_of(current.engine.telemetry) != (tracer_provider, meter_provider):
            raise ValueError("otel_hardening.install(): already installed with other tracer/meter providers; "
                             "call otel_hardening.uninstall() first, then install() with the new ones")
        if outbox is not None and outbox is not current.outbox:
            raise ValueError("otel_hardening.install(): already installed with another outbox; "
                             "call otel_hardening.uninstall() first, then install() with the new one")
        return
    HardeningInstrumentor().instrument(
        config=config, tracer_provider=tracer_provider, meter_provider=meter_provider,
        logger_provider=logger_provider, instrument_httpx=True, outbox=outbox,
    )


def uninstall() -> None:
    """Undo :func:`install`: new clients are plain, and every client it hardened gets its own
    per-request step back (``is_hardened()`` is False). Clients hardened with :func:`harden` stay
    hardened. Their connection pools keep two inert wrappers (the README's ``install()`` section says why).

    Calling it when nothing is installed does nothing (and says nothing).
    """
    instrumentor = HardeningInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
