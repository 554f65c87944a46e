"""Telling a leak from a plateau, a sawtooth, bursty load and a one-off allocation.

A naive trend test (Mann-Kendall, or a least-squares slope with a p-value) assumes independent
samples. Resource series are anything but: a sawtooth or a burst makes neighbouring samples move
together, the test's variance is far too small and it "finds" trends in stationary series. So the
decision here rests on four conditions that each rule out one family of false positives:

1. **The floor rises in every block, by more than the noise.** The window is cut into ``BLOCKS``
   equal time blocks and the low quantile of each block is taken. A leak lifts the floor of every
   block; a sawtooth or bursty load keeps returning to the same floor; a cache that fills then
   stops leaves the last blocks level; a one-off allocation lifts at most one block boundary.
   Requiring a strict rise at every boundary is a monotonicity test on block statistics, which is
   robust to autocorrelation as long as a block holds whole cycles.
2. **The robust slope is large enough.** Theil-Sen (median of pairwise slopes) ignores up to ~29%
   outliers; it must exceed the configured minimum rate so that slow drift in the noise is not a leak.
3. **The growth is sustained.** Every block rise is at least ``SUSTAINED`` of what the slope
   predicts: a cache that filled fast early in the window and has almost stopped has a steep slope
   but a small last rise.
4. **It holds on consecutive ticks** (see ``LeakTracker``), so a single unlucky window does not flip
   the gauge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

BLOCKS = 4
FLOOR_QUANTILE = 0.1
MIN_POINTS_PER_BLOCK = 3
MAX_SLOPE_POINTS = 64
NOISE_STEPS = 1.5
"""A block floor must rise by this many noise standard deviations (see ``noise_scale``)."""
SUSTAINED = 0.3
"""Each block's rise must be at least this share of what the robust slope predicts for one block."""
COVERAGE = 0.9
"""Share of the window the samples must span before any verdict (a partial window has short blocks)."""


@dataclass(frozen=True)
class TrendParams:
    window: float
    """Seconds judged."""
    min_rate: float
    """Units per second below which growth is not a leak."""
    granularity: float
    """Smallest meaningful rise of a block floor (1 for counts, a page for memory)."""


@dataclass(frozen=True)
class Verdict:
    suspected: bool
    slope: float
    """Theil-Sen slope over the window, units per second (0.0 with fewer than 3 points)."""
    reason: str


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def theil_sen(times: Sequence[float], values: Sequence[float]) -> float:
    """Median of the pairwise slopes, on at most ``MAX_SLOPE_POINTS`` evenly picked points."""
    n = len(times)
    if n < 2:
        return 0.0
    if n > MAX_SLOPE_POINTS:
        step = (n - 1) / (MAX_SLOPE_POINTS - 1)
        idx = [round(i * step) for i in range(MAX_SLOPE_POINTS)]
        times = [times[i] for i in idx]
        values = [values[i] for i in idx]
        n = MAX_SLOPE_POINTS
    slopes = [
        (values[j] - values[i]) / (times[j] - times[i])
        for i in range(n)
        for j in range(i + 1, n)
        if times[j] > times[i]
    ]
    if not slopes:
        return 0.0
    return quantile(slopes, 0.5)


def noise_scale(times: Sequence[float], values: Sequence[float], slope: float) -> float:
    """Robust standard deviation of the noise a block floor has to rise above.

    The smaller of two estimates, each blind to a different shape: the MAD of first differences (a
    trend only shifts their median; a sawtooth's drops and a step are rare large jumps the MAD
    ignores) and the lower tail of the residuals around the Theil-Sen line (upward bursts and skewed
    jitter do not reach the low quantile that the floors are made of).
    """
    diffs = [b - a for a, b in pairwise(values)]
    if len(diffs) < 2:
        return 0.0
    med = quantile(diffs, 0.5)
    by_diffs = 1.4826 * quantile([abs(d - med) for d in diffs], 0.5) / math.sqrt(2)
    residuals = [v - slope * t for t, v in zip(times, values, strict=True)]
    by_tail = (quantile(residuals, 0.5) - quantile(residuals, FLOOR_QUANTILE)) / 1.2816
    return min(by_diffs, by_tail)


def block_floors(
    times: Sequence[float], values: Sequence[float], start: float, end: float
) -> list[float] | None:
    """Low quantile of each of ``BLOCKS`` equal time blocks, or None if a block is too sparse."""
    width = (end - start) / BLOCKS
    buckets: list[list[float]] = [[] for _ in range(BLOCKS)]
    for t, v in zip(times, values, strict=True):
        k = min(int((t - start) / width), BLOCKS - 1) if width > 0 else 0
        buckets[max(k, 0)].append(v)
    if any(len(b) < MIN_POINTS_PER_BLOCK for b in buckets):
        return None
    return [quantile(b, FLOOR_QUANTILE) for b in buckets]


def assess(times: Sequence[float], values: Sequence[float], params: TrendParams) -> Verdict:
    """Judge the samples (oldest first) that fall in the last ``params.window`` seconds."""
    if not times:
        return Verdict(False, 0.0, "no data")
    end = times[-1]
    start_cut = end - params.window
    first = next(i for i, t in enumerate(times) if t >= start_cut)
    ts, vs = times[first:], values[first:]
    slope = theil_sen(ts, vs) if len(ts) >= 3 else 0.0
    if end - ts[0] < COVERAGE * params.window:
        return Verdict(False, slope, "window not yet covered")
    floors = block_floors(ts, vs, ts[0], end)
    if floors is None:
        return Verdict(False, slope, "too few samples per block")
    block_seconds = (end - ts[0]) / BLOCKS
    min_step = max(
        params.granularity,
        0.25 * params.min_rate * block_seconds,
        NOISE_STEPS * noise_scale(ts, vs, slope),
    )
    rises = [b - a for a, b in pairwise(floors)]
    if not all(r >= min_step for r in rises):
        return Verdict(False, slope, "floor not rising in every block")
    if slope < params.min_rate or slope <= 0:
        return Verdict(False, slope, "robust slope below the minimum rate")
    if not all(r >= SUSTAINED * slope * block_seconds for r in rises):
        return Verdict(False, slope, "growth not sustained across the window")
    return Verdict(True, slope, "floor rising in every block and robust slope above the minimum")


@dataclass
class LeakTracker:
    """Keeps the verdict per resource and flips only after ``confirm`` agreeing ticks in a row."""

    params: TrendParams
    confirm: int = 2
    suspected: bool = False
    slope: float = 0.0
    _streak: int = 0

    def update(self, times: Sequence[float], values: Sequence[float]) -> Verdict:
        verdict = assess(times, values, self.params)
        self.slope = verdict.slope
        if verdict.suspected != self.suspected:
            self._streak += 1
            if self._streak >= self.confirm:
                self.suspected = verdict.suspected
                self._streak = 0
        else:
            self._streak = 0
        return verdict
