"""Network quality per upstream (http/quality.py): the classifier on a fake clock, then a real loopback
upstream whose latency and failures change, the gauge, the health details and the configuration."""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Iterator

import httpx
import pytest

from otel_hardening import CircuitPolicy, HardeningConfig, QualityPolicy
from otel_hardening._logging import forget
from otel_hardening.health._endpoint import health_document
from otel_hardening.health._model import HealthReport, Status
from otel_hardening.health._sources import Upstreams
from otel_hardening.health.config import HealthConfig
from otel_hardening.http import quality
from otel_hardening.http.quality import FAILED, OK, UNREACHABLE, Recent
from otel_hardening.testing import FlakyUpstream, Reply
from tests.conftest import Otel
from tests.http.harness import Harness

POLICY = QualityPolicy()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(quality, "_clock", fake)
    return fake


def attempts(recent: Recent, clock: Clock, latency: float, n: int = 20, kind: int = OK, failed_every: int = 0) -> None:
    """``n`` attempts of ``latency`` seconds ending now (every ``failed_every``-th one failed)."""
    for i in range(n):
        failed = failed_every and i % failed_every == 0
        recent.add(clock.now - latency, FAILED if failed else kind, clock.now)


def evaluate(recent: Recent, clock: Clock, circuit_open: bool = False, policy: QualityPolicy = POLICY) -> str | None:
    clock.now += quality.EVALUATION_SPACING
    return recent.evaluate(policy, circuit_open, clock.now)


# --- the classifier ---------------------------------------------------------------------------------

def test_latency_and_failures_each_give_a_class_and_the_worse_wins(clock: Clock) -> None:
    cases = [(0.05, 0, "excellent"), (0.2, 0, "good"), (0.5, 0, "fair"), (1.5, 0, "poor"),
             (0.05, 10, "fair"),  # 2 of 20 failed: 10 %, between 5 % and 20 %
             (0.05, 4, "poor"),   # 5 of 20: 25 %
             (0.5, 10, "fair"), (0.2, 4, "poor")]
    for latency, failed_every, expected in cases:
        recent = Recent()
        attempts(recent, clock, latency, failed_every=failed_every)
        assert evaluate(recent, clock) == expected, (latency, failed_every)


def test_the_latency_is_the_p95_so_one_slow_attempt_in_40_does_not_count(clock: Clock) -> None:
    recent = Recent()
    attempts(recent, clock, 0.01, n=39)
    attempts(recent, clock, 5.0, n=1)
    assert evaluate(recent, clock) == "excellent"
    attempts(recent, clock, 5.0, n=2)  # 3 of 42: the p95 (the 40th) is slow now
    assert evaluate(recent, clock) == "poor"


def test_offline_is_an_open_circuit_or_only_connection_failures(clock: Clock) -> None:
    recent = Recent()
    attempts(recent, clock, 0.01)
    assert evaluate(recent, clock, circuit_open=True) == "offline"
    fresh = Recent()
    attempts(fresh, clock, 0.001, n=2, kind=UNREACHABLE)
    assert evaluate(fresh, clock) == "poor"  # two refusals: too few to call it offline
    attempts(fresh, clock, 0.001, n=1, kind=UNREACHABLE)
    assert evaluate(fresh, clock) == "offline"
    answered = Recent()
    attempts(answered, clock, 0.001, n=5, kind=UNREACHABLE)
    attempts(answered, clock, 0.001, n=1, kind=FAILED)  # it answered (a 503): reachable, just failing
    assert evaluate(answered, clock) == "poor"


def test_worse_at_once_better_only_after_three_evaluations(clock: Clock) -> None:
    recent = Recent()
    attempts(recent, clock, 0.01)
    assert evaluate(recent, clock) == "excellent"
    clock.now += 61  # the fast attempts leave the window
    attempts(recent, clock, 1.5)
    assert evaluate(recent, clock) == "poor"  # at once
    clock.now += 61
    attempts(recent, clock, 0.01)
    seen = []
    for _ in range(3):
        attempts(recent, clock, 0.01, n=1)
        seen.append(evaluate(recent, clock))
    assert seen == ["poor", "poor", "excellent"]


