"""The one URL redactor: everything the package shows of a URL (span attributes, health output,
log lines) goes through it, so no credential leaves the process."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

import httpx

REDACTED = "REDACTED"

# A query parameter whose name contains one of these carries a secret often enough to hide them all.
SECRET_PARAM = re.compile(
    r"token|key|secret|sig|password|passwd|pwd|auth|credential|session|jwt|bearer|code|private",
    re.IGNORECASE,
)


def looks_secret(query: str) -> bool:
    """Whether a query string has any parameter worth redacting (a cheap pre-check).

    Names are matched as the server decodes them: ``%74oken`` is ``token``.
    """
    if not query:
        return False
    return SECRET_PARAM.search(unquote_plus(query) if "%" in query else query) is not None


def needs_redaction(query: str | None, fragment: str | None) -> bool:
    """Whether a request URL with this (percent-encoded) query and fragment must be rewritten when shown:
    a secret-looking query, or a fragment (userinfo is not looked at: opentelemetry-instrumentation-httpx
    already removes it). The parts come from ``otel_hardening.http.urls.parts``."""
    return bool(fragment) or (query is not None and looks_secret(query))


def redact_url(url: str | httpx.URL) -> str:
    """``url`` without userinfo or fragment (OAuth puts tokens there), with the values of secret-looking
    query parameters (names percent-decoded) replaced."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        query = parts.query
        if looks_secret(query):
            pairs = [(k, REDACTED if SECRET_PARAM.search(k) else v)
                     for k, v in parse_qsl(query, keep_blank_values=True)]
            query = urlencode(pairs, safe="")
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "<unparseable url>"
