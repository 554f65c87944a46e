"""Retry budget per upstream: a token bucket in the style of Finagle's RetryBudget.

Every logical request deposits ``ratio`` tokens and every retry withdraws one, so in a total outage
retries add at most ``ratio`` of the request rate instead of multiplying it by ``max_attempts``. A
floor of ``min_per_second`` tokens keeps retries working for quiet clients. The bank is capped at
``ttl`` seconds' worth of allowance, so a long healthy period cannot save up a retry storm.

The request rate behind the cap is re-estimated once a second, and deposits are only counted (a
``ReadableCount``: no lock) until then or until a retry asks for a token: a deposit is one C call and
a comparison, and it runs on every request.
"""

from __future__ import annotations

import threading
import time

from otel_hardening.config import BudgetPolicy
from otel_hardening.http.counting import ReadableCount


class RetryBudget:
    def __init__(self, policy: BudgetPolicy) -> None:
        self._ratio = policy.ratio
        self._floor = policy.min_per_second
        self._ttl = policy.ttl
        self._lock = threading.Lock()
        self._cap = max(1.0, policy.min_per_second * policy.ttl)
        self._tokens = self._cap if policy.min_per_second > 0 else 0.0
        self._rate = 0.0
        self._deposits = ReadableCount()
        self._banked = 0
        """Deposits already in ``_tokens``."""
        self._count = 0
        """Deposits since the last roll."""
        self._tick = time.monotonic()

    def _settle(self) -> None:
        """Bank the deposits counted since the last settlement (under ``_lock``). Capping their sum once
        is the same as capping each: the cap changes only in ``_roll``, which settles first."""
        deposits = self._deposits.total()
        new = deposits - self._banked
        if new:
            self._banked = deposits
            self._count += new
            tokens = self._tokens + self._ratio * new
            self._tokens = tokens if tokens < self._cap else self._cap

    def _roll(self, now: float) -> None:
        """Once a second: refill the floor, re-estimate the request rate, re-size the bank (under ``_lock``)."""
        self._settle()
        elapsed = now - self._tick
        if elapsed < 1.0:
            return  # another thread rolled meanwhile
        weight = min(1.0, elapsed / self._ttl)
        self._rate += (self._count / elapsed - self._rate) * weight
        self._cap = max(1.0, (self._floor + self._ratio * self._rate) * self._ttl)
        self._tokens = min(self._cap, self._tokens + self._floor * elapsed)
        self._count = 0
        self._tick = now

    def deposit(self, now: float) -> None:
        """Called once per logical request, at ``now`` (``time.monotonic()``)."""
        next(self._deposits)
        if now - self._tick >= 1.0:
            with self._lock:
                self._roll(now)

    def try_withdraw(self) -> bool:
        """Take one retry's worth of tokens; False when the budget is spent."""
        now = time.monotonic()
        with self._lock:
            if now - self._tick >= 1.0:
                self._roll(now)
            else:
                self._settle()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    @property
    def available(self) -> float:
        with self._lock:
            self._settle()
            return self._tokens
