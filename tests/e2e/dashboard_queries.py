"""Every target of every built dashboard (dashboards/build/dashboards/*.json) run the way Grafana runs
it, without Grafana: its variables interpolated as Grafana does (tests/dashboards/grafana_vars.py;
query variables resolved through Prometheus like Grafana resolves them), then sent to its data
source's backend by type: Prometheus /api/v1/query_range or /api/v1/query (and
/api/v1/query_exemplars for exemplar targets), Jaeger /api/traces (service + tags as JSON),
VictoriaLogs /select/logsql/query. The answers are the backends' own JSON."""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.dashboards.grafana_vars import (
    ALL,
    Variable,
    Window,
    interpolate,
    logfmt_tags_to_json,
    parse_duration_ms,
    prometheus_expr,
    prometheus_format,
    victorialogs_format,
)

ROOT = Path(__file__).resolve().parents[2]
BUILT = ROOT / "dashboards" / "build" / "dashboards"
PROVISIONED = ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
SCREEN_WIDTH_PX = 1920  # a panel's maxDataPoints is its width in pixels: w/24 of this
LOGS_TYPE = "victoriametrics-logs-datasource"
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)\s*$")


@dataclass(frozen=True)
class Backends:
    prometheus: str
    jaeger: str | None = None
    victorialogs: str | None = None


@dataclass(frozen=True)
class Target:
    dashboard: str
    panel: dict[str, Any]
    ref_id: str
    ds_type: str
    query: dict[str, Any]  # the target as the dashboard has it

    @property
    def label(self) -> str:
        return f"{self.dashboard} / {self.panel.get('title', '?')} / {self.ref_id}"

    @property
    def unit(self) -> str:
        """The unit Grafana draws this target's series in: a refId override's, else the panel's."""
        config = self.panel.get("fieldConfig", {})
        for override in config.get("overrides", []):
            if override.get("matcher") == {"id": "byFrameRefID", "options": self.ref_id}:
                for prop in override.get("properties", []):
                    if prop.get("id") == "unit":
                        return str(prop["value"])
        return str(config.get("defaults", {}).get("unit", ""))

    @property
    def text(self) -> str:
        q = self.query
        return str(q.get("expr") or " ".join(f"{k}={q[k]}" for k in ("service", "tags") if q.get(k)))


@dataclass
class Answer:
    target: Target
    request: str  # what was sent (URL)
    data: Any = None  # Prometheus: data.result; Jaeger: the traces; VictoriaLogs: the records
    exemplars: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def values(self) -> list[float]:
        """Every sample value of a Prometheus answer."""
        out: list[float] = []
        for series in self.data or []:
            samples = series.get("values") or ([series["value"]] if "value" in series else [])
            out += [float(v) for _, v in samples]
        return out

    def verdict(self) -> str | None:
        """None when the answer carries real data, else why not: for numbers at least one finite
        non-zero sample, for traces and logs at least one trace or record."""
        if self.error:
            return f"error: {self.error}"
        if not self.data:
            return "no data"
        if self.target.ds_type == "prometheus":
            finite = [v for v in self.values() if math.isfinite(v)]
            if not finite:
                return "no finite value"
            if not any(finite):
                return "only zeros"
        return None


    def out_of_range(self) -> str | None:
        """Why a Prometheus answer's values cannot be right for its unit, if they cannot: rates, times
        and sizes are never negative, a ratio drawn as a percentage never exceeds 100 %, and a value
        beyond the panel's own min/max would be drawn clipped. None when they are in range."""
        if self.target.ds_type != "prometheus":
            return None
        finite = [v for v in self.values() if math.isfinite(v)]
        if not finite:
            return None
        low, high = min(finite), max(finite)
        unit = self.target.unit
        defaults = self.target.panel.get("fieldConfig", {}).get("defaults", {})
        floor = defaults.get("min", 0.0 if unit in NON_NEGATIVE_UNITS else None)
        ceiling = defaults.get("max", 1.0 if unit == "percentunit" and floor is not None and floor >= 0 else None)
        if floor is not None and low < floor - 1e-9:
            return f"{low:g} below {floor:g} (unit {unit or 'none'})"
        if ceiling is not None and high > ceiling + 1e-9:
            return f"{high:g} above {ceiling:g} (unit {unit or 'none'})"
        return None


NON_NEGATIVE_UNITS = frozenset({"reqps", "ops", "opm", "s", "ms", "bytes", "decbytes"})
"""Units of rates, durations and sizes: a negative value is a wrong query (a reset, a subtraction)."""


