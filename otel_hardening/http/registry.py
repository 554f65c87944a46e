"""Per-upstream state shared by every hardened client in the process.

An upstream is ``scheme://host:port``. Its circuit, retry budget, counters and the attribute sets
its telemetry uses are created once, on its first request, and reused by every request after.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from otel_hardening._logging import logger
from otel_hardening.config import BudgetPolicy, CircuitPolicy
from otel_hardening.http import telemetry as tm
from otel_hardening.http.budget import RetryBudget
from otel_hardening.http.circuit import Circuit
from otel_hardening.http.redaction import upstream_name
from otel_hardening.http.storage import make_storage


@dataclass(frozen=True)
class UpstreamSnapshot:
    """What the health model reads about one upstream. Counters are monotonic since start."""

    name: str
    """Upstream authority as ``scheme://host:port``; never userinfo, path or query."""
    host: str
    circuit_state: str
    """``closed`` | ``open`` | ``half_open``."""
    calls: int
    """Logical calls finished."""
    attempts: int
    """Attempts sent over the network (first attempts plus retries)."""
    retries: int
    failures: int
    """Logical calls whose outcome was not success / success_after_retry."""
    rejected: int = 0
    """Logical calls the open circuit rejected without I/O (also counted in ``failures``)."""


class Upstream:
    def __init__(
        self, name: str, host: str, port: int, circuit: CircuitPolicy, budget: BudgetPolicy,
        telemetry: tm.Telemetry,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.telemetry = telemetry
        self.budget = RetryBudget(budget)
        self.circuit = Circuit(name, circuit, make_storage(circuit.storage, name), self._state_changed)
        self._lock = threading.Lock()
        self.calls = self.attempts = self.retries = self.failures = 0
        self._outcomes = dict.fromkeys(tm.OUTCOMES, 0)
        base = {"server.address": host, "server.port": port}
        self.base_attrs: dict[str, Any] = base
        self.outcome_attrs: dict[str, dict[str, Any]] = {o: {**base, "hardening.outcome": o} for o in tm.OUTCOMES}
        self.circuit_attrs: dict[str, Any] = {"hardening.circuit.name": name}
        self.state_attrs = {s: {**self.circuit_attrs, "hardening.circuit.state": s} for s in tm.CIRCUIT_STATES}
        self._retry_attrs: dict[str, dict[str, Any]] = {}

    def retry_attrs(self, error_type: str) -> dict[str, Any]:
        attrs = self._retry_attrs.get(error_type)
        if attrs is None:
            attrs = self._retry_attrs.setdefault(error_type, {**self.base_attrs, "error.type": error_type})
        return attrs

    def started(self) -> None:
        self.budget.deposit()

    def finished(self, outcome: str, attempts: int, acted: bool) -> None:
        with self._lock:
            self.calls += 1
            self._outcomes[outcome] += 1
            self.attempts += attempts
            self.retries += max(0, attempts - 1)
            if outcome in tm.FAILED_OUTCOMES:
                self.failures += 1
        if acted:
            self.telemetry.retried_attempts.record(attempts, self.base_attrs)

    def outcome_counts(self) -> dict[str, int]:
        with self._lock:
            return {o: n for o, n in self._outcomes.items() if n}

    def _state_changed(self, circuit: Circuit, old: str, new: str) -> None:
        self.telemetry.transitions.add(1, self.state_attrs[new])
        level = logging.WARNING if new == "open" else logging.INFO
        logger.log(level, "otel_hardening: circuit %s %s -> %s", self.name, old, new)
        _notify_transition(self.name, old, new)

    def snapshot(self) -> UpstreamSnapshot:
        return UpstreamSnapshot(self.name, self.host, self.circuit.state, self.calls, self.attempts,
                                self.retries, self.failures, self._outcomes[tm.REJECTED_CIRCUIT_OPEN])


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._upstreams: dict[tuple[Any, ...], Upstream] = {}
        self.generation = 0
        """Bumped by clear(), so engines drop the upstreams they cached."""

    def get(self, url: httpx.URL, circuit: CircuitPolicy, budget: BudgetPolicy,
            telemetry: tm.Telemetry) -> Upstream:
        name, host, port = upstream_name(url)
        key = (name, circuit, budget, telemetry)
        upstream = self._upstreams.get(key)
        if upstream is None:
            with self._lock:
                upstream = self._upstreams.get(key)
                if upstream is None:
                    upstream = Upstream(name, host, port, circuit, budget, telemetry)
                    self._upstreams[key] = upstream
        return upstream

    def of(self, telemetry: tm.Telemetry) -> list[Upstream]:
        with self._lock:
            return [u for u in self._upstreams.values() if u.telemetry is telemetry]

    def all(self) -> list[Upstream]:
        with self._lock:
            return list(self._upstreams.values())

    def clear(self) -> None:
        with self._lock:
            self._upstreams.clear()
            self.generation += 1


REGISTRY = Registry()

TransitionListener = Callable[[str, str, str], None]
_transition_listeners: list[TransitionListener] = []


def add_transition_listener(listener: TransitionListener) -> Callable[[], None]:
    """Call ``listener(upstream_name, old_state, new_state)`` after every circuit transition (health
    re-evaluates at once). It runs on the requesting thread, possibly under the circuit's lock: it
    must be quick and must not call into the circuit. Returns a function that removes it."""
    _transition_listeners.append(listener)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _transition_listeners.remove(listener)

    return remove


def _notify_transition(name: str, old: str, new: str) -> None:
    for listener in tuple(_transition_listeners):
        try:
            listener(name, old, new)
        except Exception:  # a listener never breaks the request that caused the transition
            logger.debug("otel_hardening: circuit transition listener failed", exc_info=True)


_clients: weakref.WeakSet[httpx.Client | httpx.AsyncClient] = weakref.WeakSet()


def track_client(client: httpx.Client | httpx.AsyncClient) -> None:
    _clients.add(client)


def snapshot() -> list[UpstreamSnapshot]:
    """Every upstream seen in this process, for the health model."""
    return [u.snapshot() for u in REGISTRY.all()]


def open_client_count() -> int:
    """httpx clients hardened by this package that are alive and not closed."""
    return sum(1 for client in list(_clients) if not client.is_closed)


def reset() -> None:
    """Forget every upstream (circuits, budgets, counters). For tests: state starts fresh."""
    REGISTRY.clear()
