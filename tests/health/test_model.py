from __future__ import annotations

from dataclasses import dataclass

import pytest

from otel_hardening.health import HealthConfig, Status
from otel_hardening.health._model import ComponentStatus, Damper, Hysteresis, cap_noncritical, worst
from otel_hardening.health._runtime import Monitor
from otel_hardening.health._sources import Upstreams
from tests.health.conftest import FakeClock, Snap

H, D, C = Status.HEALTHY, Status.DEGRADED, Status.CRITICAL



def test_worst_and_ietf_words() -> None:
    assert worst([]) is H
    assert worst([H, C, D]) is C
    assert [s.ietf for s in (H, D, C)] == ["pass", "warn", "fail"]


def test_worse_applies_at_once_better_only_after_hold() -> None:
    h = Hysteresis(hold=30)
    assert h.update(H, 0) is H
    assert h.update(C, 1) is C
    assert h.update(H, 2) is C
    assert h.update(H, 31.9) is C
    assert h.update(H, 32) is H


def test_flapping_restarts_the_hold() -> None:
    h = Hysteresis(hold=10)
    h.update(C, 0)
    h.update(H, 1)
    h.update(C, 5)  # flaps back: the clock for "healthy" restarts
    h.update(H, 6)
    assert h.update(H, 15) is C
    assert h.update(H, 16) is H


def test_recovery_steps_through_degraded() -> None:
    h = Hysteresis(hold=10)
    h.update(C, 0)
    h.update(D, 1)
    h.update(H, 5)
    assert h.update(H, 10.9) is C
    assert h.update(H, 11) is D  # at most degraded since t=1
    assert h.update(H, 14.9) is D
    assert h.update(H, 15) is H  # healthy since t=5


def test_zero_hold_follows_raw() -> None:
    h = Hysteresis(hold=0)
    assert [h.update(s, t) for t, s in enumerate([C, H, D, H])] == [C, H, D, H]


def test_damper_marks_recovering_components_and_tracks_since() -> None:
    d = Damper(hold=5)
    comp = ComponentStatus("db", "responseTime", C, "offline")
    comps, status = d.apply([comp], 0)
    assert status is C and d.changed_at == 0
    comps, status = d.apply([ComponentStatus("db", "responseTime", H, "online")], 1)
    assert status is C and comps[0].status is C and "recovering" in comps[0].reason
    comps, status = d.apply([ComponentStatus("db", "responseTime", H, "online")], 6)
    assert status is H and comps[0].reason == "online" and d.changed_at == 6


def test_noncritical_caps_at_degraded_by_name_or_alias() -> None:
    crit = ComponentStatus("http://a:80", "circuit", C, "circuit open")
    assert cap_noncritical(crit, frozenset({"a"}), "a").status is D
    assert cap_noncritical(crit, frozenset({"http://a:80"})).noncritical
    assert cap_noncritical(crit, frozenset({"b"}), "a").status is C


def cfg(**kw: object) -> HealthConfig:
    base: dict[str, object] = {"min_calls": 10, "window": 60.0, "recovery_hold": 0.0}
    base.update(kw)
    return HealthConfig(**base)  # type: ignore[arg-type]


def by_name(comps: list[ComponentStatus]) -> dict[str, ComponentStatus]:
    return {c.name: c for c in comps}


@pytest.mark.parametrize(("state", "expected"), [("closed", H), ("half_open", D), ("open", C), ("weird", D)])
def test_circuit_state_maps_to_status(state: str, expected: Status) -> None:
    ups = Upstreams(cfg(), lambda: [Snap("http://a:80", "a", state)])
    assert by_name(ups.components(0))["http://a:80:circuit"].status is expected


