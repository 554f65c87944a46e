"""``otel-hardening health URL``: read a health endpoint (IETF health+json) and print it."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from otel_hardening._redaction import redact_url
from otel_hardening.cli import PROG, CommandError

EXIT = {"pass": 0, "warn": 1, "fail": 2}
WORDS = {"pass": ("healthy", "green"), "warn": ("degraded", "yellow"), "fail": ("critical", "bold red")}
UNREACHABLE = 3


def health(url: str, token: str | None, raw: bool) -> int:
    if "://" not in url:
        url = f"http://{url}"
    scheme, _, rest = url.partition("://")
    if "/" not in rest:
        url = f"{url}/healthz"
    shown = redact_url(url)
    if scheme not in ("http", "https"):
        raise CommandError(f"{PROG} health: {shown}: only http:// and https:// URLs", UNREACHABLE)
    token = token or os.environ.get("OTEL_PYTHON_HARDENING_HEALTH_TOKEN") or None
    request = urllib.request.Request(url, headers={"Accept": "application/health+json, application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read(1_000_000)
    except urllib.error.HTTPError as exc:  # 503 carries the document too
        body = exc.read(1_000_000)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"{PROG} health: cannot read {shown}: {reason}", UNREACHABLE) from None
    try:
        doc = json.loads(body)
    except ValueError:
        raise CommandError(f"{PROG} health: {shown} did not answer with JSON", UNREACHABLE) from None
    if not isinstance(doc, dict) or doc.get("status") not in EXIT:
        raise CommandError(f"{PROG} health: {shown} is not a health endpoint (no pass/warn/fail status)",
                           UNREACHABLE)
    if raw:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        Console().print(render(doc, shown))
    return EXIT[str(doc["status"])]


def render(doc: dict[str, Any], url: str) -> Table:
    word, style = WORDS[str(doc["status"])]
    table = Table(box=box.SIMPLE_HEAD, title_justify="left",
                  title=Text.assemble(f"{url}: ", (word, style), f"  {doc.get('output', '')}".rstrip()))
    checks = doc.get("checks")
    if not isinstance(checks, dict) or not checks:
        table.add_column("note")
        table.add_row("no details: the endpoint hides them without a token (--token or "
                      "$OTEL_PYTHON_HARDENING_HEALTH_TOKEN)")
        return table
    for column in ("check", "status", "observed", "why"):
        table.add_column(column)
    for name, entries in sorted(checks.items()):
        for entry in entries if isinstance(entries, list) else [entries]:
            status = str(entry.get("status", "?"))
            label, colour = WORDS.get(status, (status, ""))
            observed = entry.get("observedValue", "")
            if isinstance(observed, float):
                observed = f"{observed:.3g}"
            unit = entry.get("observedUnit", "")
            details = entry.get("details")
            shown = f"{observed} {unit}".strip()
            if isinstance(details, dict) and details:
                shown = ", ".join([shown, *(f"{key} {value}" for key, value in details.items())])
            table.add_row(name, Text(label, style=colour), shown, str(entry.get("output", "")))
    return table
