"""The rules of our dashboard lint: Grafana's dashboard lint rule set (same names, same checks, as its
docs/rules describe them; docs/dashboards-and-alerts.md says why it is ours now), with PromQL checked
by real parsers (promtool for validity, the promql-parser package for the structure the rules look at)
and its Loki-query rule adapted to LogsQL. The runner, the exceptions file and the command line are in
tests/dashboards/lint.py."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import promql_parser

from tests.dashboards.grafana_vars import ALL, VARIABLE_RE, Variable, interpolate, prometheus_format

PROMETHEUS, LOGS = "prometheus", "victoriametrics-logs-datasource"
QUERY_PANELS = {"stat", "singlestat", "gauge", "graph", "table", "timeseries", "state-timeline"}
UNIT_PANELS = {"stat", "singlestat", "graph", "table", "timeseries", "gauge"}
# Stand-ins for Grafana's built-ins, odd enough that a range equal to one was written as the variable.
MAGIC = {"__rate_interval": "8869990s", "__interval": "4867856s", "__range": "6069770s",
         "__interval_ms": "7781188786", "__range_ms": "6737667980", "__range_s": "9397795485"}
RATE_INTERVAL_SECONDS = 8869990
# Grafana's unit ids (packages/grafana-data/src/valueFormats/categories.ts), the list the rule checks.
UNITS = frozenset("""
none string short percent percentunit humidity dB hex0x hex sci locale pixel accMS2 accFS2 accG degree radian
grad arcmin arcsec areaM2 areaF2 areaMI2 flops mflops gflops tflops pflops eflops zflops yflops ppm conppb
conngm3 conngNm3 conμgm3 conμgNm3 conmgm3 conmgNm3 congm3 congNm3 conmgdL conmmolL currencyUSD currencyGBP
currencyEUR currencyJPY currencyRUB currencyUAH currencyBRL currencyDKK currencyISK currencyNOK currencySEK
currencyCZK currencyCHF currencyPLN currencyBTC currencymBTC currencyμBTC currencyZAR currencyINR currencyKRW
currencyIDR currencyPHP currencyVND bytes decbytes bits decbits kbytes deckbytes mbytes decmbytes gbytes
decgbytes tbytes dectbytes pbytes decpbytes pps binBps Bps binbps bps KiBs Kibits KBs Kbits MiBs Mibits MBs
Mbits GiBs Gibits GBs Gbits TiBs Tibits TBs Tbits PiBs Pibits PBs Pbits dateTimeAsIso
dateTimeAsIsoNoDateIfToday dateTimeAsUS dateTimeAsUSNoDateIfToday dateTimeAsLocal
dateTimeAsLocalNoDateIfToday dateTimeAsSystem dateTimeFromNow watt kwatt megwatt gwatt mwatt Wm2 voltamp
kvoltamp voltampreact kvoltampreact watth watthperkg kwatth kwattm amph kamph mamph joule ev amp kamp mamp
volt kvolt mvolt dBm ohm kohm Mohm farad µfarad nfarad pfarad ffarad henry mhenry µhenry lumens flowgpm
flowcms flowcfs flowcfm litreh flowlpm flowmlpm lux forceNm forcekNm forceN forcekN Hs KHs MHs GHs THs PHs
EHs massmg massg masslb masskg masst lengthmm lengthin lengthft lengthm lengthkm lengthmi pressurembar
pressurebar pressurekbar pressurepa pressurehpa pressurekpa pressurehg pressurepsi radbq radci radgy radrad
radsv radmsv radusv radrem radexpckg radr radsvh radmsvh radusvh rotrpm rothz rotrads rotdegs celsius
fahrenheit kelvin hertz ns µs ms s m h d dtdurationms dtdurations dthms dtdhms timeticks clockms clocks cps
ops reqps rps wps iops cpm opm rpm wpm mps mpm velocityms velocitykmh velocitymph velocityknot mlitre litre
m3 Nm3 dm3 gallons bool bool_yes_no bool_on_off""".split())  # noqa: SIM905 (a list of 200 words)


@dataclass(frozen=True)
class Finding:
    rule: str
    dashboard: str
    panel: str | None
    message: str


@dataclass(frozen=True)
class Target:
    panel: dict[str, Any]
    query: dict[str, Any]

    @property
    def kind(self) -> str:
        ds = self.query.get("datasource") or self.panel.get("datasource") or {}
        return str(ds.get("type", "")) if isinstance(ds, dict) else ""

    @property
    def expr(self) -> str:
        return str(self.query.get("expr") or "")


def panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    def walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            if panel.get("type") != "row":
                yield panel
            yield from walk(panel.get("panels", []))  # a collapsed row's panels
    yield from walk(list(board.get("panels", [])))


def templates(board: Mapping[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [t for t in board.get("templating", {}).get("list", []) if kind is None or t.get("type") == kind]


def variable_query(template: Mapping[str, Any]) -> str:
    query = template.get("query")
    return str(query.get("query", "")) if isinstance(query, dict) else str(query or "")


def sample_variables(board: Mapping[str, Any]) -> dict[str, Variable]:
    """Each variable at its current value (the variable's name when it has none), as the lint
    interpolates it: any value will do to check a query's syntax and structure."""
    out: dict[str, Variable] = {}
    for t in templates(board):
        multi, include_all = bool(t.get("multi")), bool(t.get("includeAll"))
        current = (t.get("current") or {}).get("value")
        value: str | list[str] = current if isinstance(current, (str, list)) and current else t["name"]
        if value in (ALL, [ALL]) and not t.get("allValue"):
            value = [t["name"]] if multi else t["name"]
        out[t["name"]] = Variable(t["name"], value, multi, include_all, t.get("allValue"), (t["name"],))
    return out


def expand_outside_quotes(expr: str, variables: Mapping[str, Variable]) -> str:
    """The rules' expansion: built-ins to their stand-ins and variables to sample values, but
    only outside double-quoted strings, so that a matcher written ``job=~"$job"`` keeps ``$job``."""
    def builtin(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        return MAGIC.get(name, match.group(0))
    parts = re.split(r'("(?:[^"\\]|\\.)*")', expr)
    return "".join(p if i % 2 else interpolate(VARIABLE_RE.sub(builtin, p), variables, prometheus_format)
                   for i, p in enumerate(parts))


Node = Any


def walk(node: Node, parents: tuple[Node, ...] = ()) -> Iterator[tuple[Node, tuple[Node, ...]]]:
    """Every node of a promql_parser AST with its ancestors, nearest last."""
    yield node, parents
    inner = (*parents, node)
    for attr in ("lhs", "rhs", "expr", "vector_selector", "param"):
        child = getattr(node, attr, None)
        if child is not None and type(child).__module__ == node.__class__.__module__:
            yield from walk(child, inner)
    for child in getattr(node, "args", None) or ():
        yield from walk(child, inner)


def selectors(node: Node) -> Iterator[tuple[Node, tuple[Node, ...]]]:
    return ((n, p) for n, p in walk(node) if type(n).__name__ == "VectorSelector")


def _call_name(node: Node) -> str | None:
    return str(node.func.name) if type(node).__name__ == "Call" else None


# -- dashboard rules ------------------------------------------------------------------------------

def template_datasource_rule(board: Mapping[str, Any]) -> Iterator[str]:
    found = templates(board, "datasource")
    if not found:
        yield "does not have a templated data source"
    for t in found:
        names = {f"{str(t.get('query')).lower()}_datasource"} | ({"datasource"} if len(found) == 1 else set())
        labels = {f"{str(t.get('query')).title()} data source"} | ({"Data source"} if len(found) == 1 else set())
        if t.get("name") not in names:
            yield f"templated data source variable named {t.get('name')!r}, should be one of {sorted(names)}"
        if t.get("label") not in labels:
            yield f"templated data source variable labeled {t.get('label')!r}, should be one of {sorted(labels)}"


def _prometheus_dashboard(board: Mapping[str, Any]) -> bool:
    first = templates(board, "datasource")[:1]
    return bool(first) and first[0].get("query") == PROMETHEUS


def _template_rule(name: str) -> Callable[[Mapping[str, Any]], Iterator[str]]:
    def rule(board: Mapping[str, Any]) -> Iterator[str]:
        if not _prometheus_dashboard(board):
            return
        t = next((t for t in templates(board) if t.get("name") == name), None)
        if t is None:
            yield f"is missing the {name} template"
            return
        uid = (t.get("datasource") or {}).get("uid") if isinstance(t.get("datasource"), dict) else t.get("datasource")
        if uid not in ("$datasource", "${datasource}", "$prometheus_datasource", "${prometheus_datasource}"):
            yield f"{name} template should use the templated Prometheus data source, uses {uid!r}"
        if t.get("type") != "query":
            yield f"{name} template should be a Prometheus query, is {t.get('type')!r}"
        if t.get("label") != name.title():
            yield f"{name} template should be labeled {name.title()!r}, is {t.get('label')!r}"
        if not t.get("multi"):
            yield f"{name} template should be a multi select"
        if t.get("allValue") != ".+":
            yield f"{name} template allValue should be '.+', is {t.get('allValue')!r}"
    return rule


LABEL_FUNCTION = re.compile(r"\s*(label_names|label_values|metrics|query_result)\((.*)\)\s*", re.S)


def template_label_promql_rule(board: Mapping[str, Any], promql_errors: Mapping[str, str]) -> Iterator[str]:
    if not _prometheus_dashboard(board):
        return
    for t in templates(board, "query"):
        query = variable_query(t)
        match = LABEL_FUNCTION.fullmatch(query)
        if match is None:
            yield f"template {t['name']!r}: {query!r} is not label_names(), label_values(), metrics() or query_result()"
        elif query in promql_errors:
            yield f"template {t['name']!r}: invalid PromQL in {query!r}: {promql_errors[query]}"


def template_query_promql(query: str) -> str | None:
    """The PromQL inside a Prometheus variable query, for the parser (None when it holds none)."""
    match = LABEL_FUNCTION.fullmatch(query)
    if match is None:
        return None
    function, args = match.groups()
    if function == "label_values":
        selector, _, label = args.rpartition(",")
        return selector.strip() or None if re.fullmatch(r"\s*\w+\s*", label) else args
    return args.strip() or None if function in ("label_names", "query_result") else None


def template_on_time_change_reload_rule(board: Mapping[str, Any]) -> Iterator[str]:
    for t in templates(board, "query"):
        if t.get("refresh") != 2:
            yield (f"template {t['name']!r} should be refreshed on time range change (refresh: 2), "
                   f"is {t.get('refresh')!r}")


def uneditable_dashboard(board: Mapping[str, Any]) -> Iterator[str]:
    if board.get("editable") is not False:
        yield f"is editable ({board.get('editable')!r}): it should say editable: false (the code is the source)"


# -- panel rules ----------------------------------------------------------------------------------

def panel_datasource_rule(board: Mapping[str, Any], panel: Mapping[str, Any]) -> Iterator[str]:
    allowed = {form.format(t["name"]) for t in templates(board, "datasource") for form in ("${}", "${{{}}}")}
    for ds in [panel.get("datasource")] + [q.get("datasource") for q in panel.get("targets", [])]:
        uid = ds.get("uid") if isinstance(ds, dict) else ds
        if uid not in allowed:
            yield f"does not use a templated data source, uses {uid!r}"


def panel_title_description_rule(board: Mapping[str, Any], panel: Mapping[str, Any]) -> Iterator[str]:
    if not panel.get("title") or not panel.get("description"):
        yield f"has no title or no description (title {panel.get('title')!r})"


def _has_value_mappings(panel: Mapping[str, Any]) -> bool:
    config = panel.get("fieldConfig") or {}
    overrides = [p for o in config.get("overrides", []) for p in o.get("properties", [])]
    return bool((config.get("defaults") or {}).get("mappings")) or any(
        p.get("id") == "mappings" and p.get("value") for p in overrides)


def panel_units_rule(board: Mapping[str, Any], panel: Mapping[str, Any]) -> Iterator[str]:
    if panel.get("type") not in UNIT_PANELS or _has_value_mappings(panel):
        return
    if panel.get("type") == "stat" and ((panel.get("options") or {}).get("reduceOptions") or {}).get("fields"):
        return  # a stat panel showing a non-numeric field
    config = panel.get("fieldConfig") or {}
    units = [p.get("value") for o in config.get("overrides", []) for p in o.get("properties", [])
             if p.get("id") == "unit"]
    unit = units[-1] if units else (config.get("defaults") or {}).get("unit")
    if unit not in UNITS:
        yield f"has no or an invalid unit: {unit!r}"


def panel_no_targets_rule(board: Mapping[str, Any], panel: Mapping[str, Any]) -> Iterator[str]:
    if not panel.get("targets"):
        yield "has no targets"


# -- target rules ---------------------------------------------------------------------------------

def target_promql_rule(target: Target, parsed: Node | None, error: str | None) -> Iterator[str]:
    if target.kind != PROMETHEUS or target.panel.get("type") not in QUERY_PANELS:
        return
    if not target.expr:
        yield f"target {target.query.get('refId')!r} has no PromQL expression"
    elif error is not None:
        yield f"invalid PromQL {target.expr!r}: {error}"


def target_rate_interval_rule(target: Target, parsed: Node | None, error: str | None) -> Iterator[str]:
    for node, parents in walk(parsed) if parsed is not None else ():
        if type(node).__name__ != "MatrixSelector" or not parents:
            continue
        if _call_name(parents[-1]) in ("rate", "irate") and node.range.total_seconds() != RATE_INTERVAL_SECONDS:
            yield f"{_call_name(parents[-1])}() over [{node.range}], should use $__rate_interval: {target.expr!r}"


_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def _matcher_rule(label: str) -> Callable[[Target, Node | None, str | None], Iterator[str]]:
    def rule(target: Target, parsed: Node | None, error: str | None) -> Iterator[str]:
        for node, _ in selectors(parsed) if parsed is not None else ():
            matchers = [m for m in node.matchers.matchers if m.name == label]
            if not any(str(m.op).endswith(".Re") and m.value == f"${label}" for m in matchers):
                found = ", ".join(f'{m.name}{_OPS.get(str(m.op).rsplit(".", 1)[-1], m.op)}"{m.value}"'
                                  for m in matchers) or "none"
                yield (f'selector {node.name or ""}{{...}} has no {label}=~"${label}" matcher (has {found}): '
                       f"{target.expr!r}")
    return rule


def target_counter_agg_rule(target: Target, parsed: Node | None, error: str | None) -> Iterator[str]:
    for node, parents in selectors(parsed) if parsed is not None else ():
        if not str(node.name or "").endswith("_total"):
            continue
        ranged = len(parents) >= 2 and type(parents[-1]).__name__ == "MatrixSelector"
        if not ranged or _call_name(parents[-2]) not in ("rate", "irate", "increase"):
            yield f"counter {node.name} is not aggregated with rate, irate or increase: {target.expr!r}"


def target_logsql_rule(target: Target, parsed: Node | None, error: str | None, has_job: bool = False) -> Iterator[str]:
    """The upstream's Loki-query rule for our logs backend: a VictoriaLogs target has a query, and selects the
    dashboard's $job like the PromQL targets do. VictoriaLogs' own parser checks the query itself
    (tests/dashboards/test_logsql.py); the upstream's $__auto rule for Loki queries has no LogsQL
    counterpart (no range selectors)."""
    if target.kind != LOGS:
        return
    if not target.expr.strip():
        yield f"target {target.query.get('refId')!r} has no LogsQL query"
    elif has_job and not re.search(r"\$job\b|\$\{job\b", target.expr):
        yield f"LogsQL query does not filter on $job: {target.expr!r}"


DASHBOARD_RULES: dict[str, Callable[[Mapping[str, Any]], Iterator[str]]] = {
    "template-datasource-rule": template_datasource_rule,
    "template-job-rule": _template_rule("job"),
    "template-instance-rule": _template_rule("instance"),
    "template-on-time-change-reload-rule": template_on_time_change_reload_rule,
    "uneditable-dashboard": uneditable_dashboard,
}
PANEL_RULES: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], Iterator[str]]] = {
    "panel-datasource-rule": panel_datasource_rule,
    "panel-title-description-rule": panel_title_description_rule,
    "panel-units-rule": panel_units_rule,
    "panel-no-targets-rule": panel_no_targets_rule,
}
TARGET_RULES: dict[str, Callable[[Target, Node | None, str | None], Iterator[str]]] = {
    "target-promql-rule": target_promql_rule,
    "target-rate-interval-rule": target_rate_interval_rule,
    "target-job-rule": _matcher_rule("job"),
    "target-instance-rule": _matcher_rule("instance"),
    "target-counter-agg-rule": target_counter_agg_rule,
}


def parse_structure(expr: str, variables: Mapping[str, Variable]) -> tuple[Node | None, str | None]:
    """The AST the structural rules inspect, or why promql-parser rejects the expression (a finding of
    target-promql-rule: the structural rules must never be skipped silently)."""
    expanded = expand_outside_quotes(expr, variables)
    try:
        return promql_parser.parse(expanded), None
    except Exception as exc:
        return None, f"promql-parser rejects {expanded!r}: {exc}"