def test_ratios_are_windowed_by_diffing_snapshots() -> None:
    snaps = [Snap("http://a:80", "a", calls=100, attempts=100, retries=0, failures=0)]
    ups = Upstreams(cfg(window=60), lambda: snaps)
    first = by_name(ups.components(0))
    assert first["http://a:80:retries"].status is H and first["http://a:80:errors"].observed_value == 0
    # 20 new calls, 30 attempts (10 retries), 6 failures: retry ratio 1/3, error ratio 0.3
    snaps[0] = Snap("http://a:80", "a", calls=120, attempts=130, retries=10, failures=6)
    now = by_name(ups.components(30))
    assert now["http://a:80:retries"].status is D
    assert now["http://a:80:retries"].observed_value == pytest.approx(10 / 30, abs=1e-3)
    assert now["http://a:80:errors"].status is D
    assert now["http://a:80:errors"].observed_value == pytest.approx(0.3)
    # Nothing new for more than a window: the burst leaves the window
    later = by_name(ups.components(95))
    later = by_name(ups.components(160))
    assert later["http://a:80:retries"].status is H
    assert "too few" in later["http://a:80:errors"].reason


def test_error_ratio_critical_and_min_calls() -> None:
    snaps = [Snap("http://a:80", "a", calls=9, attempts=9, failures=9)]
    ups = Upstreams(cfg(), lambda: snaps)
    first = by_name(ups.components(0))["http://a:80:errors"]
    assert first.status is H and "too few" in first.reason  # 9 < min_calls
    snaps[0] = Snap("http://a:80", "a", calls=18, attempts=18, failures=18)
    assert by_name(ups.components(1))["http://a:80:errors"].status is H  # 9 more: still too few
    snaps[0] = Snap("http://a:80", "a", calls=20, attempts=20, failures=16)
    assert by_name(ups.components(2))["http://a:80:errors"].status is C  # 7 of 11 since t=0
    ups2 = Upstreams(cfg(), lambda: [Snap("http://a:80", "a", calls=20, attempts=20, failures=10)])
    assert by_name(ups2.components(0))["http://a:80:errors"].status is D  # exactly 0.5 is not above


def test_duplicate_upstreams_are_merged_worst_circuit() -> None:
    ups = Upstreams(cfg(), lambda: [Snap("http://a:80", "a", "closed", 10, 10, 0, 0),
                                    Snap("http://a:80", "a", "open", 10, 10, 0, 10)])
    comps = ups.components(0)
    assert len(comps) == 3
    got = by_name(comps)
    assert got["http://a:80:circuit"].status is C
    assert got["http://a:80:errors"].observed_value == 0.5


def test_counter_reset_counts_from_zero() -> None:
    snaps = [Snap("http://a:80", "a", calls=1000, attempts=1000)]
    ups = Upstreams(cfg(), lambda: snaps)
    ups.components(0)
    snaps[0] = Snap("http://a:80", "a", calls=20, attempts=20, failures=20)
    assert by_name(ups.components(1))["http://a:80:errors"].status is C


def test_noncritical_upstream_host(clock: FakeClock) -> None:
    m = Monitor(cfg(noncritical=frozenset({"a"})), clock=clock,
                upstreams=lambda: [Snap("http://a:80", "a", "open")], resources=lambda: None)
    report = m.evaluate()
    assert report.status is D
    circuit = by_name(list(report.components))["http://a:80:circuit"]
    assert circuit.status is D and circuit.noncritical and "non-critical" in circuit.reason


@dataclass
class Res:
    leaks: dict[str, bool]
    growth_rates: dict[str, float]
    fd_usage_ratio: float | None
    memory_usage: int | None
    memory_limit: int | None
    sampler_alive: bool = True


@pytest.mark.parametrize(("fd", "expected"), [(0.5, H), (0.81, D), (0.96, C)])
def test_fd_ratio_thresholds(fd: float, expected: Status, clock: FakeClock) -> None:
    m = Monitor(cfg(), clock=clock, upstreams=list,
                resources=lambda: Res({}, {}, fd, None, None))
    assert by_name(list(m.evaluate().components))["fds:utilization"].status is expected


