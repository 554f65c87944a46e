"""One test body for both faces: a hardened sync or async client against the fault server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

import otel_hardening
from otel_hardening import BudgetPolicy, CircuitPolicy, RetryPolicy
from tests.conftest import Otel

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.05)
NO_BUDGET_LIMIT = BudgetPolicy(ratio=1.0, min_per_second=1000.0)


class Harness:
    def __init__(self, mode: str, otel: Otel, *, retry: RetryPolicy = FAST_RETRY,
                 circuit: CircuitPolicy | None = None, budget: BudgetPolicy = NO_BUDGET_LIMIT,
                 timeout: float = 5.0) -> None:
        self.mode = mode
        policies: dict[str, Any] = dict(retry=retry, circuit=circuit, budget=budget,
                                        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
        if mode == "async":
            self.loop = asyncio.new_event_loop()
            self.aclient = otel_hardening.harden(httpx.AsyncClient(timeout=timeout), **policies)
        else:
            self.client = otel_hardening.harden(httpx.Client(timeout=timeout), **policies)

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        if self.mode == "async":
            return self.loop.run_until_complete(self.aclient.request(method, url, **kw))
        return self.client.request(method, url, **kw)

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def close(self) -> None:
        if self.mode == "async":
            self.loop.run_until_complete(self.aclient.aclose())
            self.loop.close()
        else:
            self.client.close()
