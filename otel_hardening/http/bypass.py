"""Every time the layer lets a client or a request go out unprotected: counted, so it can be seen.

A resilience layer that turns itself off must not do it silently. Three ways it can happen, each a
``reason`` of the ``hardening.bypassed`` counter (docs/telemetry.md) and of the ``hardening:self``
health component:

- ``hook_missing``: a private name of httpx, httpcore or pybreaker that the layer needs is missing or
  changed (hooks.py), so a client is left as it was, unhardened; counted once per such client. It
  stays true for the life of the process (the installed packages do not change under it).
- ``internal_error``: the layer's own bookkeeping failed during a request, which then went on
  unhardened (the guard in send.py); counted once per request. Also once per application call
  (``instrument()``, ``instrument_client()``) whose handover of the httpx instrumentation failed
  (httpx_tracing.py): nothing went unhardened, but its spans are not what the application asked for.
- ``storage_error``: the shared circuit state (Redis) could not be used and a circuit fell back to
  this process's own state; counted once per fallback.

The counts are process-wide plain integers (read by the observable counter and by health), so
recording one never raises and costs a lock and an addition.
"""

from __future__ import annotations

import threading

HOOK_MISSING = "hook_missing"
INTERNAL_ERROR = "internal_error"
STORAGE_ERROR = "storage_error"
REASONS = (HOOK_MISSING, INTERNAL_ERROR, STORAGE_ERROR)

_lock = threading.Lock()
_counts: dict[str, int] = dict.fromkeys(REASONS, 0)
_details: dict[str, str] = {}


def record(reason: str, detail: str = "") -> None:
    """Count one bypass; ``detail`` (no URL, no secret) is kept as the latest of its reason."""
    if reason not in _counts:
        reason = INTERNAL_ERROR  # the attribute stays bounded whatever a caller passes
    with _lock:
        _counts[reason] += 1
        if detail:
            _details[reason] = detail


def counts() -> dict[str, int]:
    """Bypasses per reason since the process started (every reason present, zero included)."""
    with _lock:
        return dict(_counts)


def detail(reason: str) -> str:
    """The latest detail recorded for ``reason`` ("" if none)."""
    with _lock:
        return _details.get(reason, "")


def reset() -> None:
    """Forget every bypass (tests only: in a process the counter is monotonic)."""
    with _lock:
        for reason in REASONS:
            _counts[reason] = 0
        _details.clear()
