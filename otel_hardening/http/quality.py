"""Network quality per upstream: ``excellent`` | ``good`` | ``fair`` | ``poor`` | ``offline``.

**Per attempt** (engine.py) the upstream's :class:`Recent` may get one sample: when the attempt ended,
how long it took from its start to its response headers or error (a wait for a free pool connection
included), and whether it failed. Sampled are the attempts that start at least ``Recent.spacing``
(``QualityPolicy.window`` / :data:`MAX_SAMPLES`, 0.3 s by default) after the upstream's last sample:
every attempt of a quiet upstream, and on a busy one a sample every 0.3 s, so the :data:`MAX_SAMPLES`
samples cover the whole window at any rate. Whether an attempt is sampled is decided before its outcome
is known, so the failure ratio is not biased. Why not every attempt: a sample costs a few thousand
instructions (bench/features.py), several per cent of the layer's own cost; an attempt that is not
sampled costs one comparison (a first attempt starts with its call, whose start is already read), and a
sampled one shares its end's clock read with the slow-request check (engine.py). Nothing is classified
on the request path.

**When the class is read** (the ``hardening.http.client.network.quality`` gauge at collection, a health
evaluation, :func:`quality_of`), the samples of the last ``QualityPolicy.window`` seconds give two
classes and the worse one wins:

- latency: their p95 (nearest rank) against ``QualityPolicy.latency``;
- failures: the failed share against ``QualityPolicy.failure_ratio``. Failed is what counts against the
  circuit (policy.py: 5xx, 429, transport errors); local errors such as ``PoolTimeout`` and errors that
  are not httpx's say nothing about the link and are not sampled at all.

``offline``: the circuit is open, or at least :data:`OFFLINE_MIN_ATTEMPTS` attempts in the window and
every one of them failed to connect (``ConnectError`` / ``ConnectTimeout``).

**Hysteresis**: a worse class applies at once. A better one applies only after it held for
``better_after`` evaluations in a row, judged with every threshold ``margin`` tighter (p95 < 90 ms for
excellent with the defaults), so a value sitting on a threshold moves at most once and then stays. Each
upstream is evaluated at most once per :data:`EVALUATION_SPACING` seconds, whoever asks: a metric
collection and a health evaluation at the same moment count once. No attempt in the window (and a
circuit that is not open): nothing to judge, the class stays.

**Bounded**: at most :data:`MAX_SAMPLES` samples per upstream, in arrays that grow with use (3.4 KiB when
full); the state lives on the registry's ``Upstream`` and goes when the upstream is forgotten. A series'
class is the worst of its upstreams' classes: one named upstream used with several policy sets, or every
upstream aggregated under ``_other`` (the worst link among them: the one worth looking at).

Samples are written without a lock: two threads racing on one upstream at worst overwrite one sample
with the other (one sample lost, and the arrays may end a few entries past ``MAX_SAMPLES``). Evaluations
run under one lock.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httpx
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_hardening.config import QualityPolicy
from otel_hardening.http.circuit import OPEN

if TYPE_CHECKING:
    from otel_hardening.http.registry import Upstream

EXCELLENT, GOOD, FAIR, POOR, OFFLINE = CLASSES = ("excellent", "good", "fair", "poor", "offline")
RANK = {name: rank for rank, name in enumerate(CLASSES)}
METRIC = "hardening.http.client.network.quality"
ATTRIBUTE = "hardening.network.quality"

MAX_SAMPLES = 200
"""Attempts kept per upstream: a p95 of 200 rests on its 10 slowest."""
OFFLINE_MIN_ATTEMPTS = 3
"""Connection failures in a row, with nothing else in the window, that make an upstream offline."""
EVALUATION_SPACING = 1.0
"""Seconds between two evaluations of one upstream that count towards ``better_after``."""

OK, FAILED, UNREACHABLE = 0, 1, 2
"""Kinds of sample. ``FAILED`` is 1 so that ``on_response`` can pass its ``failed`` bool as is."""
_UNREACHABLE_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)

_clock = time.monotonic
_policy = QualityPolicy()
configured = False
"""Whether ``configure()`` was called (``harden()`` then leaves the policy as it is)."""
_evaluating = threading.Lock()


def configure(policy: QualityPolicy) -> None:
    """Judge every upstream by ``policy`` from now on (``install()``, or the environment's for ``harden()``)."""
    global _policy, configured
    _policy, configured = policy, True
    Recent.spacing = policy.window / MAX_SAMPLES


def policy() -> QualityPolicy:
    return _policy


class Recent:
    """One upstream's recent attempts (a ring of at most ``MAX_SAMPLES``) and its class with hysteresis."""

    __slots__ = ("candidate", "due", "ends", "evaluated_at", "kinds", "latencies", "next", "quality", "streak")

    spacing = QualityPolicy().window / MAX_SAMPLES
    """Seconds from one sampled attempt's start to the next one's (``configure()`` sets it)."""

    def __init__(self) -> None:
        self.due = -math.inf
        """The engine samples the next attempt that starts at or after this (``time.monotonic()``)."""
        self.ends = array("d")
        self.latencies = array("d")
        self.kinds = array("b")
        self.next = 0
        self.quality: str | None = None
        self.candidate: str | None = None
        """The worst better class seen during the current run of better evaluations."""
        self.streak = 0
        self.evaluated_at = -math.inf

    def sample(self, started: float) -> float | None:
        """``started`` if the attempt that starts then is a sample (one per ``spacing``), else None."""
        if started < self.due:
            return None
        self.due = started + self.spacing
        return started

    def add(self, started: float, kind: int, now: float) -> None:
        """A sampled attempt that started at ``started`` ended at ``now`` (both ``time.monotonic()``)."""
        i = self.next
        if i >= MAX_SAMPLES:
            i = 0
        ends = self.ends
        if i < len(ends):
            ends[i] = now
            self.latencies[i] = now - started
            self.kinds[i] = kind
        else:
            ends.append(now)
            self.latencies.append(now - started)
            self.kinds.append(kind)
        self.next = i + 1

    def add_error(self, started: float, exc: BaseException, now: float) -> None:
        """An attempt that ended at ``now`` with an error counting against the circuit (``policy.is_failure_error``)."""
        self.add(started, UNREACHABLE if isinstance(exc, _UNREACHABLE_ERRORS) else FAILED, now)

    def evaluate(self, policy: QualityPolicy, circuit_open: bool, now: float) -> str | None:
        """The class now, hysteresis applied; None before the first judged attempt."""
        with _evaluating:
            if now - self.evaluated_at < EVALUATION_SPACING:
                return self.quality
            self.evaluated_at = now
            raw, better = self._judge(policy, circuit_open, now)
            current = self.quality
            if raw is None:
                return current
            if current is None or RANK[raw] >= RANK[current]:
                self.quality = raw
                self.streak, self.candidate = 0, None
            elif better is not None and RANK[better] < RANK[current]:
                candidate = self.candidate
                if candidate is None or RANK[better] > RANK[candidate]:
                    candidate = better
                self.streak += 1
                self.candidate = candidate
                if self.streak >= policy.better_after:
                    self.quality = candidate
                    self.streak, self.candidate = 0, None
            else:
                self.streak, self.candidate = 0, None
            return self.quality

    def _judge(self, policy: QualityPolicy, circuit_open: bool, now: float) -> tuple[str | None, str | None]:
        """The class by the thresholds, and by the thresholds ``margin`` tighter (what a better class needs)."""
        if circuit_open:
            return OFFLINE, OFFLINE
        since = now - policy.window
        # copies first (each one C call); an add() racing between them may leave one array an entry longer
        samples = zip(self.ends[:], self.latencies[:], self.kinds[:], strict=False)
        window = [(latency, kind) for end, latency, kind in samples if end >= since]
        if not window:
            return None, None
        n = len(window)
        failed = sum(1 for _, kind in window if kind)
        if n >= OFFLINE_MIN_ATTEMPTS and all(kind == UNREACHABLE for _, kind in window):
            return OFFLINE, OFFLINE
        p95 = sorted(latency for latency, _ in window)[math.ceil(0.95 * n) - 1]
        ratio = failed / n
        tighter = 1.0 - policy.margin
        raw = max(_grade(p95, policy.latency, 1.0), _grade(ratio, policy.failure_ratio, 1.0))
        better = max(_grade(p95, policy.latency, tighter), _grade(ratio, policy.failure_ratio, tighter))
        return CLASSES[raw], CLASSES[better]


def _grade(value: float, limits: tuple[float, float, float], scale: float) -> int:
    """0 (excellent) .. 3 (poor): the first limit ``value`` is under."""
    for rank, limit in enumerate(limits):
        if value < limit * scale:
            return rank
    return RANK[POOR]


def _upstreams() -> list[Upstream]:
    from otel_hardening.http.registry import REGISTRY  # the registry imports telemetry, which imports this

    return REGISTRY.all()


def by_series(upstreams: Iterable[Upstream], now: float | None = None) -> dict[str, tuple[str, dict[str, Any]]]:
    """Series name -> (class, the series' base attributes), for every series with a class: the worst of
    its upstreams'."""
    now = _clock() if now is None else now
    current = _policy
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for u in upstreams:
        quality = u.recent.evaluate(current, u.circuit.state == OPEN, now)
        if quality is None:
            continue
        found = out.get(u.series)
        if found is None or RANK[quality] > RANK[found[0]]:
            out[u.series] = (quality, u.attrs.base)
    return out


def classes() -> dict[str, str]:
    """Series name (``scheme://host:port`` or ``_other``) -> class, every telemetry set merged (worst)."""
    return {name: quality for name, (quality, _) in by_series(_upstreams()).items()}


def quality_of(name: str) -> str | None:
    """The network quality class of upstream ``name`` (``scheme://host:port`` as in telemetry, or ``_other``
    for the upstreams past ``MAX_UPSTREAM_SERIES``); None before its first attempt, or once forgotten."""
    found = by_series(u for u in _upstreams() if name in (u.name, u.series))
    worst = max((quality for quality, _ in found.values()), key=RANK.__getitem__, default=None)
    return worst


def observe(meter: Meter, telemetry: object) -> None:
    """Register the gauge for the upstreams of ``telemetry`` (one set of providers): read on collection."""

    def callback(options: CallbackOptions) -> Iterable[Observation]:
        mine = [u for u in _upstreams() if u.telemetry is telemetry]
        for quality, base in by_series(mine).values():
            for name in CLASSES:
                yield Observation(1 if name == quality else 0, {**base, ATTRIBUTE: name})

    meter.create_observable_gauge(
        METRIC, callbacks=[callback], unit="",
        description="Network quality class of the upstream from its recent attempts' p95 latency and failure "
                    "ratio: 1 for the current class, 0 for the others.")
