"""No credentials in any span attribute, event, metric attribute or log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import context as otel_context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

from otel_hardening import CircuitOpenError, CircuitPolicy, RetryPolicy
from otel_hardening._redaction import redact_url
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel
from tests.http.harness import Harness

SECRETS = ("hunter2", "tok-123", "key-456", "sig-789", "Bearer-abc", "cookie-def", "proxy-ghi")


@pytest.fixture
def h(mode: str, traced_httpx: Otel) -> Iterator[Harness]:
    harness = Harness(mode, traced_httpx, retry=RetryPolicy(max_attempts=2, backoff_initial=0.01),
                      circuit=CircuitPolicy(fail_max=2))
    yield harness
    harness.close()


def everything_emitted(otel: Otel, caplog: pytest.LogCaptureFixture) -> str:
    parts: list[str] = []
    for span in otel.finished():
        parts.append(span.name)
        parts.extend(f"{k}={v}" for k, v in (span.attributes or {}).items())
        for event in span.events:
            parts.extend(f"{k}={v}" for k, v in (event.attributes or {}).items())
        parts.append(str(span.status.description))
    data = otel.reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    parts.extend(f"{k}={v}" for k, v in (p.attributes or {}).items())
    # our own log lines; httpx's INFO line with the full URL is httpx's, enabled by the app
    parts.extend(r.getMessage() for r in caplog.records if r.name.startswith("otel_hardening"))
    return "\n".join(parts)


@pytest.fixture(params=["api-runtime", "swapped-runtime"])
def runtime(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The engine reads OpenTelemetry's context variable directly (engine._context_variable); a runtime
    context swapped in later must be asked the public way, or the CLIENT span (and the redacted URL it
    must carry) would go unseen."""
    if request.param == "swapped-runtime":
        monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", ContextVarsRuntimeContext())
    return str(request.param)


def test_credentials_never_leave_the_process(h: Harness, server: FlakyUpstream, traced_httpx: Otel,
                                             caplog: pytest.LogCaptureFixture, runtime: str) -> None:
    caplog.set_level(logging.DEBUG)
    host = server.url.replace("http://", "")
    url = f"http://user:hunter2@{host}/p?token=tok-123&api_key=key-456&X-Goog-Signature=sig-789&page=2"
    headers = {"Authorization": "Bearer Bearer-abc", "Cookie": "s=cookie-def",
               "Proxy-Authorization": "Basic proxy-ghi"}
    server.default = Reply(503)
    h.get(url, headers=headers)  # two attempts: the circuit opens
    with pytest.raises(CircuitOpenError) as info:
        h.get(url, headers=headers)
    emitted = everything_emitted(traced_httpx, caplog) + str(info.value)
    assert "page=2" in emitted  # the URL is there, redacted
    for secret in SECRETS:
        assert secret not in emitted
    assert server.requests[0][2]["Cookie"] == "s=cookie-def"  # the request itself is intact


def test_redact_url() -> None:
    url = httpx.URL("https://u:p@api.example.com:8443/v1?access_token=a&sessionid=b&q=c")
    assert redact_url(url) == "https://api.example.com:8443/v1?access_token=REDACTED&sessionid=REDACTED&q=c"
