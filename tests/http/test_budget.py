"""Retry budget: in a total outage, attempts per request stay near 1 + ratio, not max_attempts."""

from __future__ import annotations

import time

import httpx

import otel_hardening
from otel_hardening import BudgetPolicy, CircuitPolicy, RetryPolicy
from otel_hardening.http.budget import RetryBudget
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel


def test_total_outage_is_bounded_by_the_budget(otel: Otel, server: FlakyUpstream) -> None:
    server.default = Reply(503)
    client = otel_hardening.harden(
        httpx.Client(),
        retry=RetryPolicy(max_attempts=5, backoff_initial=0.001, backoff_max=0.001),
        circuit=CircuitPolicy(fail_max=100_000),  # keep the breaker out of it: the budget alone
        budget=BudgetPolicy(ratio=0.2, min_per_second=1.0, ttl=10.0),
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    requests = 400
    started = time.monotonic()
    for _ in range(requests):
        client.get(server.url)
    elapsed = time.monotonic() - started
    client.close()
    allowed_floor = 1.0 * 10.0 + 1.0 * elapsed  # the initial floor bank plus what the floor refills
    ratio = server.hits / requests
    assert ratio <= 1 + 0.2 + allowed_floor / requests + 0.01, ratio
    assert ratio >= 1.15  # retries did happen, within the budget
    assert otel.total("hardening.http.client.calls", **{"hardening.outcome": "rejected_retry_budget"}) > 250


def test_quiet_client_still_retries() -> None:
    budget = RetryBudget(BudgetPolicy(ratio=0.2, min_per_second=10.0, ttl=10.0))
    budget.deposit(time.monotonic())
    assert all(budget.try_withdraw() for _ in range(10))


def test_budget_refuses_when_spent() -> None:
    budget = RetryBudget(BudgetPolicy(ratio=0.5, min_per_second=0.0, ttl=10.0))
    assert not budget.try_withdraw()
    budget.deposit(time.monotonic())
    budget.deposit(time.monotonic())
    assert budget.try_withdraw()  # two requests earn one retry at ratio 0.5
    assert not budget.try_withdraw()
