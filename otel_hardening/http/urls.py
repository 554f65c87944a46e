"""A request URL's parts on the hot path: httpx's parsed form, read directly when it has the known shape.

``httpx.URL`` keeps its parts in ``_uri_reference``, a named tuple. Its public properties compute on
each read (``url.host`` checks for IDNA, ``url.fragment`` calls urllib's ``unquote``, ``url.query``
encodes), which the layer would pay on every request for the upstream's key and the redaction check;
unpacking the tuple costs one step. Its shape (these seven fields, in this order) is checked once at
import; if a release of httpx changes it, the public properties are used instead: slower, the same
answers.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import NamedTuple

import httpx


class URLParts(NamedTuple):
    scheme: str
    userinfo: str
    """Left empty when read through the public properties: never shown, never a key."""
    host: str
    """As httpx parsed it: an IDN host stays in its ``xn--`` form (one form per process, as a key)."""
    port: int | None
    path: str
    query: str | None
    """Percent-encoded, as on the wire."""
    fragment: str | None


_PROBE = ("http://u@h.test:81/p?q=1#f", ("http", "u", "h.test", 81, "/p", "q=1", "f"))


def _direct() -> bool:
    try:
        return bool(tuple(httpx.URL(_PROBE[0])._uri_reference) == _PROBE[1])
    except Exception:  # any other shape: the public properties
        return False


DIRECT = _direct()


def _public_parts(url: httpx.URL) -> URLParts:
    return URLParts(url.scheme, "", url.host, url.port, "", url.query.decode("ascii", "replace"), url.fragment)


parts: Callable[[httpx.URL], URLParts] = attrgetter("_uri_reference") if DIRECT else _public_parts
"""``(scheme, userinfo, host, port, path, query, fragment)`` of a URL (userinfo and path are left
empty by the public fallback: unused). Unpack it: a field read costs more. A C getter when direct:
no Python call on the request path."""