def built_dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(BUILT.glob("*.json"))]


def provisioned_datasources(path: Path = PROVISIONED) -> dict[str, dict[str, Any]]:
    """The provisioned data sources by uid."""
    return {ds["uid"]: ds for ds in yaml.safe_load(path.read_text())["datasources"]}


def targets(board: dict[str, Any]) -> Iterator[Target]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))  # a collapsed row's panels

    for panel in panels(board.get("panels", [])):
        for query in panel.get("targets", []):
            ds = query.get("datasource") or panel.get("datasource") or {}
            yield Target(board.get("title", "?"), panel, str(query.get("refId", "?")), str(ds.get("type", "")), query)


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        raise QueryError(f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:300]}") from None
    return text


class QueryError(RuntimeError):
    pass


class Runner:
    """Runs dashboards' targets over [start, end] (unix seconds) with the default variable
    selection (a multi-value variable on All, a single-value one on its first option) or the one
    given in ``selection`` (variable name -> values)."""

    def __init__(self, backends: Backends, start: float, end: float,
                 selection: Mapping[str, Sequence[str]] | None = None,
                 datasources: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.backends = backends
        self.start, self.end = start, end
        self.selection = dict(selection or {})
        self.datasources = dict(datasources if datasources is not None else provisioned_datasources())
        prometheus = next((d for d in self.datasources.values() if d["type"] == "prometheus"), {})
        scrape = (prometheus.get("jsonData") or {}).get("timeInterval")
        self.time_interval_ms = parse_duration_ms(scrape) if scrape else None

    # -- variables ------------------------------------------------------------------------------

    def variables(self, board: dict[str, Any]) -> dict[str, Variable]:
        """Every variable of the dashboard with its value, in the dashboard's order (a variable
        may use the ones before it, as in Grafana)."""
        out: dict[str, Variable] = {}
        for var in board.get("templating", {}).get("list", []):
            name, kind = var["name"], var["type"]
            multi, include_all = bool(var.get("multi")), bool(var.get("includeAll"))
            current = (var.get("current") or {}).get("value")
            options: list[str] = []
            if kind == "query":
                options = self.label_values(str(var.get("query")), str(var.get("regex") or ""), out)
            value: str | list[str]
            if name in self.selection:
                value = list(self.selection[name]) if multi else self.selection[name][0]
            elif current in (ALL, [ALL]) and include_all:
                value = [ALL] if multi else ALL
            elif kind == "query" and (current in (None, "", []) or not set(_list(current)) <= set(options)):
                if not options:
                    raise QueryError(f"{board.get('title')}: variable {name} has no value: {var.get('query')}")
                value = [options[0]] if multi else options[0]  # Grafana selects the first option
            else:
                value = [str(v) for v in current] if isinstance(current, list) else str(current or "")
            out[name] = Variable(name, value, multi, include_all, var.get("allValue"), tuple(options))
        return out

    def label_values(self, query: str, regex: str, variables: Mapping[str, Variable]) -> list[str]:
        """A Prometheus query variable's options: label_values(selector, label) through Prometheus'
        label values API over the time range, Grafana's variable regex applied, sorted."""
        match = _LABEL_VALUES.match(query)
        if not match:
            raise QueryError(f"unsupported variable query {query!r} (label_values(selector, label) only)")
        params: list[tuple[str, str]] = [("start", str(self.start)), ("end", str(self.end))]
        if match.group("selector"):
            params.append(("match[]", interpolate(match.group("selector"), variables, prometheus_format)))
        url = (f"{self.backends.prometheus}/api/v1/label/{match.group('label')}/values?"
               + urllib.parse.urlencode(params))
        values: list[str] = json.loads(_get(url))["data"]
        if regex:
            pattern = _js_regex(regex)
            kept = [m.group(1) if m.groups() else m.group(0) for v in values if (m := pattern.search(v))]
            values = [v for v in kept if v]
        return sorted(set(values))

    # -- running --------------------------------------------------------------------------------

    def run(self, board: dict[str, Any]) -> list[Answer]:
        variables = self.variables(board)
        return [self.run_target(t, variables) for t in targets(board)]

    def run_target(self, target: Target, variables: Mapping[str, Variable]) -> Answer:
        uid = interpolate(str((target.query.get("datasource") or {}).get("uid", "")), variables)
        answer = Answer(target, "")
        provisioned = self.datasources.get(uid)
        if provisioned is None or provisioned["type"] != target.ds_type:
            answer.error = f"data source uid {uid!r} is not a provisioned {target.ds_type} data source"
            return answer
        try:
            if target.ds_type == "prometheus":
                self._prometheus(answer, variables)
            elif target.ds_type == "jaeger":
                self._jaeger(answer, variables)
            elif target.ds_type == LOGS_TYPE:
                self._victorialogs(answer, variables)
            else:
                answer.error = f"no runner for data source type {target.ds_type}"
        except (QueryError, OSError, ValueError) as exc:
            answer.error = str(exc)
        return answer

    def window(self, panel: dict[str, Any]) -> Window:
        width = panel.get("gridPos", {}).get("w", 24)
        points = int(panel.get("maxDataPoints") or round(width / 24 * SCREEN_WIDTH_PX))
        return Window(self.start, self.end, points, self.time_interval_ms)

    def _prometheus(self, answer: Answer, variables: Mapping[str, Variable]) -> None:
        query, base = answer.target.query, self.backends.prometheus
        window = self.window(answer.target.panel)
        expr = prometheus_expr(str(query["expr"]), variables, window)
        if query.get("instant") and not query.get("range"):
            answer.request = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": self.end})
        else:
            step = window.step_ms / 1000
            start, end = (math.floor(t / step) * step for t in (self.start, self.end))  # aligned to the step
            answer.request = f"{base}/api/v1/query_range?" + urllib.parse.urlencode(
                {"query": expr, "start": start, "end": end, "step": step})
        body = json.loads(_get(answer.request))
        answer.data = body["data"]["result"]
        if query.get("exemplar"):
            url = f"{base}/api/v1/query_exemplars?" + urllib.parse.urlencode(
                {"query": expr, "start": self.start, "end": self.end})
            answer.exemplars = json.loads(_get(url))["data"]

    def _jaeger(self, answer: Answer, variables: Mapping[str, Variable]) -> None:
        if not self.backends.jaeger:
            raise QueryError("Jaeger is not running")
        query = answer.target.query
        if query.get("queryType") != "search":
            raise QueryError(f"Jaeger queryType {query.get('queryType')!r}: only search panels are run")
        params = {"service": interpolate(str(query.get("service") or ""), variables),
                  "operation": interpolate(str(query.get("operation") or ""), variables),
                  "tags": logfmt_tags_to_json(interpolate(str(query["tags"]), variables)) if query.get("tags") else "",
                  "minDuration": interpolate(str(query.get("minDuration") or ""), variables),
                  "maxDuration": interpolate(str(query.get("maxDuration") or ""), variables),
                  "limit": str(query.get("limit") or "")}
        if not params["service"]:
            raise QueryError("You must select a service.")  # Grafana's own answer
        params = {k: v for k, v in params.items() if v}  # Grafana drops empty fields
        params.update(start=str(int(self.start * 1e6)), end=str(int(self.end * 1e6)), lookback="custom")
        answer.request = f"{self.backends.jaeger}/api/traces?" + urllib.parse.urlencode(params)
        answer.data = json.loads(_get(answer.request)).get("data") or []

    def _victorialogs(self, answer: Answer, variables: Mapping[str, Variable]) -> None:
        if not self.backends.victorialogs:
            raise QueryError("VictoriaLogs is not running")
        query = answer.target.query
        if query.get("queryType", "instant") != "instant":
            raise QueryError(f"VictoriaLogs queryType {query.get('queryType')!r}: only log queries are run")
        expr = interpolate(str(query["expr"]), variables, victorialogs_format)
        params = {"query": expr, "limit": str(query.get("maxLines") or 1000), "start": str(self.start),
                  "end": str(self.end)}
        answer.request = f"{self.backends.victorialogs}/select/logsql/query?" + urllib.parse.urlencode(params)
        answer.data = [json.loads(line) for line in _get(answer.request).splitlines() if line.strip()]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _js_regex(text: str) -> re.Pattern[str]:
    """Grafana's stringToJsRegex: /pattern/flags (a plain string is a pattern)."""
    match = re.fullmatch(r"/(.*)/([gimsuy]*)", text, re.DOTALL)
    if not match:
        return re.compile(text)
    flags = (re.IGNORECASE if "i" in match.group(2) else 0) | (re.MULTILINE if "m" in match.group(2) else 0)
    return re.compile(match.group(1), flags)
