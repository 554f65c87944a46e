"""Slow-request log records: phases, trace id, redaction, rate limit, and the threshold's configuration."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from otel_hardening import HardeningConfig, RetryPolicy, SlowRequestPolicy
from otel_hardening._env import PREFIX
from otel_hardening._logging import forget
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel
from tests.http.harness import FAST_RETRY

SLOW = SlowRequestPolicy(threshold=0.1)
PHASES = ("hardening.phase.queue", "hardening.phase.connect", "hardening.phase.headers", "hardening.phase.backoff")


def harden(mode: str, otel: Otel, slow: SlowRequestPolicy = SLOW, retry: RetryPolicy = FAST_RETRY,
           transport: Any = None) -> Any:
    kw = {} if transport is None else {"transport": transport}
    client = httpx.AsyncClient(**kw) if mode == "async" else httpx.Client(**kw)
    return otel.harden(client, slow=slow, retry=retry)


def get(mode: str, client: Any, url: str) -> httpx.Response:
    if mode == "async":
        import asyncio

        async def run() -> httpx.Response:
            async with client:
                return await client.get(url)  # type: ignore[no-any-return]
        return asyncio.run(run())
    with client:
        return client.get(url)  # type: ignore[no-any-return]


def slow_records(otel: Otel) -> list[Any]:
    return [r.log_record for r in otel.logs()
            if (r.log_record.attributes or {}).get("event.name") == "hardening.slow_request"]


def test_a_slow_call_is_one_record_with_its_phases_and_trace(
        mode: str, server: FlakyUpstream, traced_httpx: Otel) -> None:
    otel = traced_httpx
    server.always(Reply(200, delay=0.3))
    response = get(mode, harden(mode, otel), server.url + "/orders?page=2")
    assert response.status_code == 200
    [record] = slow_records(otel)
    a = dict(record.attributes or {})
    # One attempt hardening did not act on: the logged slow call gets its hardening.request span, marked
    # slow (tail sampling keeps it), which the record points at and which links the attempt's CLIENT span.
    spans = {s.name: s for s in otel.finished()}
    call_span = spans.pop("hardening.request")
    [client_span] = spans.values()
    assert call_span.attributes is not None and call_span.attributes["hardening.slow"] is True
    assert call_span.attributes["hardening.outcome"] == "success"
    assert [link.context.span_id for link in call_span.links] == [client_span.context.span_id]
    # (no caller span here, so each is a root; under an app's SERVER span both are in its trace)
    assert record.trace_id == call_span.context.trace_id and record.span_id == call_span.context.span_id
    assert call_span.start_time is not None and client_span.start_time is not None
    assert call_span.start_time <= client_span.start_time, "the span starts when the call started"
    assert otel.total("hardening.http.client.retried.attempts") == 0, "not a call hardening acted on"
    assert record.severity_text == "WARN"
    assert a["url.full"] == f"{server.url}/orders?page=2"
    assert a["http.request.method"] == "GET" and a["http.response.status_code"] == 200
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == server.port
    assert a["hardening.outcome"] == "success" and a["hardening.attempts"] == 1
    assert a["hardening.slow_request.threshold"] == 0.1
    assert 0.3 <= a["hardening.duration"] < 2
    assert all(name in a for name in PHASES)
    assert 0.29 <= a["hardening.phase.headers"] <= a["hardening.duration"], "the upstream's delay is in headers"
    assert 0 < a["hardening.phase.connect"] < 0.1 and 0 <= a["hardening.phase.queue"] < 0.1
    assert a["hardening.phase.backoff"] == 0
    assert str(record.body).startswith(f"slow request GET {server.url}/orders?page=2: 0.3 s (threshold 0.1 s), "
                                       "1 attempt, 200")
    assert otel.total("hardening.http.client.slow_requests", **{"server.port": server.port}) == 1


def test_a_retried_slow_call_sums_its_attempts_and_backoff(
        mode: str, server: FlakyUpstream, traced_httpx: Otel) -> None:
    otel = traced_httpx
    server.always(Reply(200, delay=0.1)).then(Reply(503, delay=0.1))
    retry = RetryPolicy(max_attempts=2, backoff_initial=0.05, backoff_max=0.05)
    get(mode, harden(mode, otel, retry=retry), server.url)
    [record] = slow_records(otel)
    a = dict(record.attributes or {})
    [request_span] = otel.finished("hardening.request")
    assert record.trace_id == request_span.context.trace_id and record.span_id == request_span.context.span_id
    assert a["hardening.attempts"] == 2 and a["hardening.outcome"] == "success_after_retry"
    assert a["hardening.phase.headers"] >= 0.19, "both attempts' waits for headers"
    assert a["hardening.phase.backoff"] <= 0.05
    assert sum(a[p] for p in PHASES) == pytest.approx(a["hardening.duration"], abs=1e-6), "the phases cover the call"
    assert ", 2 attempts, 200" in str(record.body)


def test_a_fast_call_makes_no_record(mode: str, server: FlakyUpstream, otel: Otel) -> None:
    get(mode, harden(mode, otel), server.url)
    assert slow_records(otel) == []
    assert otel.total("hardening.http.client.slow_requests") == 0  # the series is there, at zero


def test_a_flood_stays_within_the_rate_limit_and_the_counter_counts_all(
        server: FlakyUpstream, otel: Otel) -> None:
    server.always(Reply(200, delay=0.06))
    slow = SlowRequestPolicy(threshold=0.05, burst=3, logs_per_minute=6)
    with harden("sync", otel, slow=slow) as client:
        for _ in range(12):
            client.get(server.url)
    assert len(slow_records(otel)) == 3, "the burst, then one per 10 s"
    assert otel.total("hardening.http.client.slow_requests") == 12


def test_the_url_is_redacted(server: FlakyUpstream, otel: Otel) -> None:
    server.always(Reply(200, delay=0.15))
    get("sync", harden("sync", otel), server.url + "/cb?token=s3cret&page=1#frag")
    [record] = slow_records(otel)
    assert (record.attributes or {})["url.full"] == f"{server.url}/cb?token=REDACTED&page=1"
    assert "s3cret" not in str(record.body) and "frag" not in str(record.body)


def test_an_error_shows_its_type_and_the_phases_a_mock_cannot_show_are_left_out(otel: Otel) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        import time

        time.sleep(0.12)
        raise httpx.ReadTimeout("slow", request=request)

    client = harden("sync", otel, retry=RetryPolicy(max_attempts=1), transport=httpx.MockTransport(fail))
    with pytest.raises(httpx.ReadTimeout):
        get("sync", client, "http://mock.test/x")
    [record] = slow_records(otel)
    a = dict(record.attributes or {})
    assert a["error.type"] == "ReadTimeout" and "http.response.status_code" not in a
    assert a["hardening.outcome"] == "failure"
    assert [p for p in PHASES if p in a] == ["hardening.phase.backoff"]
    assert str(record.body).endswith("1 attempt, ReadTimeout")


def test_an_upstream_override_turns_it_off_or_changes_it(server: FlakyUpstream, otel: Otel) -> None:
    server.always(Reply(200, delay=0.15))
    off = SlowRequestPolicy(threshold=0.1, upstreams={"127.0.0.1": None})
    get("sync", harden("sync", otel, slow=off), server.url)
    assert slow_records(otel) == [] and otel.total("hardening.http.client.slow_requests") == 0
    longer = SlowRequestPolicy(threshold=10, upstreams={f"127.0.0.1:{server.port}": 0.1, "127.0.0.1": None})
    get("sync", harden("sync", otel, slow=longer), server.url)
    assert len(slow_records(otel)) == 1


def test_threshold_for_prefers_host_port_then_host() -> None:
    policy = SlowRequestPolicy(threshold=5, upstreams={"API.example.com": 10, "api.example.com:8443": None,
                                                       "[::1]:80": 1})
    assert policy.upstreams == {"api.example.com": 10.0, "api.example.com:8443": None, "[::1]:80": 1.0}
    assert policy.threshold_for("api.example.com", 443) == 10.0
    assert policy.threshold_for("api.example.com", 8443) is None
    assert policy.threshold_for("::1", 80) == 1.0
    assert policy.threshold_for("other.example", 443) == 5.0
    assert hash(policy) == hash(SlowRequestPolicy(threshold=5, upstreams=dict(policy.upstreams)))


@pytest.mark.parametrize(("kwargs", "error", "says"), [
    ({"threshold": 0}, ValueError, "SlowRequestPolicy.threshold=0"),
    ({"threshold": 1e9}, ValueError, "<= 86400s"),
    ({"upstreams": {"bad host!": 1}}, ValueError, "host or host:port"),
    ({"upstreams": {"a.example:99999": 1}}, ValueError, "host or host:port"),
    ({"upstreams": {"a.example": -1}}, ValueError, "SlowRequestPolicy.upstreams['a.example']=-1"),
    ({"upstreams": ["a.example"]}, TypeError, "a mapping"),
    ({"burst": 0}, ValueError, "SlowRequestPolicy.burst"),
])
def test_bad_policies_in_code_name_the_field(kwargs: dict[str, Any], error: type[Exception], says: str) -> None:
    with pytest.raises(error, match=None) as raised:
        SlowRequestPolicy(**kwargs)
    assert says in str(raised.value)


def test_harden_checks_the_slow_argument() -> None:
    from otel_hardening import harden

    with pytest.raises(TypeError, match="SlowRequestPolicy"):
        harden(httpx.Client(), slow=2.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(("env", "threshold", "upstreams"), [
    ({}, 5.0, {}),
    ({"SLOW_REQUEST": "off"}, None, {}),
    ({"SLOW_REQUEST": "250ms"}, 0.25, {}),
    ({"SLOW_REQUEST_UPSTREAMS": "api.example.com=10s, reports.internal:8443=off,[::1]=1m"}, 5.0,
     {"api.example.com": 10.0, "reports.internal:8443": None, "[::1]": 60.0}),
])
def test_the_environment(env: dict[str, str], threshold: float | None, upstreams: dict[str, Any]) -> None:
    slow = HardeningConfig.from_env({PREFIX + k: v for k, v in env.items()}).slow
    assert slow.threshold == threshold and slow.upstreams == upstreams


@pytest.mark.parametrize(("name", "raw", "default"), [
    ("SLOW_REQUEST", "fast", "5s"),
    ("SLOW_REQUEST", "2d", "5s"),
    ("SLOW_REQUEST_UPSTREAMS", "api.example.com", "none"),
    ("SLOW_REQUEST_UPSTREAMS", "api.example.com=soon", "none"),
    ("SLOW_REQUEST_UPSTREAMS", "bad host=1s", "none"),
])
def test_a_bad_variable_is_one_error_naming_it_and_the_default(
        name: str, raw: str, default: str, caplog: pytest.LogCaptureFixture) -> None:
    forget(f"config:{PREFIX}{name}={raw}")
    with caplog.at_level(logging.ERROR, logger="otel_hardening"):
        slow = SlowRequestPolicy.from_env({PREFIX + name: raw})
    assert slow == SlowRequestPolicy()
    [record] = caplog.records
    message = record.getMessage()
    assert f"{PREFIX}{name}={raw!r}" in message and message.endswith(f"using the default {default}")
    assert ("host[:port]=duration" if name.endswith("UPSTREAMS") else "off, or a duration") in message
