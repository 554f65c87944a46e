"""The demo's script: phases, how long each lasts, what the upstreams do in it, and the library's
settings scaled so that a two-minute run (or a 20-second one) shows what production shows in hours."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from otel_hardening.config import (
    BudgetPolicy,
    CircuitPolicy,
    HardeningConfig,
    QualityPolicy,
    RetryPolicy,
    SlowRequestPolicy,
)
from otel_hardening.health.config import HealthConfig
from otel_hardening.outbox import OutboxPolicy
from otel_hardening.resources.config import ResourceConfig
from otel_hardening.testing import FlakyUpstream, ReceivedRequest, Reply


@dataclass(frozen=True)
class Phase:
    name: str
    weight: float
    """Share of the run's duration."""
    story: str
    """What the user should see happen, as shown in the view."""
    look: str
    """Where on the screen to see it."""


PHASES = (
    Phase("healthy", 0.10, "both upstreams answer 200: no retries, circuits closed",
          "ok grows, attempts/call stays 1.00x, health healthy"),
    Phase("burst", 0.13, "every other request is a 503: retries turn them into successes, the retry budget "
                         "caps the extra load",
          "ok after retry grows, attempts/call rises above 1, retry budget drains"),
    Phase("outage", 0.16, "payments down: its circuit opens and rejects, the charges are deferred to the "
                          "outbox; inventory half failing: the retry budget caps extra load",
          "payments circuit open, rejected (circuit) grows with no I/O, outbox waiting grows, health critical"),
    Phase("recovery", 0.14, "upstreams back: the circuit goes half_open, a trial succeeds, it closes, the "
                            "outbox replays every deferred charge",
          "the circuit column and the log: open -> half_open -> closed; outbox waiting drains to 0"),
    Phase("saturation", 0.12, "inventory answers in 1 s and 8 callers share its client's 4 connections: "
                              "requests queue for one, those that wait 0.5 s end in PoolTimeout",
          "inventory's pool 4/4 active with requests waiting, p:to (PoolTimeout) and slow requests grow"),
    Phase("leak", 0.35, "a cache that never evicts: RSS grows, the detector flags it, the hunt names the line",
          "memory trend, then leak SUSPECTED, then the hunt line naming the leaking source line"),
)
PHASE_NAMES = tuple(p.name for p in PHASES)
UPSTREAMS = ("inventory", "payments")
"""Two upstreams, two circuits: inventory is called by a sync client, payments by an async one."""

POOL_SIZE = 4
"""The inventory client's ``httpx.Limits(max_connections=...)``: its two workers never fill it, until the
saturation phase adds SURGE_WORKERS more."""
SURGE_WORKERS = 6
POOL_TIMEOUT = 0.5
"""The inventory client's pool timeout, seconds: half of SLOW_ANSWER, so a caller fourth in the queue
times out while the first ones get a connection."""
SLOW_ANSWER = 1.0
"""How long inventory takes to answer in the saturation phase, seconds."""
SLOW_REQUEST = 0.75
"""The demo's slow-request threshold: every call that got a connection in the saturation phase (at least
SLOW_ANSWER) is slow; a PoolTimeout (POOL_TIMEOUT) and the other phases' calls (milliseconds) are not."""

LEAK_TOTAL = 48 * 1024 * 1024
"""Bytes the leak phase allocates in all, whatever its length (freed when the phase ends)."""


def parse_phases(raw: str | None) -> tuple[Phase, ...]:
    """``healthy,burst`` -> those phases in that order; ``None`` -> all of them. ValueError names the choices."""
    if raw is None:
        return PHASES
    by_name = {p.name: p for p in PHASES}
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in by_name]
    if unknown or not names:
        raise ValueError(f"--phases {raw!r}: expected a comma-separated list of {', '.join(PHASE_NAMES)}")
    return tuple(by_name[n] for n in names)


@dataclass(frozen=True)
class Timeline:
    phases: tuple[Phase, ...]
    seconds: tuple[float, ...]
    """Length of each phase."""

    @classmethod
    def plan(cls, phases: tuple[Phase, ...], duration: float) -> Timeline:
        total = sum(p.weight for p in phases)
        return cls(phases, tuple(duration * p.weight / total for p in phases))

    @property
    def duration(self) -> float:
        return sum(self.seconds)

    def at(self, elapsed: float) -> tuple[int, float]:
        """(index of the phase running at ``elapsed``, seconds into it); past the end: the last one."""
        start = 0.0
        for i, length in enumerate(self.seconds):
            if elapsed < start + length:
                return i, elapsed - start
            start += length
        return len(self.seconds) - 1, self.seconds[-1]

    def length(self, name: str) -> float | None:
        return next((s for p, s in zip(self.phases, self.seconds, strict=True) if p.name == name), None)


def auto_time_scale(timeline: Timeline) -> float:
    """How many times faster than production defaults the leak detector must run so that its window
    (600 s by default) is 40% of the leak phase: detection, then the hunt, fit in the phase."""
    leak = timeline.length("leak") or timeline.duration * 0.4
    return max(1.0, ResourceConfig().leak_window / (0.4 * leak))