def test_better_moves_to_the_worst_class_seen_during_the_streak(clock: Clock) -> None:
    recent = Recent()
    attempts(recent, clock, 1.5)
    assert evaluate(recent, clock) == "poor"
    seen = []
    for latency in (0.01, 0.2, 0.01):  # excellent, good, excellent: good held for all three
        clock.now += 61
        attempts(recent, clock, latency)
        seen.append(evaluate(recent, clock))
    assert seen == ["poor", "poor", "good"]


def test_a_value_oscillating_around_a_threshold_does_not_flap(clock: Clock) -> None:
    recent = Recent()
    seen = []
    for i in range(30):
        clock.now += 61  # each evaluation sees only its own attempts
        attempts(recent, clock, 0.095 if i % 2 else 0.105)
        seen.append(evaluate(recent, clock))
    changes = sum(1 for a, b in itertools.pairwise(seen) if a != b)
    assert seen[0] == "good" and changes == 0, seen
    # below the threshold, but not by the margin (p95 < 90 ms): still good after many evaluations
    for _ in range(10):
        clock.now += 61
        attempts(recent, clock, 0.095)
        assert evaluate(recent, clock) == "good"
    clock.now += 61
    attempts(recent, clock, 0.085)
    assert [evaluate(recent, clock) for _ in range(3)] == ["good", "good", "excellent"]


def test_evaluations_closer_than_the_spacing_count_once(clock: Clock) -> None:
    recent = Recent()
    attempts(recent, clock, 1.5)
    assert evaluate(recent, clock) == "poor"
    attempts(recent, clock, 0.01, n=400)  # the ring keeps the last 200: all fast now
    for _ in range(10):
        clock.now += 0.01
        assert recent.evaluate(POLICY, False, clock.now) == "poor"
    assert [evaluate(recent, clock) for _ in range(3)] == ["poor", "poor", "excellent"]


def test_no_attempt_in_the_window_keeps_the_class(clock: Clock) -> None:
    recent = Recent()
    assert evaluate(recent, clock) is None
    attempts(recent, clock, 0.5)
    assert evaluate(recent, clock) == "fair"
    clock.now += 3600
    assert [evaluate(recent, clock) for _ in range(5)] == ["fair"] * 5
    assert evaluate(recent, clock, circuit_open=True) == "offline"


def test_the_ring_is_bounded_and_samples_are_spaced(clock: Clock) -> None:
    recent = Recent()
    attempts(recent, clock, 0.01, n=1000)
    assert len(recent.ends) == len(recent.latencies) == len(recent.kinds) == quality.MAX_SAMPLES
    spacing = Recent.spacing
    assert spacing == pytest.approx(POLICY.window / quality.MAX_SAMPLES)
    due = Recent()
    assert due.sample(10.0) == 10.0
    assert due.sample(10.0 + spacing / 2) is None
    assert due.sample(10.0 + spacing) == 10.0 + spacing


# --- a real upstream ---------------------------------------------------------------------------------

FAST = QualityPolicy(latency=(0.15, 0.3, 0.45), window=1.0)
"""Short window (1 s, samples every 5 ms) and thresholds a loaded CI machine's loopback stays under."""


@pytest.fixture
def fast_policy(monkeypatch: pytest.MonkeyPatch) -> Iterator[QualityPolicy]:
    before = quality.policy()
    monkeypatch.setattr(quality, "configured", quality.configured)
    quality.configure(FAST)
    monkeypatch.setattr(quality, "EVALUATION_SPACING", 0.0)  # each quality_of() is one evaluation
    yield FAST
    quality.configure(before)


