"""Per-upstream state shared by every hardened client in the process, bounded in size.

An upstream is ``scheme://host:port``. Its circuit, retry budget, counters and the attribute sets
its telemetry uses are created once, on its first request, and reused by every request after.

Bounded under high cardinality (a crawler, a webhook sender calling thousands of hosts):

- **State**: at most ``max_upstreams`` upstreams (``OTEL_PYTHON_HARDENING_MAX_UPSTREAMS``, default
  1,000) are kept. Past it, the least recently used upstreams whose circuit is closed are evicted in
  one batch (down to 90 %), and so are upstreams idle for ``IDLE_EVICT`` seconds. An open or
  half-open circuit is never evicted: forgetting it would let traffic through to a failing upstream.
  An evicted upstream comes back fresh (closed circuit, full budget) on its next request.
- **Telemetry**: the first ``max_series`` upstream names (``OTEL_PYTHON_HARDENING_MAX_UPSTREAM_SERIES``,
  default 100) get their own metric series and health components, for the life of the process; every
  other upstream is aggregated under ``OVERFLOW`` (``server.address="_other"``, ``server.port=0``,
  ``hardening.circuit.name="_other"``). Counters stay monotonic across eviction: an evicted
  upstream's counts (and any call still finishing on it) go to a tally kept per series name.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx

from otel_hardening._logging import log_once, logger
from otel_hardening.config import BudgetPolicy, CircuitPolicy
from otel_hardening.http import telemetry as tm
from otel_hardening.http.budget import RetryBudget
from otel_hardening.http.circuit import Circuit
from otel_hardening.http.quality import Recent
from otel_hardening.http.series import OVERFLOW, OVERFLOW_ATTRS, Attrs, Series, Tally, UpstreamSnapshot
from otel_hardening.http.storage import make_storage
from otel_hardening.http.transitions import notify_transition

DEFAULT_MAX_UPSTREAMS = 1000
DEFAULT_MAX_SERIES = 100
IDLE_EVICT = 600.0
"""Seconds without a request after which an upstream with a closed circuit is forgotten."""
_SWEEP_EVERY = 60.0


def upstream_name(url: httpx.URL) -> tuple[str, str, int]:
    """``(scheme://host:port, host, port)``: the circuit key and the only URL part in telemetry."""
    scheme = url.scheme
    port = url.port or (443 if scheme == "https" else 80)
    host = url.host
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}", host, port


