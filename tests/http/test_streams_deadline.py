"""Streams are never held back; the deadline is a deadline; calls that cannot retry keep their timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

import otel_hardening
from otel_hardening import RetryPolicy
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel
from tests.http.harness import NO_BUDGET_LIMIT
from tests.http.rawserver import RawServer, event_stream, trickled_headers


@pytest.fixture
def sse() -> Iterator[RawServer]:
    server = RawServer(event_stream(every=2.0))
    yield server
    server.close()


def first_byte_sync(client: httpx.Client, url: str, how: str) -> tuple[float, bytes]:
    started = time.monotonic()
    if how == "stream":
        with client.stream("GET", url) as response:
            chunk = next(response.iter_raw())
    else:
        response = client.send(client.build_request("GET", url), stream=True)
        try:
            chunk = next(response.iter_raw())
        finally:
            response.close()
    return time.monotonic() - started, chunk


async def first_byte_async(client: httpx.AsyncClient, url: str, how: str) -> tuple[float, bytes]:
    started = time.monotonic()
    if how == "stream":
        async with client.stream("GET", url) as response:
            chunk = await response.aiter_raw().__anext__()
    else:
        response = await client.send(client.build_request("GET", url), stream=True)
        try:
            chunk = await response.aiter_raw().__anext__()
        finally:
            await response.aclose()
    return time.monotonic() - started, chunk


@pytest.mark.parametrize("how", ["stream", "send"])
def test_first_body_byte_arrives_as_with_plain_httpx(mode: str, how: str, otel: Otel, sse: RawServer) -> None:
    def measure(hardened: bool) -> tuple[float, bytes]:
        if mode == "async":
            async def run() -> tuple[float, bytes]:
                async with httpx.AsyncClient(timeout=10) as client:
                    if hardened:
                        otel_hardening.harden(client, tracer_provider=otel.tracer_provider,
                                              meter_provider=otel.meter_provider)
                    return await first_byte_async(client, sse.url, how)
            return asyncio.run(run())
        with httpx.Client(timeout=10) as client:
            if hardened:
                otel_hardening.harden(client, tracer_provider=otel.tracer_provider,
                                      meter_provider=otel.meter_provider)
            return first_byte_sync(client, sse.url, how)

    plain, plain_chunk = measure(hardened=False)
    hardened, hardened_chunk = measure(hardened=True)
    assert hardened_chunk == plain_chunk
    assert b"data: 0" in hardened_chunk
    # the next event is 2 s away: a layer that reads ahead cannot come in under 1 s
    assert hardened < plain + 1.0, (hardened, plain)


def test_trickling_headers_cannot_outlast_the_deadline(mode: str, otel: Otel) -> None:
    # one header byte every 0.4 s: each read is well inside the 5 s read timeout, forever
    server = RawServer(trickled_headers(every=0.4))
    retry = RetryPolicy(max_attempts=3, backoff_initial=0.05, deadline=1.5)
    policies = dict(retry=retry, budget=NO_BUDGET_LIMIT, tracer_provider=otel.tracer_provider)
    try:
        if mode == "async":
            async def run() -> float:
                async with otel_hardening.harden(httpx.AsyncClient(timeout=5), **policies) as client:
                    started = time.monotonic()
                    with pytest.raises(httpx.ReadTimeout):
                        await client.get(server.url)
                    return time.monotonic() - started
            elapsed = asyncio.run(run())
        else:
            with otel_hardening.harden(httpx.Client(timeout=5), **policies) as client:
                started = time.monotonic()
                with pytest.raises(httpx.ReadTimeout):
                    client.get(server.url)
                elapsed = time.monotonic() - started
    finally:
        server.close()
    # the documented slack is 50 ms; the rest is room for a loaded 2-core machine (before: 25 s)
    assert elapsed < 1.5 + 0.75, elapsed


NO_RETRY_CASES = {
    "post": dict(method="POST", content=b"x"),
    "retry-off": dict(method="GET", extensions={"hardening": {"retry": False}}),
    "one-attempt": dict(method="GET", extensions={"hardening": {"max_attempts": 1}}),
}


@pytest.mark.parametrize("case", sorted(NO_RETRY_CASES))
@pytest.mark.parametrize("timeout", [None, 120.0])
def test_a_call_that_cannot_retry_keeps_its_own_timeouts(mode: str, case: str, timeout: float | None,
                                                          otel: Otel, server: FlakyUpstream) -> None:
    server.default = Reply(200, delay=1.0)  # longer than the deadline
    retry = RetryPolicy(max_attempts=3, deadline=0.3)
    kwargs = dict(NO_RETRY_CASES[case])
    method = str(kwargs.pop("method"))
    if mode == "async":
        async def run() -> httpx.Response:
            async with otel_hardening.harden(httpx.AsyncClient(timeout=timeout), retry=retry,
                                             tracer_provider=otel.tracer_provider) as client:
                return await client.request(method, server.url, **kwargs)  # type: ignore[arg-type]
        response = asyncio.run(run())
    else:
        with otel_hardening.harden(httpx.Client(timeout=timeout), retry=retry,
                                   tracer_provider=otel.tracer_provider) as client:
            response = client.request(method, server.url, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200
    assert response.request.extensions["timeout"] == dict.fromkeys(("connect", "read", "write", "pool"), timeout)


def read_events_sync(client: httpx.Client, url: str, count: int) -> list[bytes]:
    events: list[bytes] = []
    with client.stream("GET", url) as response:
        for chunk in response.iter_raw():
            events.append(chunk)
            if len(events) == count:
                break
    return events


async def read_events_async(client: httpx.AsyncClient, url: str, count: int) -> list[bytes]:
    events: list[bytes] = []
    async with client.stream("GET", url) as response:
        async for chunk in response.aiter_raw():
            events.append(chunk)
            if len(events) == count:
                break
    return events


def test_a_quiet_stream_outlives_the_deadline_as_with_plain_httpx(mode: str, otel: Otel, sse: RawServer) -> None:
    """timeout=None and a 2 s pause between events, RETRY_DEADLINE 1 s: every event arrives, hardened too."""
    retry = RetryPolicy(max_attempts=3, deadline=1.0)

    def read(hardened: bool) -> list[bytes]:
        if mode == "async":
            async def run() -> list[bytes]:
                async with httpx.AsyncClient(timeout=None) as client:
                    if hardened:
                        otel_hardening.harden(client, retry=retry, tracer_provider=otel.tracer_provider)
                    return await read_events_async(client, sse.url, 2)
            return asyncio.run(run())
        with httpx.Client(timeout=None) as client:
            if hardened:
                otel_hardening.harden(client, retry=retry, tracer_provider=otel.tracer_provider)
            return read_events_sync(client, sse.url, 2)

    plain = read(hardened=False)
    hardened = read(hardened=True)
    assert [b"data: %d" % n in chunk for n, chunk in enumerate(hardened)] == [True] * 2, hardened
    assert len(hardened) == len(plain) == 2


def test_the_deadline_bounds_the_header_wait_under_timeout_none(mode: str, otel: Otel) -> None:
    """No per-operation timeout at all: the header wait still ends at the deadline (the body would not)."""
    server = RawServer(trickled_headers(every=0.4))
    retry = RetryPolicy(max_attempts=3, backoff_initial=0.05, deadline=1.5)
    policies = dict(retry=retry, budget=NO_BUDGET_LIMIT, tracer_provider=otel.tracer_provider)
    try:
        if mode == "async":
            async def run() -> float:
                async with otel_hardening.harden(httpx.AsyncClient(timeout=None), **policies) as client:
                    started = time.monotonic()
                    with pytest.raises(httpx.ReadTimeout):
                        await client.get(server.url)
                    return time.monotonic() - started
            elapsed = asyncio.run(run())
        else:
            with otel_hardening.harden(httpx.Client(timeout=None), **policies) as client:
                started = time.monotonic()
                with pytest.raises(httpx.ReadTimeout):
                    client.get(server.url)
                elapsed = time.monotonic() - started
    finally:
        server.close()
    assert elapsed < 1.5 + 0.75, elapsed


def test_the_deadline_bounds_the_wait_for_a_pooled_connection(mode: str, otel: Otel, sse: RawServer) -> None:
    """One connection, held by a stream: the next call waits for it no longer than its deadline."""
    retry = RetryPolicy(max_attempts=2, backoff_initial=0.05, deadline=0.8)
    policies = dict(retry=retry, budget=NO_BUDGET_LIMIT, tracer_provider=otel.tracer_provider)
    limits = httpx.Limits(max_connections=1)
    if mode == "async":
        async def run() -> float:
            client = otel_hardening.harden(httpx.AsyncClient(timeout=None, limits=limits), **policies)
            async with client, client.stream("GET", sse.url):
                started = time.monotonic()
                with pytest.raises(httpx.PoolTimeout):
                    await client.get(sse.url)
                return time.monotonic() - started
        elapsed = asyncio.run(run())
    else:
        client = otel_hardening.harden(httpx.Client(timeout=None, limits=limits), **policies)
        with client, client.stream("GET", sse.url):
            started = time.monotonic()
            with pytest.raises(httpx.PoolTimeout):
                client.get(sse.url)
            elapsed = time.monotonic() - started
    assert elapsed < 0.8 + 0.75, elapsed
