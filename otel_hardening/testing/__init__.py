"""Testing kit: a fault-injecting upstream, in-memory telemetry and state isolation for your own tests.

With pytest, the plugin (installed with the package, entry point ``pytest11``) gives the fixtures
``flaky_upstream`` and ``hardening_telemetry`` and resets circuit and budget state around every test.
Without pytest, use :class:`FlakyUpstream`, :class:`HardeningTelemetry` and :func:`reset` directly.
"""

from __future__ import annotations

from otel_hardening.testing._telemetry import HardeningTelemetry
from otel_hardening.testing._upstream import FlakyUpstream, ReceivedRequest, Reply, Rule, closed_port

__all__ = [
    "FlakyUpstream",
    "HardeningTelemetry",
    "ReceivedRequest",
    "Reply",
    "Rule",
    "closed_port",
    "reset",
]


def reset() -> None:
    """Forget every upstream's circuit, retry budget, counters and slow-request log rate, as in a fresh process.

    Hardened clients keep working: their next request starts from a closed circuit and a full budget.
    Circuits kept in Redis (``storage=redis://...``) are shared state outside the process and are not
    touched; give each test its own key prefix or Redis database instead.
    """
    from otel_hardening.http import bypass, registry, slow

    registry.reset()
    bypass.reset()
    slow.reset()
