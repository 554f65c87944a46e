"""The request behind a health change: the span context of the request whose attempt moved a circuit.

Recorded only on a circuit transition (the listener runs on the requesting thread, inside the
request's context), so requests pay nothing; a change with no such request (a resource trend, an
error ratio crossing its threshold) has no cause.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from opentelemetry import trace
from opentelemetry.trace import SpanContext

from otel_hardening.health._model import HealthReport

MAX_CAUSES = 1024
"""Upstream series names are already bounded (``MAX_UPSTREAM_SERIES``); this caps the map regardless."""


class CircuitCauses:
    """The span context of the request behind each upstream's latest circuit transition."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: OrderedDict[str, SpanContext] = OrderedDict()

    def record(self, upstream: str, old: str, new: str) -> None:
        """A transition listener (``transitions.add_transition_listener``): quick, never raises."""
        context = trace.get_current_span().get_span_context()
        with self._lock:
            self._latest.pop(upstream, None)
            if context.is_valid:
                self._latest[upstream] = context
                if len(self._latest) > MAX_CAUSES:
                    self._latest.popitem(last=False)

    def of(self, previous: HealthReport | None, report: HealthReport) -> SpanContext | None:
        """The request behind a change from ``previous`` to ``report``: that of the worst circuit
        component whose status changed between them, if its transition came from a traced request."""
        before = {c.name: c.status for c in previous.components} if previous is not None else {}
        changed = [c for c in report.components
                   if c.measurement == "circuit" and before.get(c.name) is not c.status]
        with self._lock:
            for component in sorted(changed, key=lambda c: -c.status.rank):
                context = self._latest.get(component.component)
                if context is not None:
                    return context
        return None