class Upstream:
    __slots__ = (
        "__weakref__",
        "attrs",
        "budget",
        "circuit",
        "host",
        "last_used",
        "name",
        "next_traced_rejection",
        "pool_attrs",
        "port",
        "recent",
        "rejected_event_attrs",
        "series",
        "tally",
        "telemetry",
    )

    def __init__(
        self, name: str, host: str, port: int, circuit: CircuitPolicy, budget: BudgetPolicy,
        telemetry: tm.Telemetry, named: bool = True,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.telemetry = telemetry
        self.series = name if named else OVERFLOW
        self.attrs = Attrs(name, host, port) if named else OVERFLOW_ATTRS
        self.budget = RetryBudget(budget)
        self.circuit = Circuit(name, circuit, make_storage(circuit.storage, name), self._state_changed)
        self.tally = Tally()
        self.recent = Recent()
        """Recent attempts and the network quality class (quality.py)."""
        self.last_used = time.monotonic()
        self.next_traced_rejection = 0.0
        self.rejected_event_attrs = {"hardening.circuit.name": name}
        self.pool_attrs: dict[str, Any] = {**self.attrs.base, "url.scheme": name.partition("://")[0]}
        """The connection-pool metrics' attributes (the series' upstream and the URL scheme)."""

    @property
    def base_attrs(self) -> dict[str, Any]:
        return self.attrs.base

    def retry_attrs(self, error_type: str) -> dict[str, Any]:
        return self.attrs.retry_attrs(error_type)

    def span_attributes(self, method: str) -> dict[str, Any]:
        """The attributes a ``hardening.request`` span starts with (the real upstream, never ``_other``)."""
        return {
            "http.request.method": method,
            "server.address": self.host,
            "server.port": self.port,
            "hardening.circuit.name": self.name,
        }

    def trace_rejection(self, now: float) -> bool:
        """Whether a rejection at ``now`` gets its own ``hardening.request`` span: the first one after
        each circuit transition, then one per ``TRACED_REJECTION_INTERVAL``."""
        if now < self.next_traced_rejection:
            return False
        self.next_traced_rejection = now + tm.TRACED_REJECTION_INTERVAL
        return True

    def finished_acted_on(self, outcome: str, attempts: int) -> None:
        """A call hardening acted on (it has a ``hardening.request`` span) finished."""
        self.tally.add(outcome, attempts)
        if attempts:  # a rejected call made no attempt: it is not an attempts-per-call sample
            self.telemetry.retried_attempts.record(attempts, self.attrs.base)

    def _state_changed(self, circuit: Circuit, old: str, new: str) -> None:
        self.next_traced_rejection = 0.0
        self.telemetry.transitions.add(1, self.attrs.state[new])
        level = logging.WARNING if new == "open" else logging.INFO
        logger.log(level, "otel_hardening: circuit %s %s -> %s", self.name, old, new)
        notify_transition(self.series, old, new)


class Registry:
    def __init__(self, max_upstreams: int = DEFAULT_MAX_UPSTREAMS, max_series: int = DEFAULT_MAX_SERIES) -> None:
        self._lock = threading.Lock()
        self._upstreams: dict[tuple[Any, ...], Upstream] = {}
        self._named: set[str] = set()
        self._retired: dict[tuple[tm.Telemetry, str], Series] = {}
        self._swept = time.monotonic()
        self.max_upstreams = max_upstreams
        self.max_series = max_series
        self.generation = 0
        """Bumped by clear() and by evictions, so engines drop the upstreams they cached."""

    configured = False

    def configure(self, max_upstreams: int, max_series: int) -> None:
        self.max_upstreams, self.max_series = max_upstreams, max_series
        self.configured = True

    def get(self, url: httpx.URL, circuit: CircuitPolicy, budget: BudgetPolicy,
            telemetry: tm.Telemetry) -> Upstream:
        name, host, port = upstream_name(url)
        key = (name, circuit, budget, telemetry)
        upstream = self._upstreams.get(key)
        if upstream is None:
            with self._lock:
                upstream = self._upstreams.get(key)
                if upstream is None:
                    self._make_room()
                    named = name in self._named or len(self._named) < self.max_series
                    if named:
                        self._named.add(name)
                    upstream = Upstream(name, host, port, circuit, budget, telemetry, named)
                    self._upstreams[key] = upstream
        return upstream

    def _make_room(self) -> None:
        now = time.monotonic()
        full = len(self._upstreams) >= self.max_upstreams
        if not full and now - self._swept < _SWEEP_EVERY:
            return
        self._swept = now
        closed = sorted((u.last_used, k) for k, u in self._upstreams.items() if u.circuit.is_closed_locally())
        keep = int(self.max_upstreams * 0.9) if full else self.max_upstreams
        excess = len(self._upstreams) - keep
        evict = [k for i, (used, k) in enumerate(closed) if i < excess or now - used > IDLE_EVICT]
        for k in evict:
            self._retire(self._upstreams.pop(k))
        if evict:
            self.generation += 1
        if len(self._upstreams) >= self.max_upstreams:
            log_once("registry:full", logging.WARNING,
                     "otel_hardening: %d upstreams have open circuits or are in use, more than "
                     "OTEL_PYTHON_HARDENING_MAX_UPSTREAMS=%d; keeping them (an open circuit is never forgotten)",
                     len(self._upstreams), self.max_upstreams)

    def _retire(self, upstream: Upstream) -> None:
        key = (upstream.telemetry, upstream.series)
        retired = self._retired.get(key)
        if retired is None:
            retired = self._retired[key] = Series(upstream.series, upstream.attrs.base["server.address"],
                                                  upstream.attrs, Tally(), {}, 0.0)
        retired.tally.merge(upstream.tally)
        upstream.tally = retired.tally  # a call still finishing on it counts there

    def series(self, telemetry: tm.Telemetry | None = None) -> list[Series]:
        """Every metric series (named upstreams, ``_other``) with its counts, live and evicted."""
        with self._lock:
            live = [u for u in self._upstreams.values() if telemetry is None or u.telemetry is telemetry]
            retired = [s for (t, _), s in self._retired.items() if telemetry is None or t is telemetry]
        out: dict[str, Series] = {}
        for old in retired:
            series = out.setdefault(old.name, Series(old.name, old.host, old.attrs, Tally(), {}, float("inf")))
            series.tally.merge(old.tally)
        for u in live:
            found = out.get(u.series)
            if found is None:
                found = out[u.series] = Series(u.series, u.attrs.base["server.address"], u.attrs, Tally(), {},
                                               float("inf"))
            series = found
            series.tally.merge(u.tally)
            state = u.circuit.state
            series.states[state] = series.states.get(state, 0) + 1
            available = u.budget.available
            if available < series.budget:
                series.budget = available
        for series in out.values():
            if series.budget == float("inf"):
                series.budget = 0.0
        return list(out.values())

    def is_named(self, name: str) -> bool:
        """Whether upstream ``name`` has its own metric series (else it is counted under ``OVERFLOW``)."""
        return name in self._named

    def all(self) -> list[Upstream]:
        with self._lock:
            return list(self._upstreams.values())

    def __len__(self) -> int:
        return len(self._upstreams)

    def clear(self) -> None:
        with self._lock:
            self._upstreams.clear()
            self._named.clear()
            self._retired.clear()
            self.generation += 1


REGISTRY = Registry()

def snapshot() -> list[UpstreamSnapshot]:
    """One entry per named upstream and one ``_other`` for the rest (bounded), for the health model."""
    return [s.snapshot() for s in REGISTRY.series()]


def reset() -> None:
    """Forget every upstream (circuits, budgets, counters). For tests: state starts fresh."""
    REGISTRY.clear()
