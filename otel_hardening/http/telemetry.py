"""Instruments and spans of the HTTP layer. Names are the contract in docs/telemetry.md."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from otel_hardening._version import __version__
from otel_hardening.http import bypass, quality
from otel_hardening.http.outcomes import CIRCUIT_STATES
from otel_hardening.http.series import Series

SCOPE = "otel_hardening"

SPAN_NAME = "hardening.request"
EVENT_RETRY = "hardening.retry"
EVENT_RETRY_DENIED = "hardening.retry.denied"
EVENT_CIRCUIT_STATE = "hardening.circuit.state_change"
EVENT_CIRCUIT_REJECTED = "hardening.circuit.rejected"
TRACED_REJECTION_INTERVAL = 1.0
"""Seconds between two rejections of one upstream that get a ``hardening.request`` span each."""

_DELAY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_ATTEMPT_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10)
_QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# a keep-alive connection lives from a request (ms) to the pool's expiry (httpx: 5 s idle) or hours
_CONNECTION_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Telemetry:
    """The tracer and instruments one set of providers gets; created once, reused by every request."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        series: Callable[[], Iterable[Series]] | None = None,
    ) -> None:
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider)
        self._all_series = series or (lambda: ())
        self._collection: tuple[float, list[Series]] | None = None
        # Counted in plain integers per upstream and read on the reader's schedule: a synchronous
        # counter costs 20-50 us per call in the SDK (exemplar sampling), several times the
        # whole hot path of this layer.
        meter.create_observable_counter(
            "hardening.http.client.calls", callbacks=[self._observe_calls], unit="{call}",
            description="Logical HTTP calls through the hardening layer, by outcome.")
        meter.create_observable_counter(
            "hardening.http.client.attempts", callbacks=[self._observe_attempts], unit="{attempt}",
            description="Attempts sent (first attempts and retries); attempts per call = attempts / calls.")
        self.retries = meter.create_counter(
            "hardening.http.client.retries", unit="{retry}",
            description="Retries scheduled, by the error that caused them.")
        self.retry_delay = meter.create_histogram(
            "hardening.http.client.retry.delay", unit="s",
            description="Wait before each retry.", explicit_bucket_boundaries_advisory=_DELAY_BUCKETS)
        self.retried_attempts = meter.create_histogram(
            "hardening.http.client.retried.attempts", unit="{attempt}",
            description="Attempts per logical call that hardening acted on (retried or refused a retry).",
            explicit_bucket_boundaries_advisory=_ATTEMPT_BUCKETS)
        self.transitions = meter.create_counter(
            "hardening.circuit.transitions", unit="{transition}",
            description="Circuit state changes, by the state entered.")
        meter.create_observable_gauge(
            "hardening.circuit.state", callbacks=[self._observe_circuits], unit="",
            description="1 for the circuit's current state, 0 for the others.")
        meter.create_observable_gauge(
            "hardening.retry.budget.available", callbacks=[self._observe_budgets], unit="{retry}",
            description="Retries the upstream's retry budget would allow right now.")
        meter.create_observable_counter(
            "hardening.http.client.slow_requests", callbacks=[self._observe_slow], unit="{request}",
            description="Logical calls slower than their slow-request threshold, logged or rate-limited away.")
        # Both synchronous, recorded off the common path: on a connection's close, and only for an
        # attempt that arrived at a full pool (http/phases.py).
        self.connection_duration = meter.create_histogram(
            "http.client.connection.duration", unit="s",
            description="Lifetime of each connection a hardened request opened, recorded when it closes.",
            explicit_bucket_boundaries_advisory=_CONNECTION_BUCKETS)
        self.time_in_queue = meter.create_histogram(
            "http.client.request.time_in_queue", unit="s",
            description="Wait for a pool connection of attempts that arrived at a full pool.",
            explicit_bucket_boundaries_advisory=_QUEUE_BUCKETS)
        from otel_hardening.http.pools import PoolReadings  # it reads the registry, which imports this module

        PoolReadings(self).register(meter)
        quality.observe(meter, self)  # read from the upstreams' recent attempts at collection, like the above
        _count_bypasses(meter, meter_provider)

    def _series(self, fresh: bool = False) -> list[Series]:
        """The series, gathered once per collection: the SDK runs the observable callbacks in the
        order the instruments were made, so the first (calls) gathers and the next three reuse it."""
        memo = self._collection
        now = time.monotonic()
        if fresh or memo is None or now - memo[0] > 1.0:
            memo = self._collection = (now, list(self._all_series()))
        return memo[1]

    # One observation per series: a named upstream, or "_other" aggregating the rest (series.py).
    def _observe_calls(self, options: CallbackOptions) -> Iterable[Observation]:
        for series in self._series(fresh=True):
            for outcome, count in series.tally.outcomes.items():
                if count:
                    yield Observation(count, series.attrs.outcome[outcome])

    def _observe_attempts(self, options: CallbackOptions) -> Iterable[Observation]:
        for series in self._series():
            yield Observation(series.tally.attempts, series.attrs.base)

    def _observe_circuits(self, options: CallbackOptions) -> Iterable[Observation]:
        for series in self._series():
            if series.states:  # only series with live circuits
                for state in CIRCUIT_STATES:
                    yield Observation(series.states.get(state, 0), series.attrs.state[state])

    def _observe_budgets(self, options: CallbackOptions) -> Iterable[Observation]:
        for series in self._series():
            if series.states:
                yield Observation(series.budget, series.attrs.circuit)

    def _observe_slow(self, options: CallbackOptions) -> Iterable[Observation]:
        for series in self._series():  # zeros included: a first slow call is an increase, not a new series
            yield Observation(series.tally.slow, series.attrs.base)


_bypass_meters: list[object] = []
"""Meter providers the bypass counter is registered with: process-wide counts, one series set each."""


def _count_bypasses(meter: metrics.Meter, provider: object) -> None:
    if any(p is provider for p in _bypass_meters):
        return
    _bypass_meters.append(provider)
    meter.create_observable_counter(
        "hardening.bypassed", callbacks=[_observe_bypasses], unit="{bypass}",
        description="Clients or requests the layer let through unhardened, by reason (http/bypass.py).")


def _observe_bypasses(options: CallbackOptions) -> Iterable[Observation]:
    # every reason from the start, zeros included: a first bypass is an increase, not a new series
    for reason, count in bypass.counts().items():
        yield Observation(count, {"reason": reason})
