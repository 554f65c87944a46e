"""The leak detector on synthetic series: every leak shape found, no non-leak shape flagged."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from otel_hardening.resources._trend import LeakTracker, TrendParams, assess, theil_sen

WINDOW = 600.0
STEP = 10.0
MIB = 1024 * 1024
MEM = TrendParams(window=WINDOW, min_rate=1024.0, granularity=4096.0)
COUNT = TrendParams(window=WINDOW, min_rate=3.0 / WINDOW, granularity=1.0)

Series = Callable[[float, random.Random], float]


def series(fn: Series, seed: int, seconds: float = WINDOW) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    times = [i * STEP for i in range(int(seconds / STEP) + 1)]
    return times, [fn(t, rng) for t in times]


def noise(rng: random.Random, sd: float = 200_000) -> float:
    return rng.gauss(0, sd)


# Leaks -----------------------------------------------------------------------------------------

def steady_leak(t: float, rng: random.Random) -> float:
    return 200 * MIB + t * (1 * MIB / 60) + noise(rng)  # 1 MiB/min


def slow_leak(t: float, rng: random.Random) -> float:
    return 200 * MIB + t * 4096 + noise(rng, 50_000)  # 4 KiB/s, ~340 MiB/day


def leak_under_sawtooth(t: float, rng: random.Random) -> float:
    saw = (t % 60) / 60 * 20 * MIB  # 20 MiB allocate/free cycle each minute
    return 200 * MIB + saw + t * (1 * MIB / 60) + noise(rng)


def count_leak(t: float, rng: random.Random) -> float:
    return 40 + int(t / 60) + rng.choice([0, 0, 0, 1, 2])  # one fd a minute under jitter


# Non-leaks -------------------------------------------------------------------------------------

def plateau(t: float, rng: random.Random) -> float:
    # a cache that fills during the first third, then stays
    return 200 * MIB + min(t, 200) * (50 * MIB / 200) + noise(rng)


def sawtooth(t: float, rng: random.Random) -> float:
    return 200 * MIB + (t % 60) / 60 * 20 * MIB + noise(rng)


def bursty(t: float, rng: random.Random) -> float:
    burst = rng.random() < 0.2
    return 200 * MIB + (rng.uniform(10, 60) * MIB if burst else 0) + noise(rng)


def one_off(t: float, rng: random.Random) -> float:
    return 200 * MIB + (100 * MIB if t >= 420 else 0) + noise(rng)


def one_off_freed(t: float, rng: random.Random) -> float:
    return 200 * MIB + (100 * MIB if 250 <= t < 330 else 0) + noise(rng)


def count_bursty(t: float, rng: random.Random) -> float:
    return 40 + (rng.randint(5, 30) if rng.random() < 0.3 else 0) + rng.choice([0, 1])


def varying_rate_leak(t: float, rng: random.Random) -> float:
    # leak proportional to load, load wandering between 0.5x and 1.5x
    leaked = (1 * MIB / 60) * (t + 45 - 45 * math.cos(t / 90))  # integral of rate * (1 + 0.5 sin(t/90))
    return 200 * MIB + leaked + noise(rng)


def fill_ends_mid_window(t: float, rng: random.Random) -> float:
    return 200 * MIB + min(t, 330) * (30 * MIB / 330) + noise(rng)


LEAKS = {"varying rate": (varying_rate_leak, MEM), "steady": (steady_leak, MEM), "slow": (slow_leak, MEM),
         "sawtooth+leak": (leak_under_sawtooth, MEM), "count": (count_leak, COUNT)}
NON_LEAKS = {"plateau": (plateau, MEM), "fill ends mid-window": (fill_ends_mid_window, MEM),
             "sawtooth": (sawtooth, MEM), "bursty": (bursty, MEM),
             "one-off": (one_off, MEM), "one-off freed": (one_off_freed, MEM),
             "count bursty": (count_bursty, COUNT), "flat": (lambda t, r: 200 * MIB + noise(r), MEM)}


@pytest.mark.parametrize("name", LEAKS)
def test_every_leak_shape_is_suspected_for_every_seed(name: str) -> None:
    fn, params = LEAKS[name]
    missed = [seed for seed in range(50) if not assess(*series(fn, seed), params).suspected]
    assert missed == []


@pytest.mark.parametrize("name", NON_LEAKS)
def test_no_non_leak_shape_is_suspected_for_any_seed(name: str) -> None:
    fn, params = NON_LEAKS[name]
    flagged = [seed for seed in range(200) if assess(*series(fn, seed), params).suspected]
    assert flagged == []


def test_plateau_is_suspected_while_filling_and_cleared_once_flat() -> None:
    def long_fill(t: float, rng: random.Random) -> float:
        return 200 * MIB + min(t, 900) * 50_000 + noise(rng, 20_000)

    times, values = series(long_fill, 1, seconds=2400)
    tracker = LeakTracker(MEM)
    states = []
    for i in range(len(times)):
        tracker.update(times[: i + 1], values[: i + 1])
        states.append((times[i], tracker.suspected))
    assert any(s for t, s in states if t <= 900)  # during the fill it looks like a leak ...
    assert not any(s for t, s in states if t >= 900 + WINDOW)  # ... and is cleared once flat


def test_slope_is_reported_in_units_per_second() -> None:
    times = [float(t) for t in range(0, 600, 10)]
    assert theil_sen(times, [5 + 2 * t for t in times]) == pytest.approx(2.0)
    verdict = assess(*series(steady_leak, 3), MEM)
    assert verdict.slope == pytest.approx(MIB / 60, rel=0.1)


def test_no_verdict_before_the_window_is_covered() -> None:
    times, values = series(steady_leak, 0, seconds=WINDOW / 2)
    verdict = assess(times, values, MEM)
    assert not verdict.suspected
    assert verdict.reason == "window not yet covered"
    assert verdict.slope > 0


def test_growth_below_the_minimum_rate_is_not_a_leak() -> None:
    def tiny(t: float, rng: random.Random) -> float:
        return 200 * MIB + t * 200  # 200 B/s, clean and monotonic but below 1 KiB/s

    assert not assess(*series(tiny, 0), MEM).suspected


def test_tracker_needs_consecutive_agreeing_ticks() -> None:
    times, values = series(steady_leak, 0, seconds=WINDOW + 5 * STEP)
    tracker = LeakTracker(MEM, confirm=2)
    n = int(WINDOW / STEP) + 1
    tracker.update(times[:n], values[:n])
    assert not tracker.suspected
    tracker.update(times[: n + 1], values[: n + 1])
    assert tracker.suspected
    assert math.isclose(tracker.slope, MIB / 60, rel_tol=0.1)
