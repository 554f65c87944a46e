"""The pytest plugin as a user meets it: installed with the package, fixtures ready, and circuit state
that never leaks from one test into the next (a respx-mocked outage included)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

RESPX_TESTS = '''
import httpx
import pytest
import respx

import otel_hardening
from otel_hardening import CircuitPolicy, RetryPolicy

URL = "http://127.0.0.1:9/orders"  # respx answers; nothing is sent


def client():
    return otel_hardening.harden(httpx.Client(), retry=RetryPolicy(max_attempts=3, backoff_initial=0.001),
                                 circuit=CircuitPolicy(fail_max=5, reset_timeout=600))


@respx.mock
def test_a_mocked_outage_opens_the_circuit():
    route = respx.get(URL).mock(return_value=httpx.Response(503))
    c = client()
    assert c.get(URL).status_code == 503
    assert route.call_count == 3  # respx sits below the hardening layer: retries reach it
    c.get(URL)  # two more failed attempts: five in a row open the circuit
    with pytest.raises(otel_hardening.CircuitOpenError):
        c.get(URL)


@respx.mock
def test_the_next_test_starts_with_a_closed_circuit():
    respx.get(URL).mock(return_value=httpx.Response(200))
    assert client().get(URL).status_code == 200
'''


def test_isolation_resets_circuits_between_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_orders=RESPX_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=2)


def test_without_isolation_the_open_circuit_leaks_into_the_next_test(pytester: pytest.Pytester) -> None:
    """The failure the plugin prevents, shown: so the passing run above is the plugin's doing."""
    pytester.makepyfile(test_orders=RESPX_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "otel_hardening_isolation=false")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*CircuitOpenError*"])


def test_fixtures_capture_what_the_layer_did(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_kit='''
import httpx

from otel_hardening import RetryPolicy
from otel_hardening.testing import Reply


def test_a_503_is_retried(flaky_upstream, hardening_telemetry):
    flaky_upstream.then(Reply(503, retry_after=0))
    client = hardening_telemetry.harden(httpx.Client(), retry=RetryPolicy(backoff_initial=0.001))
    assert client.get(flaky_upstream.url + "/items").status_code == 200
    assert flaky_upstream.count("/items") == 2
    [span] = hardening_telemetry.retried_requests()
    assert span.attributes["hardening.attempts"] == 2
    assert span.attributes["hardening.outcome"] == "success_after_retry"
    assert hardening_telemetry.calls("success_after_retry") == 1


def test_install_hardens_new_clients(flaky_upstream, hardening_telemetry):
    flaky_upstream.then(Reply(503, retry_after=0))
    with hardening_telemetry.install():
        assert httpx.get(flaky_upstream.url).status_code == 200
    assert len(hardening_telemetry.retried_requests()) == 1
    attempts = [s for s in hardening_telemetry.finished() if s.kind.name == "CLIENT"]
    assert len(attempts) == 2
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_off="def test_no_fixture(flaky_upstream):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:otel_hardening")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'flaky_upstream' not found*"])
