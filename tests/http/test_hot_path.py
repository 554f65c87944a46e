"""What the request path takes as given, checked on the installed versions: the fast readings it relies
on (httpx's parsed URL, OpenTelemetry's context variable) and its lock-free counters."""

from __future__ import annotations

import threading

import httpx
import pybreaker
import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider

from otel_hardening.config import BudgetPolicy, CircuitPolicy
from otel_hardening.http import engine, urls
from otel_hardening.http.budget import RetryBudget
from otel_hardening.http.circuit import CLOSED_PERMIT, Circuit
from otel_hardening.http.counting import ReadableCount
from otel_hardening.http.outcomes import FAILURE, REJECTED_CIRCUIT_OPEN, SUCCESS, SUCCESS_AFTER_RETRY
from otel_hardening.http.series import Tally

URLS = ("http://a.test/p", "https://u:pw@b.test:8443/x/y?token=1&q=2#frag", "http://[::1]:81/?",
        "http://xn--bcher-kva.example/b%C3%BCcher?q=%74oken", "https://example.com:443/default-port")


def test_the_parsed_url_is_read_directly_on_the_installed_httpx() -> None:
    assert urls.DIRECT, f"httpx {httpx.__version__} changed URL._uri_reference: the slow path runs"


@pytest.mark.parametrize("url", URLS)
def test_direct_and_public_parts_agree(url: str) -> None:
    parsed = httpx.URL(url)
    scheme, _, host, port, _, query, fragment = urls.parts(parsed)
    public = urls._public_parts(parsed)
    assert (scheme, port, query or "", fragment or "") == (public.scheme, public.port, public.query,
                                                            public.fragment)
    assert host == parsed.raw_host.decode("ascii")  # an IDN stays in its xn-- form: one key per upstream


def test_the_current_context_is_read_from_the_api_variable() -> None:
    assert engine._CONTEXT is not None, "opentelemetry-api changed its runtime context: the slow path runs"
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("s") as span:
        assert engine._CONTEXT.get() is context.get_current()
        assert engine._CONTEXT.get().get(engine._SPAN_KEY) is span is trace.get_current_span()


def test_a_readable_count_counts_every_thread_and_leaves_its_reads_out() -> None:
    count = ReadableCount()
    totals: list[int] = []

    def add() -> None:
        for _ in range(20_000):
            next(count)

    threads = [threading.Thread(target=add) for _ in range(8)]
    for t in threads:
        t.start()
    for _ in range(100):
        totals.append(count.total())
    for t in threads:
        t.join()
    assert count.total() == count.total() == 160_000
    assert totals == sorted(totals)


def test_a_tally_folds_its_lock_free_successes_into_every_reading() -> None:
    tally = Tally()
    for _ in range(5):
        tally.add(SUCCESS, 1)
    tally.add(SUCCESS_AFTER_RETRY, 3)
    tally.add(FAILURE, 1)
    tally.add(REJECTED_CIRCUIT_OPEN, 0)
    assert tally.outcomes[SUCCESS] == 5 and tally.calls == 8
    assert (tally.attempts, tally.retries, tally.failures) == (9, 2, 2)
    merged = Tally()
    merged.add(SUCCESS, 1)
    merged.merge(tally)
    tally.add(SUCCESS, 1)  # after the merge: not in it
    assert (merged.calls, merged.attempts, merged.outcomes[SUCCESS]) == (9, 10, 6)


def test_a_budget_banks_the_deposits_it_only_counted() -> None:
    budget = RetryBudget(BudgetPolicy(ratio=0.5, min_per_second=0.0, ttl=10.0))
    assert not budget.try_withdraw()
    budget.deposit(budget._tick)
    budget.deposit(budget._tick)
    assert budget.available == 1.0
    assert budget.try_withdraw() and not budget.try_withdraw()


def test_a_calm_circuit_is_closed_with_nothing_counted() -> None:
    circuit = Circuit("http://calm.test:80", CircuitPolicy(fail_max=2, reset_timeout=30))
    assert circuit.calm and circuit.acquire([]) is CLOSED_PERMIT
    circuit.record_failure(CLOSED_PERMIT, "503", [])
    assert not circuit.calm and circuit._breaker.fail_counter == 1
    circuit.record_success(CLOSED_PERMIT, [])  # resets the count: calm again
    assert circuit.calm and circuit._breaker.fail_counter == 0
    transitions: list[tuple[str, str]] = []
    circuit.record_failure(CLOSED_PERMIT, "503", transitions)
    circuit.record_failure(CLOSED_PERMIT, "503", transitions)
    assert transitions == [("closed", "open")] and not circuit.calm
    assert circuit.acquire([]) is None
    circuit._breaker.half_open()
    trial = circuit.acquire([])
    assert trial is not None and trial.trial and not circuit.calm
    circuit.record_success(trial, [])
    assert circuit._breaker.current_state == pybreaker.STATE_CLOSED and circuit.calm
