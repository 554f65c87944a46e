"""What is worth retrying, what counts as a failure, and how long to wait. Pure functions, no I/O."""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone

import backoff
import httpx

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""Requests safe to send again (RFC 9110 9.2.2); so is any request with an ``Idempotency-Key`` header."""

# The request may never have reached the server, or the connection died under it: another
# attempt has a fair chance. PoolTimeout is local saturation, and retrying it only adds load.
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)

# Errors that say nothing about the upstream's health.
_LOCAL_ERRORS: tuple[type[Exception], ...] = (
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.ProxyError,
)

RETRY_AFTER_STATUSES = frozenset({429, 503})


def is_failure_error(exc: BaseException) -> bool:
    """An exception that counts against the upstream's circuit."""
    return isinstance(exc, httpx.TransportError) and not isinstance(exc, _LOCAL_ERRORS)


def is_retryable_error(exc: BaseException) -> bool:
    return isinstance(exc, RETRYABLE_ERRORS)


def error_type(exc: BaseException) -> str:
    return type(exc).__qualname__


def is_replayable(request: httpx.Request) -> bool:
    """Whether the body can be sent again: a bytes body can, a consumed generator cannot."""
    return isinstance(request.stream, httpx.ByteStream)


_DELTA_SECONDS = re.compile(r"[0-9]{1,9}", re.ASCII)
_MAX_HEADER = 64


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None.

    Whatever the upstream sends, the answer is a finite wait >= 0 or None (ignored): ASCII digits
    only (``str.isdigit`` accepts ``²`` and ``٣``), at most 9 of them (31 years; anything longer is
    past every ``RETRY_AFTER_MAX``), dates only if they parse to a real datetime, and several
    headers (joined by httpx with ``,``) are ignored rather than guessed at.
    """
    if value is None or len(value) > _MAX_HEADER:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        wait = when.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    return max(0.0, wait) if math.isfinite(wait) else None


def backoff_delays(initial: float, maximum: float) -> Iterator[float]:
    """Exponential backoff with full jitter (backoff's ``expo`` and ``full_jitter``)."""
    waits = backoff.expo(base=2, factor=initial, max_value=maximum)
    next(waits)  # backoff's generators are primed with one send(None)
    for wait in waits:
        yield backoff.full_jitter(wait)


def request_options(extensions: Mapping[str, object]) -> Mapping[str, object] | None:
    """Per-request overrides from ``request.extensions["hardening"]``, if any."""
    options = extensions.get("hardening")
    if options is None:
        return None
    if isinstance(options, Mapping):
        return options
    raise TypeError(
        f'request.extensions["hardening"] must be a mapping such as {{"retry": False}}, got {options!r}'
    )


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
