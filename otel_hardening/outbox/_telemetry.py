"""The outbox's instruments and replay spans. Names are the contract in docs/telemetry.md.

Nothing stored (URL paths, headers, bodies) is ever an attribute: an entry is known by its id and
its upstream (``scheme://host:port``) only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from otel_hardening._logging import log_once
from otel_hardening._version import __version__
from otel_hardening.http.telemetry import SCOPE
from otel_hardening.outbox._model import Stats

REPLAY_SPAN = "hardening.outbox.replay"
DELIVERED, FAILED, CIRCUIT_OPEN = "delivered", "failed", "circuit_open"
"""``hardening.outbox.outcome`` of one replay."""
REFUSAL_REASONS = ("full", "store_error", "not_replayable", "too_large")
"""``hardening.outbox.reason`` of ``hardening.outbox.refused`` (docs/telemetry.md)."""
DEAD_LETTER_REASONS = ("max_replays", "max_age", "rejected")
"""``hardening.outbox.reason`` of ``hardening.outbox.dead_lettered``."""


class OutboxTelemetry:
    def __init__(self, name: str, stats: Callable[[], Stats], *,
                 tracer_provider: trace.TracerProvider | None = None,
                 meter_provider: metrics.MeterProvider | None = None) -> None:
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider)
        self.attrs: dict[str, Any] = {"hardening.outbox.name": name}
        self._stats = stats
        self._memo: tuple[float, Stats | None] = (0.0, None)
        self.deferred = meter.create_counter(
            "hardening.outbox.deferred", unit="{request}",
            description="Requests stored in the outbox after their call failed for a retryable reason.")
        self.refused = meter.create_counter(
            "hardening.outbox.refused", unit="{request}",
            description="Deferrable requests that were not stored, by reason; the caller got the error.")
        self.replayed = meter.create_counter(
            "hardening.outbox.replayed", unit="{request}",
            description="Replays of stored requests, by outcome.")
        self.dead_lettered = meter.create_counter(
            "hardening.outbox.dead_lettered", unit="{request}",
            description="Stored requests moved to the dead letters, by reason.")
        # Every series that an outage moves starts at 0 with the outbox: a counter first exported at
        # its burst's total (every dead letter of a recovery within one export interval) shows no
        # increase to rate() or increase(), so the panel and any alert on it would miss the burst.
        for counter, key, values in (
                (self.refused, "hardening.outbox.reason", REFUSAL_REASONS),
                (self.replayed, "hardening.outbox.outcome", (DELIVERED, FAILED, CIRCUIT_OPEN)),
                (self.dead_lettered, "hardening.outbox.reason", DEAD_LETTER_REASONS)):
            for value in values:
                counter.add(0, self.with_attrs(**{key: value}))
        meter.create_observable_gauge(
            "hardening.outbox.depth", callbacks=[self._depth], unit="{request}",
            description="Requests waiting in the outbox to be replayed.")
        meter.create_observable_gauge(
            "hardening.outbox.oldest_age", callbacks=[self._age], unit="s",
            description="Age of the oldest request waiting in the outbox (0 when empty).")
        meter.create_observable_gauge(
            "hardening.outbox.size", callbacks=[self._size], unit="By",
            description="Bytes stored in the outbox (pending and dead letters).")
        meter.create_observable_gauge(
            "hardening.outbox.dead_letters", callbacks=[self._dead], unit="{request}",
            description="Requests in the outbox's dead letters, waiting for an operator.")

    def with_attrs(self, **extra: object) -> dict[str, Any]:
        return {**self.attrs, **extra}

    def stats(self) -> Stats | None:
        """The store's figures, read at most once a second; None while the store cannot be read."""
        at, memo = self._memo
        now = time.monotonic()
        if memo is None or now - at > 1.0:
            try:
                memo = self._stats()
            except Exception as exc:
                log_once("outbox:stats", logging.WARNING, "otel_hardening: outbox stats unavailable: %s", exc)
                memo = None
            self._memo = (now, memo)
        return memo

    def _one(self, value: Callable[[Stats], float]) -> Iterable[Observation]:
        stats = self.stats()
        if stats is not None:
            yield Observation(value(stats), self.attrs)

    def _depth(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._one(lambda s: s.pending)

    def _age(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._one(lambda s: round(s.oldest_age(), 3))

    def _size(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._one(lambda s: s.pending_bytes + s.dead_bytes)

    def _dead(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._one(lambda s: s.dead)
