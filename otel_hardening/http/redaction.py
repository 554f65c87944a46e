"""Keep credentials out of every attribute, event and log line."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

import httpx

REDACTED = "REDACTED"

SECRET_PARAM = re.compile(
    r"token|key|secret|sig|password|passwd|pwd|auth|credential|session|jwt|bearer|code|private",
    re.IGNORECASE,
)
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})


def has_secret_query(url: httpx.URL) -> bool:
    query = url.query
    return bool(query) and SECRET_PARAM.search(query.decode("ascii", "replace")) is not None


def redact_url(url: httpx.URL) -> str:
    """The URL without userinfo and with the values of secret-looking query parameters replaced."""
    if url.userinfo:
        url = url.copy_with(username=None, password=None)
    if has_secret_query(url):
        pairs = parse_qsl(url.query.decode("ascii", "replace"), keep_blank_values=True)
        query = urlencode([(k, REDACTED if SECRET_PARAM.search(k) else v) for k, v in pairs], safe="")
        url = url.copy_with(query=query.encode("ascii"))
    return str(url)


def upstream_name(url: httpx.URL) -> tuple[str, str, int]:
    """``(scheme://host:port, host, port)``: the circuit key and the only URL part in telemetry."""
    scheme = url.scheme
    port = url.port or (443 if scheme == "https" else 80)
    host = url.host
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}", host, port
