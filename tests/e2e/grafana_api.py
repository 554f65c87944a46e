"""Grafana's own HTTP API, as the dashboard tests use it: provisioned dashboards, their panels'
targets with the template variables a viewer gets by default, and each target run through Grafana
(``POST /api/ds/query`` for Prometheus and Loki; Tempo's search through the data source proxy, which
is how this Grafana version runs TraceQL)."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


class Grafana:
    def __init__(self, url: str, password: str, user: str = "admin") -> None:
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._auth = f"Basic {token}"

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method,
            headers={"Authorization": self._auth, "Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise GrafanaError(f"{method} {path}: HTTP {exc.code}: {detail}") from None

    def get(self, path: str, **params: Any) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self.request("GET", f"{path}{query}")

    def dashboard(self, uid: str) -> dict[str, Any]:
        dashboard: dict[str, Any] = self.get(f"/api/dashboards/uid/{uid}")["dashboard"]
        return dashboard

    def ds_query(self, datasource_uid: str, target: dict[str, Any], start_ms: int, end_ms: int) -> dict[str, Any]:
        """One target through /api/ds/query; the result for its refId."""
        query = {**target, "refId": "A", "datasource": {"uid": datasource_uid}, "intervalMs": 15000,
                 "maxDataPoints": 300}
        body = {"queries": [query], "from": str(start_ms), "to": str(end_ms)}
        result: dict[str, Any] = self.request("POST", "/api/ds/query", body)["results"]["A"]
        return result

    def tempo_search(self, query: str, start_s: int, end_s: int, limit: int = 20) -> list[dict[str, Any]]:
        found = self.get("/api/datasources/proxy/uid/tempo/api/search", q=query, limit=limit, start=start_s,
                         end=end_s)
        traces: list[dict[str, Any]] = found.get("traces") or []
        return traces

    def tempo_trace(self, trace_id: str) -> dict[str, Any]:
        trace: dict[str, Any] = self.get(f"/api/datasources/proxy/uid/tempo/api/traces/{trace_id}")
        return trace


class GrafanaError(RuntimeError):
    pass


@dataclass
class Target:
    dashboard: str
    panel: str
    ref_id: str
    ds_type: str
    target: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"

    @property
    def text(self) -> str:
        return str(self.target.get("expr") or self.target.get("query") or "")


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # panels of a collapsed row


def variable_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """What each template variable expands to with the dashboard's default selection: a datasource
    variable its default uid, a variable on "All" its allValue, else its current value."""
    values: dict[str, str] = {}
    for var in dashboard.get("templating", {}).get("list", []):
        current = var.get("current", {}).get("value")
        selected = current if isinstance(current, list) else [current]
        if "$__all" in selected:
            values[var["name"]] = var.get("allValue") or ".*"
        elif selected and selected[0] is not None:
            values[var["name"]] = "|".join(str(v) for v in selected)
    return values


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace $var, ${var}, ${var:format} and [[var]] of the dashboard's variables; leave Grafana's
    built-ins ($__rate_interval, $__interval, $__range, ...) to Grafana, which expands them itself."""
    def one(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        return values.get(name, match.group(0))

    return _VAR.sub(one, text)


def targets(dashboard: dict[str, Any]) -> Iterator[Target]:
    """Every query target of every panel, variables substituted, with its data source type."""
    values = variable_values(dashboard)
    for panel in _panels(dashboard.get("panels", [])):
        panel_ds = panel.get("datasource") or {}
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel_ds
            ds_type = ds.get("type") if isinstance(ds, dict) else None
            if not ds_type:
                continue
            resolved = json.loads(substitute(json.dumps(target), values))
            yield Target(dashboard.get("title", "?"), panel.get("title", "?"), str(target.get("refId", "?")),
                         str(ds_type), resolved)


def frames_have_data(result: dict[str, Any]) -> bool:
    """True when a /api/ds/query result has at least one frame with at least one row."""
    for frame in result.get("frames", []):
        values = frame.get("data", {}).get("values", [])
        if values and any(len(column) > 0 for column in values):
            return True
    return False