def test_memory_only_with_a_cgroup_limit_and_leaks(clock: FakeClock) -> None:
    res = Res({"memory": True, "threads": False}, {"memory": 1234.5}, None, 900, None)
    m = Monitor(cfg(), clock=clock, upstreams=list, resources=lambda: res)
    comps = by_name(list(m.evaluate().components))
    assert "memory:utilization" not in comps
    assert comps["leak:memory"].status is D and "1.23e+03/s" in comps["leak:memory"].reason
    assert comps["leak:threads"].status is H
    res.memory_limit = 1000
    comps = by_name(list(m.evaluate().components))
    assert comps["memory:utilization"].status is D and comps["memory:utilization"].observed_value == 0.9
    res.memory_usage = 990
    assert by_name(list(m.evaluate().components))["memory:utilization"].status is C


def test_dead_resource_sampler_degrades_and_fails_readiness_not_liveness(clock: FakeClock) -> None:
    res = Res({}, {}, None, None, None, sampler_alive=False)
    m = Monitor(cfg(), clock=clock, upstreams=list, resources=lambda: res)
    report = m.evaluate()
    assert by_name(list(report.components))["resources:sampler"].status is D
    assert report.ready is False and report.not_ready[0].startswith("resources:sampler: ")
    assert m.ready()[0] is False
    assert m.alive()[0] is True  # not wedged: a restart would not help


@pytest.mark.parametrize(("fd_ratio", "ready"), [(0.5, True), (0.9, True), (0.99, False)])
def test_own_resources_critical_is_not_ready(clock: FakeClock, fd_ratio: float, ready: bool) -> None:
    res = Res({}, {}, fd_ratio, None, None)
    m = Monitor(cfg(), clock=clock, upstreams=list, resources=lambda: res)
    report = m.evaluate()
    assert report.ready is ready
    assert report.status is {0.5: H, 0.9: D, 0.99: C}[fd_ratio]


def test_required_dependency_names_host_upstream_or_probe(clock: FakeClock) -> None:
    ups = [Snap("http://a:80", "a", "open"), Snap("http://b:80", "b", "open")]
    for required, ready in [(set(), True), ({"a"}, False), ({"http://b:80"}, False), ({"c"}, True)]:
        m = Monitor(cfg(required=frozenset(required)), clock=clock, upstreams=lambda: ups, resources=lambda: None)
        report = m.evaluate()
        assert report.status is C and report.ready is ready, required
    both = cfg(required=frozenset({"a"}), noncritical=frozenset({"a", "b"}))
    assert both.noncritical == {"b"}  # in both lists: required wins
    comps = by_name(list(Monitor(both, clock=clock, upstreams=lambda: ups, resources=lambda: None)
                         .evaluate().components))
    assert comps["http://a:80:circuit"].status is C and comps["http://a:80:circuit"].required
    assert comps["http://b:80:circuit"].status is D and comps["http://b:80:circuit"].noncritical


def test_a_failing_source_degrades_instead_of_raising(clock: FakeClock) -> None:
    def boom() -> list[Snap]:
        raise RuntimeError("registry broken")

    m = Monitor(cfg(), clock=clock, upstreams=boom, resources=lambda: None)
    report = m.evaluate()
    assert report.status is D
    assert by_name(list(report.components))["health:upstreams"].status is D


def test_report_hysteresis_and_since(clock: FakeClock) -> None:
    state = ["open"]
    walls = iter(range(5000, 6000))
    m = Monitor(cfg(recovery_hold=30), clock=clock, wall=lambda: float(next(walls)),
                upstreams=lambda: [Snap("http://a:80", "a", state[0])], resources=lambda: None)
    changes: list[tuple[Status | None, Status]] = []
    m._on_change = lambda prev, rep: changes.append((prev, rep.status))
    assert m.evaluate().status is C
    state[0] = "closed"
    clock.advance(10)
    assert m.evaluate().status is C
    clock.advance(29.5)
    assert m.evaluate().status is C  # healthy first seen at +10: held 29.5 s < 30 s
    clock.advance(0.5)
    r = m.evaluate()
    assert r.status is H
    assert r.since == r.time  # changed on this evaluation
    clock.advance(5)
    r2 = m.evaluate()
    assert r2.since == pytest.approx(r2.time - 5)
    assert changes == [(None, C), (C, H)]