def traffic(h: Harness, url: str, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with contextlib.suppress(httpx.TransportError):
            h.get(url)


def phase(mode: str, otel: Otel, url: str, seconds: float) -> None:
    """Traffic from a fresh client (the same upstream state: equal policies), so no kept-alive connection
    outlives a server closed in between (its handler thread would still answer)."""
    # fail_max high: offline here comes from the refused connections, not from the circuit
    h = Harness(mode, otel, circuit=CircuitPolicy(fail_max=1000))
    try:
        traffic(h, url, seconds)
    finally:
        h.close()


def test_classes_move_excellent_poor_offline_good(mode: str, otel: Otel, fast_policy: QualityPolicy) -> None:
    upstream = FlakyUpstream()
    port = upstream.port
    name = f"http://127.0.0.1:{port}"
    try:
        assert quality.quality_of(name) is None
        phase(mode, otel, upstream.url, 0.3)
        assert quality.quality_of(name) == "excellent"

        upstream.always(Reply(200, delay=0.5))
        phase(mode, otel, upstream.url, 1.1)
        assert quality.quality_of(name) == "poor"  # worse: at once

        upstream.close()
        time.sleep(FAST.window)  # the slow answers leave the window
        phase(mode, otel, upstream.url, 0.2)
        assert quality.quality_of(name) == "offline"

        upstream = FlakyUpstream(port=port, default=Reply(200, delay=0.2))
        phase(mode, otel, upstream.url, 1.2)  # the refusals leave the window
        assert [quality.quality_of(name) for _ in range(3)] == ["offline", "offline", "good"]
    finally:
        upstream.close()


def test_an_open_circuit_is_offline(mode: str, otel: Otel, fast_policy: QualityPolicy,
                                    flaky_upstream: FlakyUpstream) -> None:
    flaky_upstream.always(Reply(503))
    h = Harness(mode, otel, circuit=CircuitPolicy(fail_max=2, reset_timeout=60))
    try:
        for _ in range(3):
            with contextlib.suppress(httpx.TransportError):
                h.get(flaky_upstream.url)
        assert quality.quality_of(f"http://127.0.0.1:{flaky_upstream.port}") == "offline"
    finally:
        h.close()


def test_gauge_has_one_series_per_class_with_1_for_the_current(otel: Otel, fast_policy: QualityPolicy,
                                                               flaky_upstream: FlakyUpstream) -> None:
    h = Harness("sync", otel)
    try:
        assert otel.points(quality.METRIC) == []  # no attempt yet: no series
        traffic(h, flaky_upstream.url, 0.2)
    finally:
        h.close()
    points = otel.points(quality.METRIC)
    assert sorted(a[quality.ATTRIBUTE] for a, _ in points) == sorted(quality.CLASSES)
    assert {a["server.address"] for a, _ in points} == {"127.0.0.1"}
    assert {a["server.port"] for a, _ in points} == {flaky_upstream.port}
    assert {a[quality.ATTRIBUTE]: v for a, v in points} == {
        "excellent": 1, "good": 0, "fair": 0, "poor": 0, "offline": 0}


def test_other_is_the_worst_of_its_upstreams(otel: Otel, fast_policy: QualityPolicy) -> None:
    from otel_hardening.http.registry import REGISTRY

    limits = REGISTRY.max_series
    REGISTRY.max_series = 1
    fast, slow, third = FlakyUpstream(), FlakyUpstream(default=Reply(200, delay=0.5)), FlakyUpstream()
    h = Harness("sync", otel)
    try:
        traffic(h, fast.url, 0.1)  # the one named series
        traffic(h, third.url, 0.1)
        h.get(slow.url)
        assert quality.classes() == {fast.url: "excellent", "_other": "poor"}
        assert quality.quality_of(third.url) == "excellent"  # each upstream keeps its own class
        assert quality.quality_of("_other") == "poor"
        values = {(a["server.address"], a[quality.ATTRIBUTE]): v for a, v in otel.points(quality.METRIC)}
        assert values[("_other", "poor")] == 1 and values[("127.0.0.1", "excellent")] == 1
    finally:
        REGISTRY.max_series = limits
        h.close()
        for u in (fast, slow, third):
            u.close()


# --- health details ----------------------------------------------------------------------------------

def test_the_circuit_component_carries_the_class_in_its_details_not_its_status(
        otel: Otel, fast_policy: QualityPolicy, flaky_upstream: FlakyUpstream) -> None:
    flaky_upstream.always(Reply(200, delay=0.5))
    h = Harness("sync", otel)
    try:
        h.get(flaky_upstream.url)
    finally:
        h.close()
    components = Upstreams(HealthConfig()).components(time.monotonic())
    [circuit] = [c for c in components if c.measurement == "circuit"]
    assert circuit.details == {"networkQuality": "poor"}
    assert circuit.status is Status.HEALTHY  # a slow link is not a status
    report = HealthReport(Status.HEALTHY, tuple(components), since=0.0, time=0.0)
    [entry] = health_document(report, details=True)["checks"][f"{flaky_upstream.url}:circuit"]
    assert entry["details"] == {"networkQuality": "poor"}


def test_an_upstream_without_a_class_has_no_details() -> None:
    class Snapshot:
        name, host, circuit_state = "http://a:80", "a", "closed"
        calls = attempts = retries = failures = 0

    components = Upstreams(HealthConfig(), snapshot=lambda: [Snapshot()], qualities=dict).components(0.0)
    assert [c.details for c in components] == [{}, {}, {}]


# --- configuration -----------------------------------------------------------------------------------

P = "OTEL_PYTHON_HARDENING_"


def test_environment_sets_the_thresholds_and_the_window() -> None:
    policy = QualityPolicy.from_env({P + "QUALITY_LATENCY": "50ms, 200ms, 2s",
                                     P + "QUALITY_FAILURE_RATIO": "0.001,0.01,0.1",
                                     P + "QUALITY_WINDOW": "5m"})
    assert policy.latency == (0.05, 0.2, 2.0)
    assert policy.failure_ratio == (0.001, 0.01, 0.1)
    assert policy.window == 300.0
    assert HardeningConfig.from_env({P + "QUALITY_WINDOW": "30s"}).quality.window == 30.0
    assert HardeningConfig().quality == QualityPolicy()


@pytest.mark.parametrize(("suffix", "raw", "accepted"), [
    ("QUALITY_LATENCY", "300ms,100ms,1s", "three increasing durations"),
    ("QUALITY_LATENCY", "100ms,300ms", "three increasing durations"),
    ("QUALITY_FAILURE_RATIO", "0.01,0.05,2", "three increasing ratios > 0 and <= 1"),
    ("QUALITY_FAILURE_RATIO", "lots", "three increasing ratios"),
    ("QUALITY_WINDOW", "2h", "<= 3600s"),
])
def test_a_bad_variable_is_one_error_naming_it_and_the_default_is_used(
        suffix: str, raw: str, accepted: str, caplog: pytest.LogCaptureFixture) -> None:
    forget(f"config:{P}{suffix}={raw}")
    with caplog.at_level(logging.ERROR, logger="otel_hardening"):
        policy = QualityPolicy.from_env({P + suffix: raw})
    assert policy == QualityPolicy()
    [record] = caplog.records
    message = record.getMessage()
    assert f"{P}{suffix}={raw!r}" in message and accepted in message and "using the default" in message


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"latency": (0.3, 0.1, 1.0)}, "QualityPolicy.latency=(0.3, 0.1, 1.0)"),
    ({"latency": [0.1, 0.3, 1.0]}, "QualityPolicy.latency=[0.1, 0.3, 1.0]"),
    ({"failure_ratio": (0.0, 0.05, 0.2)}, "QualityPolicy.failure_ratio=(0.0, 0.05, 0.2)"),
    ({"window": 0}, "QualityPolicy.window=0"),
    ({"better_after": 0}, "QualityPolicy.better_after=0"),
    ({"margin": 1.0}, "QualityPolicy.margin=1.0"),
])
def test_a_bad_field_in_code_raises_naming_it_and_what_is_accepted(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises((ValueError, TypeError)) as caught:
        QualityPolicy(**kwargs)  # type: ignore[arg-type]
    assert named in str(caught.value) and "accepted" in str(caught.value)


def test_install_configures_the_policy(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    before = quality.policy()
    monkeypatch.setattr(quality, "configured", quality.configured)
    policy = QualityPolicy(window=10.0)
    try:
        with otel.install(HardeningConfig(quality=policy, resources=HardeningConfig().resources)):
            assert quality.policy() is policy
            assert Recent.spacing == pytest.approx(10.0 / quality.MAX_SAMPLES)
    finally:
        quality.configure(before)
