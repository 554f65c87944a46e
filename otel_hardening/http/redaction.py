"""What the HTTP layer shows of a URL: the upstream, and redacted attempt URLs."""

from __future__ import annotations

import httpx

from otel_hardening import _redaction


def has_secret_query(url: httpx.URL) -> bool:
    """Whether the URL shown in telemetry must be rewritten: a secret-looking query, or a fragment."""
    query = url.query
    return (bool(query) and _redaction.looks_secret(query.decode("ascii", "replace"))) or bool(url.fragment)


def redact_url(url: httpx.URL) -> str:
    """The URL without userinfo and with the values of secret-looking query parameters replaced."""
    return _redaction.redact_url(str(url))


def upstream_name(url: httpx.URL) -> tuple[str, str, int]:
    """``(scheme://host:port, host, port)``: the circuit key and the only URL part in telemetry."""
    scheme = url.scheme
    port = url.port or (443 if scheme == "https" else 80)
    host = url.host
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}", host, port