def test_frequent_evaluations_keep_the_window_base() -> None:
    snaps = [Snap("http://a:80", "a", calls=0, attempts=0)]
    ups = Upstreams(cfg(window=60), lambda: snaps)
    ups.components(0)
    for i in range(1, 5000):  # report() in a hot loop: history stays small, the base stays at t=0
        snaps[0] = Snap("http://a:80", "a", calls=i, attempts=i, failures=i)
        comps = by_name(ups.components(10 + i / 1000))
    assert len(ups._history) <= 3
    assert comps["http://a:80:errors"].reason.startswith("4999 of 4999 calls")


def test_real_resource_tracking_feeds_components(clock: FakeClock) -> None:
    from otel_hardening import resources
    from otel_hardening.resources.config import ResourceConfig

    resources.start(ResourceConfig())
    try:
        m = Monitor(cfg(), clock=clock, upstreams=list)
        comps = by_name(list(m.evaluate().components))
        assert "health:resources" not in comps
        assert m.resources.sampler_alive is True
        assert m.alive() == (True, "the health sampler is evaluating")
    finally:
        resources.stop()
    m2 = Monitor(cfg(), clock=clock, upstreams=list)
    m2.evaluate()
    assert m2.resources.sampler_alive is None  # not started: tolerated


def test_the_latest_leak_hunt_is_summarised_in_health_details(clock: FakeClock) -> None:
    from otel_hardening import resources
    from otel_hardening.health._endpoint import health_document
    from otel_hardening.resources.config import ResourceConfig

    resources.start(ResourceConfig(interval=3600.0))
    try:
        m = Monitor(cfg(), clock=clock, upstreams=list)
        assert "leak:hunt" not in by_name(list(m.evaluate().components))
        report = resources.hunt(0.3)
        comp = by_name(list(m.evaluate().components))["leak:hunt"]
        assert comp.status is H and comp.reason == report.summary()
        assert comp.reason.startswith("leak hunt (api) ") and ", 0.3s: " in comp.reason
        doc = health_document(m.evaluate(), details=True)
        entry = doc["checks"]["leak:hunt"][0]
        assert entry["componentType"] == "system" and entry["observedValue"] == comp.observed_value
    finally:
        resources.stop()


def test_rejected_calls_are_the_circuits_news_not_errors() -> None:
    snaps = [Snap("http://a:80", "a", "closed")]
    ups = Upstreams(cfg(window=60, min_calls=10), lambda: snaps)
    ups.components(0)
    # 20 calls: 5 real failures opened the circuit, then 100 calls were rejected without I/O
    snaps = [Snap("http://a:80", "a", "open", calls=120, attempts=20, failures=105, rejected=100)]
    comps = by_name(ups.components(10))
    assert comps["http://a:80:errors"].reason.startswith("5 of 20 calls failed")
    assert comps["http://a:80:errors"].status is D  # 0.25: degraded, not critical from rejections
    assert comps["http://a:80:circuit"].reason == "circuit open: calls are rejected (100 calls rejected over 60s)"


def test_the_error_window_restarts_when_the_circuit_closes() -> None:
    snaps = [Snap("http://a:80", "a", "closed", calls=20, attempts=20, failures=0)]
    ups = Upstreams(cfg(window=60, min_calls=10), lambda: snaps)
    ups.components(0)
    snaps = [Snap("http://a:80", "a", "open", calls=40, attempts=40, failures=20)]
    assert by_name(ups.components(5))["http://a:80:errors"].status is C  # 20 of 20 failed
    snaps = [Snap("http://a:80", "a", "closed", calls=41, attempts=41, failures=20)]  # the trial succeeded
    comps = by_name(ups.components(10))
    assert comps["http://a:80:errors"].status is H  # counted from the close: 0 calls yet
    snaps = [Snap("http://a:80", "a", "closed", calls=61, attempts=61, failures=21)]
    comps = by_name(ups.components(20))
    assert comps["http://a:80:errors"].reason.startswith("1 of 20 calls failed")
    snaps = [Snap("http://a:80", "a", "closed", calls=81, attempts=81, failures=21)]
    ups.components(80)  # the close is older than the window: back to the sliding window
    assert not ups._closed_at
