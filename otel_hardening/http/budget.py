"""Retry budget per upstream: a token bucket in the style of Finagle's RetryBudget.

Every logical request deposits ``ratio`` tokens and every retry withdraws one, so in a total outage
retries add at most ``ratio`` of the request rate instead of multiplying it by ``max_attempts``. A
floor of ``min_per_second`` tokens keeps retries working for quiet clients. Deposits are capped at
``ttl`` seconds' worth of traffic so a long healthy period cannot bank an unbounded retry storm.
"""

from __future__ import annotations

import threading
import time

from otel_hardening.config import BudgetPolicy


class RetryBudget:
    def __init__(self, policy: BudgetPolicy) -> None:
        self._ratio = policy.ratio
        self._floor = policy.min_per_second
        self._ttl = policy.ttl
        self._lock = threading.Lock()
        self._request_rate = 0.0  # exponentially decayed requests per second
        self._tokens = policy.min_per_second * policy.ttl
        self._updated = time.monotonic()

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        if elapsed <= 0:
            return
        self._updated = now
        self._tokens = min(self._capacity(), self._tokens + self._floor * elapsed)

    def _capacity(self) -> float:
        return max(1.0, (self._floor + self._ratio * self._request_rate) * self._ttl)

    def deposit(self) -> None:
        """Called once per logical request."""
        with self._lock:
            now = time.monotonic()
            elapsed = now - self._updated
            decay = max(0.0, 1.0 - elapsed / self._ttl)
            self._request_rate = self._request_rate * decay + 1.0 / self._ttl
            self._refill(now)
            self._tokens = min(self._capacity(), self._tokens + self._ratio)

    def try_withdraw(self) -> bool:
        """Take one retry's worth of tokens; False when the budget is spent."""
        with self._lock:
            self._refill(time.monotonic())
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    @property
    def available(self) -> float:
        with self._lock:
            self._refill(time.monotonic())
            return self._tokens
