"""The testing kit's fault-injecting upstream, checked with a plain (unhardened) httpx client."""

from __future__ import annotations

import time

import httpx
import pytest

from otel_hardening.testing import FlakyUpstream, ReceivedRequest, Reply, closed_port


@pytest.fixture
def plain() -> httpx.Client:
    return httpx.Client(timeout=5)


def test_scripts_per_path_then_shared_then_rule_then_default(flaky_upstream: FlakyUpstream,
                                                             plain: httpx.Client) -> None:
    up = flaky_upstream
    up.on("/a", Reply(500), Reply(502))
    up.then(Reply(503))
    up.rule = lambda request: Reply(418) if request.method == "DELETE" else None
    up.default = Reply(204, b"")
    statuses = [plain.get(f"{up.url}/a?x=1").status_code, plain.get(f"{up.url}/b").status_code,
                plain.get(f"{up.url}/a").status_code, plain.delete(f"{up.url}/a").status_code,
                plain.get(f"{up.url}/a").status_code]
    assert statuses == [500, 503, 502, 418, 204]
    assert up.count() == 5 and up.count("/a") == 4 and up.count("/b") == 1
    assert up.by_status == {500: 1, 503: 1, 502: 1, 418: 1, 204: 1}
    assert up.requests[0] == ReceivedRequest("GET", "/a?x=1", up.requests[0].headers, b"")


def test_cycle_and_always_replace_the_scripts(flaky_upstream: FlakyUpstream, plain: httpx.Client) -> None:
    flaky_upstream.then(Reply(500))
    flaky_upstream.cycle(Reply(503), Reply(200))
    assert [plain.get(flaky_upstream.url).status_code for _ in range(4)] == [503, 200, 503, 200]
    flaky_upstream.always(Reply(404))
    assert plain.get(flaky_upstream.url).status_code == 404
    with pytest.raises(ValueError, match="at least one Reply"):
        flaky_upstream.cycle()


def test_retry_after_headers_and_bodies_are_sent(flaky_upstream: FlakyUpstream, plain: httpx.Client) -> None:
    flaky_upstream.then(Reply(429, b"slow down", {"X-Why": "quota"}, retry_after=7))
    response = plain.post(flaky_upstream.url + "/charge", content=b"payload")
    assert (response.status_code, response.text) == (429, "slow down")
    assert response.headers["retry-after"] == "7" and response.headers["x-why"] == "quota"
    assert flaky_upstream.requests[-1].body == b"payload"


def test_delay_and_trickle_slow_the_answer(flaky_upstream: FlakyUpstream, plain: httpx.Client) -> None:
    flaky_upstream.then(Reply(200, delay=0.3), Reply(200, b"abcde", trickle=0.1))
    start = time.monotonic()
    plain.get(flaky_upstream.url)
    assert time.monotonic() - start >= 0.3
    with pytest.raises(httpx.ReadTimeout):  # each byte comes 0.1 s apart: a 0.05 s read timeout trips
        plain.get(flaky_upstream.url, timeout=httpx.Timeout(5, read=0.05))
    flaky_upstream.then(Reply(200, b"abcde", trickle=0.05))
    assert plain.get(flaky_upstream.url).content == b"abcde"


def test_reset_mid_body(flaky_upstream: FlakyUpstream, plain: httpx.Client) -> None:
    flaky_upstream.then(Reply(200, b"x" * 1000, reset_after=10))
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        plain.get(flaky_upstream.url)
    assert plain.get(flaky_upstream.url).status_code == 200  # the server itself carries on


def test_requests_kept_are_bounded(plain: httpx.Client) -> None:
    with FlakyUpstream() as up:
        up.keep_requests = 3
        for _ in range(5):
            plain.get(up.url)
        assert up.hits == 5 and len(up.requests) == 3


def test_closed_port_refuses(plain: httpx.Client) -> None:
    with pytest.raises(httpx.ConnectError):
        plain.get(f"http://127.0.0.1:{closed_port()}/")


def test_a_port_in_use_is_an_oserror() -> None:
    with FlakyUpstream() as first, pytest.raises(OSError):
        FlakyUpstream(port=first.port)
