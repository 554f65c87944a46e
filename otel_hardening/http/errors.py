"""Errors the hardening layer raises into the application."""

from __future__ import annotations

import httpx


class CircuitOpenError(httpx.TransportError):
    """The upstream's circuit is open: the request was rejected without any network I/O.

    A subclass of ``httpx.TransportError``, so ``except httpx.HTTPError`` keeps working.
    """

    def __init__(self, upstream: str, retry_in: float, *, request: httpx.Request | None = None) -> None:
        super().__init__(
            f"circuit for {upstream} is open; next trial request in {retry_in:.1f}s", request=request
        )
        self.upstream = upstream
        """The upstream as ``scheme://host:port``."""
        self.retry_in = retry_in
        """Seconds until the circuit lets a trial request through (0 when trials are merely all busy)."""
