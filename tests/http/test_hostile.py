"""Only httpx's errors (or the caller's) reach the caller, whatever the upstream or the config holds."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import otel_hardening
from otel_hardening import BudgetPolicy, CircuitPolicy, HardeningConfig, RetryPolicy
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel
from tests.http.harness import FAST_RETRY, Harness
from tests.http.rawserver import RawServer, answer

HOSTILE_RETRY_AFTER = [
    "²".encode(), "①".encode(), "٣".encode(), b"\xb2",  # str.isdigit() says yes, float() says no
    b"Fri, 31 Dec 99999999999 23:59:59 GMT",  # OverflowError in the date parser
    b"Fri, 31 Dec 9999 23:59:59 GMT", b"Mon, 01 Jan 0001 00:00:00 GMT",
    b"9" * 5000,  # 5,000 digits
    b"1e400", b"-1", b"nan", b"inf", b"0x10", b"\x01\x02",
    b"1\r\nRetry-After: 2",  # several headers
]


@pytest.fixture
def h(mode: str, otel: Otel) -> Iterator[Harness]:
    harness = Harness(mode, otel, retry=RetryPolicy(max_attempts=2, backoff_initial=0.01, retry_after_max=2))
    yield harness
    harness.close()


def checked_out(client: httpx.Client | httpx.AsyncClient) -> int:
    """Requests holding (or waiting for) a connection of the client's pool right now."""
    transport: Any = client._transport
    pool = getattr(transport, "inner", transport)._pool
    return len(pool._requests)


def harness_client(h: Harness) -> httpx.Client | httpx.AsyncClient:
    return h.aclient if h.mode == "async" else h.client


@pytest.mark.parametrize("value", HOSTILE_RETRY_AFTER, ids=lambda v: repr(v[:12]))
@pytest.mark.parametrize("status", [429, 503])
def test_hostile_retry_after_is_a_valid_wait_or_ignored(h: Harness, value: bytes, status: int) -> None:
    server = RawServer(answer(status, b"Retry-After: " + value + b"\r\n", body=b"busy"))
    try:
        response = h.get(server.url)  # never ValueError / OverflowError
    finally:
        server.close()
    assert response.status_code == status
    assert response.text == "busy"
    # a real but far date is a valid wait beyond RETRY_AFTER_MAX (no retry); the rest are ignored or 0 s
    assert server.hits == (1 if value.startswith(b"Fri, 31 Dec 9999 ") else 2)
    assert checked_out(harness_client(h)) == 0  # the discarded first attempt went back to the pool


def test_garbage_config_in_code_is_a_clear_error() -> None:
    for bad, match in [
        (dict(max_attempts=0), r"RetryPolicy.max_attempts=0 .*whole number >= 1"),
        (dict(max_attempts="3"), r"RetryPolicy.max_attempts='3'"),
        (dict(deadline=1e12), r"RetryPolicy.deadline=1000000000000.0 is out of range.*<= 86400s"),
        (dict(deadline=float("nan")), r"RetryPolicy.deadline=nan"),
        (dict(backoff_max=float("inf")), r"RetryPolicy.backoff_max=inf"),
        (dict(retry_statuses={700}), r"RetryPolicy.retry_statuses"),
    ]:
        with pytest.raises((TypeError, ValueError), match=match):
            RetryPolicy(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"CircuitPolicy.reset_timeout=1e\+12|CircuitPolicy.reset_timeout=1000"):
        CircuitPolicy(reset_timeout=1e12)
    with pytest.raises(ValueError, match=r"CircuitPolicy.storage='mysql://x'.*redis://"):
        CircuitPolicy(storage="mysql://x")
    with pytest.raises(ValueError, match=r"BudgetPolicy.ratio=-1"):
        BudgetPolicy(ratio=-1)


def test_wrong_types_at_the_entry_points_are_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match=r"harden\(\) takes an httpx.Client or httpx.AsyncClient, got str"):
        otel_hardening.harden("http://example.invalid")  # type: ignore[type-var]
    with httpx.Client() as client, pytest.raises(TypeError, match=r"harden\(retry=...\) takes a RetryPolicy"):
        otel_hardening.harden(client, retry={"max_attempts": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"install\(\) takes a HardeningConfig"):
        otel_hardening.install({"retry": {}})  # type: ignore[arg-type]


def test_uninstall_twice_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    otel_hardening.uninstall()
    otel_hardening.uninstall()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_huge_env_durations_are_one_clear_error_and_the_default(caplog: pytest.LogCaptureFixture) -> None:
    config = HardeningConfig.from_env({
        "OTEL_PYTHON_HARDENING_CIRCUIT_RESET_TIMEOUT": "1e12",
        "OTEL_PYTHON_HARDENING_RETRY_DEADLINE": "1e12",
        "OTEL_PYTHON_HARDENING_RETRY_BACKOFF_MAX": "1e12",
    })
    assert (config.circuit.reset_timeout, config.retry.deadline, config.retry.backoff_max) == (30, 30, 5)
    (message,) = [r.getMessage() for r in caplog.records if "CIRCUIT_RESET_TIMEOUT" in r.getMessage()]
    assert "'1e12'" in message and "86400" in message


@pytest.mark.parametrize("deadline", [float("nan"), float("inf"), 0, -1, 1e12, "5"])
def test_per_request_deadline_out_of_range_is_a_clear_value_error(h: Harness, server: FlakyUpstream,
                                                                   deadline: object) -> None:
    with pytest.raises(ValueError, match=r'\["deadline"\]=.* is out of range'):
        h.get(server.url, extensions={"hardening": {"deadline": deadline}})
    assert server.hits == 0


def test_non_retried_and_discarded_responses_never_keep_a_connection(mode: str, otel: Otel,
                                                                       server: FlakyUpstream) -> None:
    # a response left open keeps its connection checked out of the pool
    harness = Harness(mode, otel, retry=FAST_RETRY, circuit=CircuitPolicy(fail_max=100))
    client = harness_client(harness)
    server.default = Reply(503, body=b"x" * 100_000)
    try:
        for _ in range(3):
            assert harness.request("POST", server.url, content=b"p").status_code == 503  # returned, read
            assert harness.get(server.url).status_code == 503  # 3 attempts, 2 discarded
            assert checked_out(client) == 0
    finally:
        harness.close()
    assert server.hits == 12


@pytest.mark.parametrize("value", [True, 0, 1.5, "2"])
def test_per_request_max_attempts_out_of_range_is_a_clear_value_error(h: Harness, server: FlakyUpstream,
                                                                      value: object) -> None:
    with pytest.raises(ValueError, match=r'\["max_attempts"\] must be an int >= 1'):
        h.get(server.url, extensions={"hardening": {"max_attempts": value}})
    assert server.hits == 0
