"""Configuration of resource metrics, leak detection and the tracemalloc hunt.

Each default is explained beside its field; docs/configuration.md repeats the reasons.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from otel_hardening import _env
from otel_hardening._env import MAX_INTERVAL, MAX_WINDOW

_DURATIONS = (
    ("interval", MAX_INTERVAL, False),
    ("leak_window", MAX_WINDOW, False),
    ("leak_warmup", MAX_WINDOW, True),
    ("hunt_duration", MAX_INTERVAL, False),
    ("hunt_cooldown", MAX_WINDOW, True),
)
"""(field, upper bound, zero allowed) of every duration: docs/configuration.md lists them."""


@dataclass(frozen=True)
class ResourceConfig:
    enabled: bool = True
    """``OTEL_PYTHON_HARDENING_RESOURCES``: process metrics, the leak sampler and the automatic hunt."""
    interval: float = 10.0
    """Seconds between leak-sampler ticks: 60 points per 10-minute window, ~3.5 ms CPU a tick."""
    leak_window: float = 600.0
    """Seconds of history the trend detector judges. Long enough for four blocks that each hold
    several GC / load cycles, short enough to flag a leak within minutes."""
    leak_warmup: float = 300.0
    """Seconds after start whose samples are ignored: imports, pools and caches fill first."""
    leak_min_memory_rate: float = 1024.0
    """Memory growth below this (bytes/s, ~84 MiB/day) is not reported as a leak: slower growth
    sits inside RSS noise over one window and a weekly deploy hides it anyway."""
    leak_min_count_growth: float = 3.0
    """fds/threads/tasks must grow by at least this many over one window to be a leak."""
    uss: bool = True
    """Measure USS on the sampler thread (reads smaps_rollup: ~10-13 ms CPU per GiB of RSS a tick,
    0.1% of one CPU per GiB at the default interval)."""
    hunt_auto: bool = True
    """Run one tracemalloc hunt in a background thread when a memory leak is first suspected."""
    hunt_duration: float = 30.0
    """Seconds between the two snapshots of an automatic hunt: several leak steps, bounded cost."""
    hunt_frames: int = 3
    """Frames kept per allocation: the allocating line and two callers. CPU cost grows with depth
    (allocation-heavy loop while tracing: 1 frame ~8x, 3 frames ~14x, 5 frames ~24-35x)."""
    hunt_top: int = 10
    """Allocation sites reported by an automatic hunt."""
    hunt_cooldown: float = 3600.0
    """Seconds between automatic hunts: tracemalloc costs 2-5x CPU while on, at most once an hour."""
    hunt_max_memory: int = 64 * 1024 * 1024
    """Bytes tracemalloc may use for itself; past it the hunt takes its second snapshot early."""

    def __post_init__(self) -> None:
        """Values given in code get the same bounds as the environment: a clear ``ValueError``."""
        for name, maximum, zero_ok in _DURATIONS:
            _env.check_seconds(f"ResourceConfig.{name}", getattr(self, name), maximum, zero_ok)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ResourceConfig:
        d = cls()
        return cls(
            enabled=_env.flag(env, "RESOURCES", d.enabled),
            interval=_env.seconds(env, "RESOURCE_INTERVAL", d.interval, MAX_INTERVAL),
            leak_window=_env.seconds(env, "LEAK_WINDOW", d.leak_window, MAX_WINDOW),
            leak_warmup=_env.seconds(env, "LEAK_WARMUP", d.leak_warmup, MAX_WINDOW, zero_ok=True),
            leak_min_memory_rate=_env.read(env, "LEAK_MIN_MEMORY_RATE", _env.non_negative_float,
                                           d.leak_min_memory_rate, "a number of bytes per second >= 0"),
            leak_min_count_growth=_env.read(env, "LEAK_MIN_COUNT_GROWTH", _env.positive_float,
                                            d.leak_min_count_growth, "a number > 0"),
            uss=_env.flag(env, "RESOURCE_USS", d.uss),
            hunt_auto=_env.flag(env, "LEAK_HUNT", d.hunt_auto),
            hunt_duration=_env.seconds(env, "LEAK_HUNT_DURATION", d.hunt_duration, MAX_INTERVAL),
            hunt_frames=_env.read(env, "LEAK_HUNT_FRAMES", _env.positive_int, d.hunt_frames,
                                  "a whole number >= 1"),
            hunt_top=_env.read(env, "LEAK_HUNT_TOP", _env.positive_int, d.hunt_top, "a whole number >= 1"),
            hunt_cooldown=_env.seconds(env, "LEAK_HUNT_COOLDOWN", d.hunt_cooldown, MAX_WINDOW, zero_ok=True),
            hunt_max_memory=_env.read(env, "LEAK_HUNT_MAX_MEMORY", _env.positive_int, d.hunt_max_memory,
                                      "a number of bytes >= 1"),
        )
