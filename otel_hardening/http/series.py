"""Metric series: what one named upstream, or ``_other`` and every upstream it aggregates, is counted in.

Only the first ``max_series`` upstream names get their own series (registry.py decides); every other
upstream is aggregated under ``OVERFLOW``. A series' counters stay monotonic across eviction: an
evicted upstream's counts go to a tally kept per series name.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from otel_hardening.http.counting import ReadableCount
from otel_hardening.http.outcomes import CIRCUIT_STATES, FAILED_OUTCOMES, OUTCOMES, REJECTED_CIRCUIT_OPEN, SUCCESS

OVERFLOW = "_other"
"""The upstream name, ``server.address`` and circuit name of every upstream past ``max_series``."""

@dataclass(frozen=True)
class UpstreamSnapshot:
    """What the health model reads about one upstream. Counters are monotonic since start."""

    name: str
    """Upstream authority as ``scheme://host:port`` (or ``_other``); never userinfo, path or query."""
    host: str
    circuit_state: str
    """``closed`` | ``open`` | ``half_open`` (for ``_other``: the worst of its circuits)."""
    calls: int
    """Logical calls finished."""
    attempts: int
    """Attempts sent over the network (first attempts plus retries)."""
    retries: int
    failures: int
    """Logical calls whose outcome was not success / success_after_retry."""
    rejected: int = 0
    """Logical calls the open circuit rejected without I/O (also counted in ``failures``)."""


class Tally:
    """The counters of one upstream, or of a series' evicted upstreams.

    A call adds to two numbers (its outcome, its attempts); calls, retries and failures are derived
    from them on read: only a rejected call makes no attempt, every other one makes its first.
    A first-time success, nearly every call, is counted without the lock (``ReadableCount``) and
    folded into the outcomes when they are read.
    """

    __slots__ = ("_attempts", "_folded", "_lock", "_outcomes", "_successes", "slow")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts = 0
        self._outcomes = dict.fromkeys(OUTCOMES, 0)
        self._successes = ReadableCount()
        self._folded = 0
        self.slow = 0
        """Logical calls slower than their slow-request threshold (http/slow.py)."""

    def add(self, outcome: str, attempts: int) -> None:
        if outcome is SUCCESS:  # one attempt, by definition
            next(self._successes)
            return
        with self._lock:
            self._outcomes[outcome] += 1
            self._attempts += attempts

    def add_slow(self) -> None:
        with self._lock:
            self.slow += 1

    def _fold(self) -> None:
        """Move the lock-free successes into the outcomes (under ``_lock``)."""
        successes = self._successes.total()
        new = successes - self._folded
        if new:
            self._folded = successes
            self._outcomes[SUCCESS] += new
            self._attempts += new

    @property
    def outcomes(self) -> dict[str, int]:
        """A copy of the calls per outcome."""
        with self._lock:
            self._fold()
            return dict(self._outcomes)

    @property
    def attempts(self) -> int:
        """Attempts sent over the network (first attempts plus retries)."""
        with self._lock:
            self._fold()
            return self._attempts

    @property
    def calls(self) -> int:
        return sum(self.outcomes.values())

    @property
    def retries(self) -> int:
        with self._lock:
            self._fold()
            outcomes = self._outcomes
            return self._attempts - sum(outcomes.values()) + outcomes[REJECTED_CIRCUIT_OPEN]

    @property
    def failures(self) -> int:
        outcomes = self.outcomes
        return sum(outcomes[o] for o in FAILED_OUTCOMES)

    def merge(self, other: Tally) -> None:
        """Add ``other``'s counts (read under its lock: never one call half counted)."""
        with other._lock:
            other._fold()
            attempts, slow, theirs = other._attempts, other.slow, dict(other._outcomes)
        with self._lock:
            self._attempts += attempts
            self.slow += slow
            mine = self._outcomes
            for outcome, n in theirs.items():
                if n:
                    mine[outcome] += n


class Attrs:
    """The attribute sets of one metric series (one named upstream, or ``_other``), made once."""

    __slots__ = ("base", "circuit", "outcome", "retry", "state")

    def __init__(self, name: str, host: str, port: int) -> None:
        self.base: dict[str, Any] = {"server.address": host, "server.port": port}
        self.outcome = {o: {**self.base, "hardening.outcome": o} for o in OUTCOMES}
        self.circuit: dict[str, Any] = {"hardening.circuit.name": name}
        self.state = {s: {**self.circuit, "hardening.circuit.state": s} for s in CIRCUIT_STATES}
        self.retry: dict[str, dict[str, Any]] = {}

    def retry_attrs(self, error_type: str) -> dict[str, Any]:
        attrs = self.retry.get(error_type)
        if attrs is None:
            attrs = self.retry.setdefault(error_type, {**self.base, "error.type": error_type})
        return attrs


OVERFLOW_ATTRS = Attrs(OVERFLOW, OVERFLOW, 0)


_CIRCUIT_RANK = {"closed": 0, "half_open": 1, "open": 2}


@dataclass
class Series:
    """One metric series / health component: a named upstream, or ``_other`` and all it aggregates."""

    name: str
    host: str
    attrs: Attrs
    tally: Tally
    states: dict[str, int]
    """Circuits of the series in each state (a named upstream has one circuit)."""
    budget: float
    """Retries available (for ``_other``: the lowest of its upstreams)."""

    def snapshot(self) -> UpstreamSnapshot:
        t = self.tally
        worst = max((s for s, n in self.states.items() if n), key=_CIRCUIT_RANK.__getitem__, default="closed")
        return UpstreamSnapshot(self.name, self.host, worst, t.calls, t.attempts, t.retries, t.failures,
                                t.outcomes[REJECTED_CIRCUIT_OPEN])