def library_config(timeline: Timeline, time_scale: float, health_endpoint: tuple[str, int] | None) -> HardeningConfig:
    """The library's settings for the demo: production defaults, durations divided by ``time_scale``
    (with floors that keep the sampler and the health thread cheap), retries fast enough to watch."""
    r, h = ResourceConfig(), HealthConfig()
    window = r.leak_window / time_scale
    leak = timeline.length("leak") or timeline.duration * 0.4
    resources = replace(
        # warm-up at least one window: the demo's own start (imports, threads, pools) is not a leak
        r, leak_window=window, interval=max(0.1, window / 30), leak_warmup=max(window, r.leak_warmup / time_scale),
        hunt_duration=max(1.0, r.hunt_duration / time_scale), hunt_cooldown=min(window, r.hunt_cooldown / time_scale),
        # the window is time_scale times shorter, so the same noise is time_scale times steeper
        # and half the demo's own leak rate is the smallest growth worth a flag here (a quarter flagged
        # the outage phase once in CI: the outbox and the export queues filling up while the collector is away)
        leak_min_memory_rate=max(r.leak_min_memory_rate * time_scale, 0.5 * LEAK_TOTAL / leak), uss=False,
    )
    health = replace(
        h, interval=max(0.25, h.interval / time_scale), window=max(2.0, h.window / time_scale),
        recovery_hold=max(0.5, h.recovery_hold / time_scale), endpoint=health_endpoint,
        details="always",  # the demo's checks hold nothing secret: show them without a token
    )
    recovery = timeline.length("recovery") or timeline.duration * 0.15
    circuit = CircuitPolicy(fail_max=5, reset_timeout=min(30.0, max(0.5, recovery / 4)))
    retry = RetryPolicy(max_attempts=3, backoff_initial=0.02, backoff_max=0.2, deadline=5.0)
    budget = BudgetPolicy(ratio=0.2, min_per_second=2.0)
    # the quality window as short as the other windows, so a class follows its phase (at least 3 s of attempts)
    quality = QualityPolicy(window=max(3.0, QualityPolicy().window / time_scale))
    return HardeningConfig(retry=retry, budget=budget, circuit=circuit, resources=resources, health=health,
                           slow=SlowRequestPolicy(threshold=SLOW_REQUEST), quality=quality)


def outbox_policy(timeline: Timeline) -> OutboxPolicy:
    """Replays paced for the demo: a failed one is tried again within a tenth of the recovery phase."""
    recovery = timeline.length("recovery") or timeline.duration * 0.15
    backoff = max(0.1, min(1.0, recovery / 10))
    return OutboxPolicy(strip_headers=frozenset(), backoff_initial=backoff, backoff_max=4 * backoff,
                        poll=max(0.5, backoff))


class Charges:
    """The payments upstream's books: like a payment API, it applies each ``Idempotency-Key`` once; a
    key it has applied before is a duplicate (answered as the first time, counted here)."""

    def __init__(self) -> None:
        self.applied: set[str] = set()
        self.duplicates = 0
        self._lock = threading.Lock()

    def book(self, request: ReceivedRequest, reply: Reply) -> Reply:
        if request.method != "POST" or not 200 <= reply.status < 300:
            return reply
        key = next((v for k, v in request.headers.items() if k.lower() == "idempotency-key"), "")
        with self._lock:
            if key in self.applied:
                self.duplicates += 1
            else:
                self.applied.add(key)
        return reply

    def clear(self) -> None:
        with self._lock:
            self.applied.clear()
            self.duplicates = 0

    def missing(self, keys: set[str]) -> int:
        """How many of ``keys`` were never applied."""
        with self._lock:
            return len(keys - self.applied)


class Upstreams:
    """The two embedded fault-injecting upstreams, switched from phase to phase."""

    def __init__(self) -> None:
        self.servers = {name: FlakyUpstream() for name in UPSTREAMS}
        self._lock = threading.Lock()
        self._random = random.Random(7)
        self.charges = Charges()

    def url(self, name: str) -> str:
        return self.servers[name].url

    def enter(self, phase: str) -> None:
        inventory, payments = self.servers["inventory"], self.servers["payments"]
        ok = Reply(200, b'{"ok": true}')
        if phase == "burst":
            # every other request is a 503: each failed call is retried once and succeeds
            for server in (inventory, payments):
                server.cycle(Reply(503, b"busy"), ok)
        elif phase == "outage":
            payments.always(Reply(503, b"down for maintenance"))
            inventory.always(ok).rule = self._half_failing
        elif phase == "saturation":
            inventory.always(Reply(200, b'{"ok": true}', delay=SLOW_ANSWER))
            payments.always(ok)
        else:
            for server in (inventory, payments):
                server.always(ok)
        answer: Callable[[ReceivedRequest], Reply | None] = payments.rule or (lambda request: None)
        payments.rule = lambda request: self.charges.book(request, answer(request) or payments.default)

    def _half_failing(self, request: ReceivedRequest) -> Reply:
        with self._lock:
            fail = self._random.random() < 0.5
        return Reply(503) if fail else Reply(200, b'{"ok": true}')

    def close(self) -> None:
        for server in self.servers.values():
            server.close()
