"""Telemetry export health from the OTel SDK's own log records, steady under a persistent failure.

There is no public self-metric to read from inside the process, so a ``logging.Handler`` on the
``opentelemetry`` logger counts the SDK's reports of export trouble, per signal (traces, metrics,
logs). A signal that failed stays failing until there is evidence that it works again:

- traces and metrics flow all the time (spans, the periodic metric reader), so a whole
  ``HEALTH_WINDOW`` (at least ``SDK_DEDUP + EXPORT_GRACE``) without a failure report is that evidence;
- logs may flow only when health itself emits a change record, and a record whose export fails must
  not turn into a change of its own (the loop that made the status flap for minutes). So a failing
  logs signal clears only when a record health emitted at least ``SDK_DEDUP`` after the last failure
  report (so its failure could not be filtered as a duplicate) went ``EXPORT_GRACE`` without one;
  while it fails, health re-sends its current state once per window (at least ``SDK_DEDUP``).

One steady degraded component with the formatted (and redacted) SDK message, logged once.
"""

from __future__ import annotations

import collections
import datetime
import logging
import re
import threading
from dataclasses import dataclass

from otel_hardening._logging import forget, log_once
from otel_hardening._redaction import redact_url
from otel_hardening.health._model import ComponentStatus, Status
from otel_hardening.health._sources import Clock
from otel_hardening.health.config import HealthConfig

_EXPORT_LOGGERS = ("opentelemetry.sdk", "opentelemetry.exporter")
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>,)]+")
_USERINFO = re.compile(r"[^\s/@'\"]+:[^\s/@'\"]*@")
_SIGNALS = (("logs", re.compile(r"\blog(s|record|records)?\b|log record")),
            ("traces", re.compile(r"\bspans?\b|\btraces?\b")),
            ("metrics", re.compile(r"\bmetrics?\b")))
MAX_MESSAGE = 300
SDK_DEDUP = 20.0
"""The SDK's ``DuplicateFilter`` (on the logs export path and the gRPC exporters) drops a repeat of
the same report within a 20 s wall-clock bucket: silence shorter than that proves nothing."""
EXPORT_GRACE = 10.0
"""Seconds for a record to be exported or reported failed: the OTLP exporters' default timeout."""


def redact_message(message: str) -> str:
    """The SDK's formatted message without credentials: URLs redacted, stray ``user:pass@`` removed."""
    text = _URL.sub(lambda m: redact_url(m.group(0)), message)
    text = _USERINFO.sub("", text)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."


def signal_of(logger_name: str, message: str) -> str:
    low = f"{logger_name.rsplit('.', 1)[-1].replace('_', ' ')} {message}".lower()
    for signal, pattern in _SIGNALS:
        if pattern.search(low):
            return signal
    return "telemetry"


@dataclass
class _Failing:
    since: float
    last: float
    failures: int = 0
    dropped: int = 0
    message: str = ""


def _iso(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).strftime("%H:%M:%SZ")


class ExportHealth(logging.Handler):
    """Counts the SDK's ``Failed to export ...``, ``Transient error ... retrying``, ``Exception while
    exporting ...`` and ``Queue full, dropping ...`` records (and the exporters' ``Dropping ... batch``).
    Attached to the ``opentelemetry`` logger at WARNING; if the app raises that logger's level above
    WARNING the warnings never exist and only errors are seen."""

    def __init__(self, config: HealthConfig, clock: Clock, wall: Clock | None = None) -> None:
        super().__init__(logging.WARNING)
        import time

        self._config = config
        self._clock = clock
        self._wall = wall or time.time
        self._failing: dict[str, _Failing] = {}
        self._lock = threading.Lock()
        self._own_record_at: float | None = None
        self.failures = 0
        self.dropped = 0
        self.recent: collections.deque[str] = collections.deque(maxlen=16)

    # -- the SDK's records --------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if not record.name.startswith(_EXPORT_LOGGERS):
                return
            message = record.getMessage()
            low = message.lower()
            if "drop" in low:
                dropped = True
            elif "export" in low:
                dropped = False
            else:
                return
            signal = signal_of(record.name, message)
            shown = redact_message(message)
            now = self._clock()
            with self._lock:
                state = self._failing.get(signal)
                if state is None:
                    state = self._failing[signal] = _Failing(since=now, last=now)
                    log_once(f"health:export:{signal}", logging.WARNING,
                             "otel_hardening: %s export is failing (%s); health reports telemetry:export "
                             "degraded until it works again", signal, shown)
                state.last = now
                state.message = shown
                if dropped:
                    state.dropped += 1
                    self.dropped += 1
                else:
                    state.failures += 1
                    self.failures += 1
                self.recent.append(shown)
        except Exception:  # a logging handler must never raise into the SDK's thread
            pass

    def attach(self) -> None:
        logging.getLogger("opentelemetry").addHandler(self)

    def detach(self) -> None:
        logging.getLogger("opentelemetry").removeHandler(self)

    # -- health's own records -----------------------------------------------------------------

    def own_record(self, now: float) -> None:
        """Health just emitted an OTel log record: evidence for (or against) the logs signal."""
        with self._lock:
            self._own_record_at = now

    def wants_recheck(self, now: float) -> bool:
        """The logs signal is failing and was quiet long enough that a new failure would be reported
        (past the SDK's duplicate filter): re-send the current state to find out."""
        with self._lock:
            state = self._failing.get("logs")
            if state is None:
                return False
            latest = max(state.last, self._own_record_at or state.last)
            return now - latest >= max(self._config.window, SDK_DEDUP)

    def _recovered(self, signal: str, state: _Failing, now: float) -> bool:
        if signal != "logs":
            return now - state.last >= max(self._config.window, SDK_DEDUP + EXPORT_GRACE)
        own = self._own_record_at
        return own is not None and own - state.last >= SDK_DEDUP and now - own >= EXPORT_GRACE

    # -- the component ------------------------------------------------------------------------

    def components(self, now: float) -> list[ComponentStatus]:
        wall_now = self._wall()
        with self._lock:
            for signal in [s for s, st in self._failing.items() if self._recovered(s, st, now)]:
                del self._failing[signal]
                forget(f"health:export:{signal}")
            failing = sorted(self._failing.items())
        if not failing:
            return [ComponentStatus("telemetry", "export", Status.HEALTHY,
                                    "no export failures or drops reported by the OTel SDK", 0, "events")]
        parts = []
        for signal, st in failing:
            counts = f"{st.failures} failure and {st.dropped} drop reports"
            parts.append(f"{signal} export failing since {_iso(wall_now - (now - st.since))} ({counts}; "
                         f"last: {st.message!r})")
        total = sum(st.failures + st.dropped for _, st in failing)
        return [ComponentStatus("telemetry", "export", Status.DEGRADED, "; ".join(parts), total, "events")]
