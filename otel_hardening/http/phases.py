"""Where a logical call's time went: waiting for a pool connection, connecting, waiting for headers, backing off.

Measured with what the layer already has on the request path, so a call that is never slow pays
next to nothing (bench: instructions per request, docs/performance.md):

- an attempt starts when the call starts (attempt 1) or when its backoff ends (the engine knows both);
- it waits for a connection only if it arrived at a full pool (deadline.py checks, one ``len()``):
  then its entry time is kept, and its first connect or write ends the wait (``got_connection``);
- connects and TLS handshakes are timed where they happen (new connections only);
- the rest of the attempt, to its end, is the request and the wait for the response headers.

Only a slow call (slow.py), a retry or a ``PoolTimeout`` folds an attempt into the sums.

``http.client.request.time_in_queue`` is a synchronous histogram, and a synchronous SDK record costs
40-50 µs (telemetry.py): it is recorded only for an attempt that arrived at a full pool, the ones that
waited; the others would each add a near-zero sample at several times the cost of the whole layer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otel_hardening.http.registry import Upstream
    from otel_hardening.http.telemetry import Telemetry

PHASE_QUEUE = "hardening.phase.queue"
PHASE_CONNECT = "hardening.phase.connect"
PHASE_HEADERS = "hardening.phase.headers"
PHASE_BACKOFF = "hardening.phase.backoff"


class AttemptPhases:
    """The phase clock of a logical call's attempts (a base of engine.Call)."""

    # Set by the subclass's __init__ (engine.Call), all 0.0: slots are read fast on the request path.
    __slots__ = ("_attempt_start", "_connect", "_dequeued", "_queue", "_sending", "backoff", "queued_at")
    queued_at: float
    """When the current attempt arrived at a full pool (monotonic); 0.0 once it has a connection."""
    _attempt_start: float
    """When the current attempt started, if it is not the first (the first starts with the call)."""
    _dequeued: float
    """When the current attempt got its connection after waiting for one."""
    _queue: float
    _connect: float
    _sending: float
    """From each attempt's start or connection to its end: connect + request + wait for headers."""
    backoff: float
    """Seconds the call waited between attempts."""

    if TYPE_CHECKING:
        start: float
        upstream: Upstream
        _spanned: int
        """The last attempt a prepared pool saw (engine.Call.attempt_started): 0 if none did."""

        @property
        def telemetry(self) -> Telemetry: ...

    def queued(self, now: float) -> None:
        """The attempt arrived at ``now`` at a pool whose connections are all taken: it waits."""
        self.queued_at = now

    def got_connection(self, now: float) -> None:
        """The waiting attempt's first connect or write, at ``now``: its wait is over."""
        waited = now - self.queued_at
        self.queued_at = 0.0
        self._dequeued = now
        self._queue += waited
        self.telemetry.time_in_queue.record(waited, self.upstream.pool_attrs)

    def connected(self, start: float, end: float) -> None:
        """A TCP connect or TLS handshake of this attempt ran from ``start`` to ``end``."""
        if self.queued_at:
            self.got_connection(start)
        self._connect += end - start

    def end_attempt(self, end: float, next_start: float | None = None) -> None:
        """Fold the current attempt, ended at ``end``, into the call's sums; the next starts at ``next_start``."""
        if self.queued_at:  # it never got a connection (PoolTimeout): its whole wait is a sample
            self.got_connection(end)
        started = self._dequeued or self._attempt_start or self.start
        self._sending += end - started
        self._dequeued = 0.0
        self._attempt_start = time.monotonic() if next_start is None else next_start

    def phase_attributes(self) -> dict[str, Any]:
        """The phases summed over the call's attempts (seconds); those the layer could not see are left out."""
        out: dict[str, Any] = {}
        if self._spanned:
            out[PHASE_QUEUE] = self._queue
            out[PHASE_CONNECT] = self._connect
            out[PHASE_HEADERS] = max(0.0, self._sending - self._connect)
        out[PHASE_BACKOFF] = self.backoff
        return out
