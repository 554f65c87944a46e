"""One circuit breaker per upstream, driven through pybreaker's state machine.

pybreaker's ``CircuitBreaker.call()`` holds one lock for the whole wrapped call, which would run
concurrent requests to one upstream one at a time, and its async path needs tornado. So the breaker
is used here as a state machine only: ``acquire()`` decides before the attempt (under a short lock,
never held across the request), ``record_success()`` / ``record_failure()`` feed the outcome through
pybreaker's own state objects, and listeners, storage and thresholds stay pybreaker's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pybreaker

from otel_hardening.config import CircuitPolicy
from otel_hardening.http.policy import utc_now
from otel_hardening.http.storage import FallbackRedisStorage, Lease, SharedUnavailable

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

# pybreaker spells it "half-open"; the telemetry contract uses one token per state.
_STATE_NAMES = {pybreaker.STATE_CLOSED: CLOSED, pybreaker.STATE_OPEN: OPEN, pybreaker.STATE_HALF_OPEN: HALF_OPEN}

StateListener = Callable[["Circuit", str, str], None]


class _UpstreamFailure(Exception):
    """Stands for a failed attempt (a 5xx response, say) when pybreaker is told about it."""


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, circuit: Circuit) -> None:
        self._circuit = circuit

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: object, new_state: object) -> None:
        old = _STATE_NAMES.get(getattr(old_state, "name", ""), CLOSED)
        new = _STATE_NAMES[getattr(new_state, "name", pybreaker.STATE_CLOSED)]
        if old != new:
            self._circuit._notify(old, new)


class Permit:
    """Permission for one attempt. ``trial`` permits hold one of the slots of half-open period ``period``."""

    __slots__ = ("lease", "period", "state", "trial")

    def __init__(self, state: str, trial: bool, period: int = 0, lease: Lease | None = None) -> None:
        self.state = state
        self.trial = trial
        self.period = period
        self.lease = lease
        """The fleet-wide slot (shared Redis state), else the slot is counted in this process."""


CLOSED_PERMIT = Permit(CLOSED, trial=False)
"""Shared by every attempt while closed: a closed permit holds nothing, so the common path allocates none.
A calm circuit (``Circuit.calm``) gives it and needs no word of its success: the engine skips both calls."""


class Circuit:
    def __init__(
        self,
        name: str,
        policy: CircuitPolicy,
        storage: pybreaker.CircuitBreakerStorage | None = None,
        on_state_change: StateListener | None = None,
    ) -> None:
        self.name = name
        self._policy = policy
        self._reset_timeout = timedelta(seconds=policy.reset_timeout)
        self._trial_at: tuple[datetime | None, float] = (None, 0.0)
        """When the current opening (``opened_at``) allows a trial, in ``time.monotonic()`` seconds."""
        # Re-entrant: pybreaker calls our listener (which resets trials) while we hold it.
        self._lock = threading.RLock()
        self._trials = 0
        # Each half-open period has its own slots: a trial released late (its task was cancelled
        # after the circuit reopened and half-opened again) must not free a slot of a newer period.
        self._period = 0
        self._shared = storage if isinstance(storage, FallbackRedisStorage) else None
        self._seen: list[tuple[str, str]] | None = None
        self._on_state_change = on_state_change
        self.calm = self._shared is None
        """Closed with no failure counted, in this process's own storage: the attempt's common path
        (no lock, no storage read). Shared storage can change elsewhere: never calm."""
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=policy.fail_max,
            reset_timeout=policy.reset_timeout,
            state_storage=storage,
            listeners=[_Listener(self)],
            name=name,
            throw_new_error_on_trip=False,
        )

    @property
    def state(self) -> str:
        return _STATE_NAMES[self._breaker.current_state]

    def _notify(self, old: str, new: str) -> None:
        with self._lock:
            if new == HALF_OPEN or old == HALF_OPEN:
                self._period += 1
            self._trials = 0
            if self._seen is not None:
                self._seen.append((old, new))
        if self._on_state_change is not None:
            self._on_state_change(self, old, new)

    def is_closed_locally(self) -> bool:
        """Closed as this process last saw it (no storage round trip): safe to forget."""
        return bool(self._breaker._state.name == pybreaker.STATE_CLOSED)

    def seconds_until_trial(self) -> float:
        opened_at = self._breaker._state_storage.opened_at
        if opened_at is None:
            return 0.0
        seen, trial_at = self._trial_at
        if opened_at != seen:  # once per opening: a rejection during an outage is a clock read
            trial_at = time.monotonic() + (opened_at + self._reset_timeout - utc_now()).total_seconds()
            self._trial_at = (opened_at, trial_at)
        return max(0.0, trial_at - time.monotonic())

    def acquire(self, transitions: list[tuple[str, str]]) -> Permit | None:
        """A permit for one attempt, or None when the circuit rejects it (no I/O is to be done).

        State changes this call causes are appended to ``transitions`` (for the caller's span).
        """
        if self.calm:
            return CLOSED_PERMIT
        state = self._breaker.current_state
        if state == pybreaker.STATE_CLOSED:
            return CLOSED_PERMIT
        if state == pybreaker.STATE_OPEN:
            if self.seconds_until_trial() > 0:
                return None
            with self._lock:
                if self._breaker.current_state == pybreaker.STATE_OPEN:
                    self._breaker.half_open()
                    transitions.append((OPEN, HALF_OPEN))
        if self._shared is not None and self._breaker.current_state == pybreaker.STATE_HALF_OPEN:
            try:
                lease = self._shared.take_trial(self._policy.half_open_max_calls, self._policy.reset_timeout)
            except SharedUnavailable:
                pass  # Redis is down: state and trials are this process's own until it is back
            else:
                return None if lease is None else Permit(HALF_OPEN, trial=True, lease=lease)
        with self._lock:
            if self._breaker.current_state != pybreaker.STATE_HALF_OPEN:
                return self._acquire_again()
            if self._trials >= self._policy.half_open_max_calls:
                return None
            self._trials += 1
            return Permit(HALF_OPEN, trial=True, period=self._period)

    def _acquire_again(self) -> Permit | None:
        # The state moved while we waited for the lock (another thread's trial finished).
        if self._breaker.current_state == pybreaker.STATE_CLOSED:
            return CLOSED_PERMIT
        return None

    def _release(self, permit: Permit) -> None:
        if permit.trial and permit.lease is not None and self._shared is not None:
            permit.trial = False
            self._shared.give_trial(permit.lease)
        elif permit.trial:
            with self._lock:
                if permit.period == self._period:
                    self._trials = max(0, self._trials - 1)
                permit.trial = False  # released once, whatever comes after

    def record_success(self, permit: Permit, transitions: list[tuple[str, str]]) -> None:
        if permit.trial:
            self._release(permit)
        if self.calm:
            return  # closed, nothing counted: nothing to reset
        breaker = self._breaker
        if permit.state == CLOSED and breaker.fail_counter == 0:
            return  # nothing to reset: keep the common path free of storage writes
        with self._lock:
            self._seen = transitions
            try:
                breaker.state._handle_success()
            finally:
                self._seen = None
            if self._shared is None:
                self.calm = breaker.current_state == pybreaker.STATE_CLOSED and breaker.fail_counter == 0

    def record_failure(self, permit: Permit, reason: str, transitions: list[tuple[str, str]]) -> None:
        self._release(permit)
        with self._lock:
            self.calm = False
            self._seen = transitions
            try:
                self._breaker.state._handle_error(_UpstreamFailure(reason), reraise=False)
            except (_UpstreamFailure, pybreaker.CircuitBreakerError):
                pass  # pybreaker re-raises when it trips; the caller already has the real error
            finally:
                self._seen = None

    def release(self, permit: Permit) -> None:
        """Give the permit back without a verdict (the attempt was cancelled or failed locally)."""
        self._release(permit)
