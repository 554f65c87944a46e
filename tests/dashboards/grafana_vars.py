"""Grafana's template-variable interpolation, as Grafana 11 applies it to the targets of the data
sources our dashboards use, so that every target can be run against its backend without a Grafana
server (tests/e2e/dashboard_queries.py) and checked by the backend's own parser.

Sources, Grafana 11 unless named: the docs pages "Variable syntax" (`$var`, `${var}`,
`${var:format}`, `[[var]]`, the formats) and "Global variables"; template_srv.ts (a variable on All
with a custom all value expands to that value unformatted, except for the text and percentencode
formats; `glob` when no format is given); the Prometheus data source (`interpolateQueryExpr`:
regex-escaped values joined as `(a|b)` for multi/All variables); pkg/promlib/models/query.go
(`$__interval`, `$__rate_interval` = max(`$__interval` + scrape interval, 4 x scrape interval),
`$__range`); the Jaeger data source (service and tags interpolated, tags logfmt sent as JSON); the
VictoriaLogs plugin (`interpolateQueryExpr`: several values joined as `(a OR b)`).
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

ALL = "$__all"
# template_srv's variableRegex: $name | [[name:format]] | ${name.fieldPath:format}
VARIABLE_RE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")

Value = str | list[str]


@dataclass(frozen=True)
class Variable:
    """One dashboard variable with its current value: a string, a list (multi-value), or ALL."""

    name: str
    value: Value
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    # Every option's value, for All without a custom all value.
    options: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_all(self) -> bool:
        return self.value == ALL or (isinstance(self.value, list) and self.value[:1] == [ALL])


Formatter = Callable[[Value, Variable], str]


def regex_escape(value: str) -> str:
    """kbn.regexEscape: the regex format's escaping."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), value)


def _percent(value: str) -> str:
    return urllib.parse.quote(value, safe="-_.~")


def _as_list(value: Value) -> list[str]:
    return value if isinstance(value, list) else [value]


def _lucene(value: Value, _: Variable) -> str:
    def esc(v: str) -> str:
        return re.sub(r'([!*+\-=<>\s&|()\[\]{}^~?:\\/"])', r"\\\1", v)
    if isinstance(value, str):
        return esc(value)
    return "__empty__" if not value else "(" + " OR ".join(f'"{esc(v)}"' for v in value) + ")"


def _regex(value: Value, _: Variable) -> str:
    escaped = [regex_escape(v) for v in _as_list(value)]
    return escaped[0] if isinstance(value, str) or len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _glob(value: Value, _: Variable) -> str:
    return "{" + ",".join(value) + "}" if isinstance(value, list) and len(value) > 1 else ",".join(_as_list(value))


def _distributed(value: Value, var: Variable) -> str:
    values = _as_list(value)
    return ",".join([values[0], *(f"{var.name}={v}" for v in values[1:])]) if values else ""


def _quoted(quote: str, escaped: str) -> Formatter:
    return lambda value, _: ",".join(f"{quote}{v.replace(quote, escaped)}{quote}" for v in _as_list(value))


FORMATS: dict[str, Formatter] = {
    "lucene": _lucene,
    "raw": lambda value, _: ",".join(_as_list(value)),
    "regex": _regex,
    "pipe": lambda value, _: "|".join(_as_list(value)),
    "distributed": _distributed,
    "csv": lambda value, _: ",".join(_as_list(value)),
    "json": lambda value, _: json.dumps(value, separators=(",", ":")),
    "percentencode": lambda value, _: _percent("{" + ",".join(value) + "}" if isinstance(value, list)
                                               else value),
    "singlequote": _quoted("'", "\\'"),
    "doublequote": _quoted('"', '\\"'),
    "sqlstring": _quoted("'", "''"),
    "glob": _glob,
    "text": lambda value, _: " + ".join(_as_list(value)),
    "queryparam": lambda value, var: "&".join(f"var-{var.name}={_percent(v)}" for v in _as_list(value)),
}


def format_value(value: Value, fmt: str | Formatter | None, var: Variable) -> str:
    if callable(fmt):
        return fmt(value, var)
    name = (fmt or "glob").split(":", 1)[0]
    return FORMATS.get(name, _glob)(value, var)  # an unknown format falls back to glob


def interpolate(text: str, variables: Mapping[str, Variable], fmt: str | Formatter | None = None) -> str:
    """templateSrv.replace(text, {}, fmt): each variable reference replaced by its formatted value;
    an explicit ``${var:format}`` wins over the data source's ``fmt``; unknown names stay as they are
    (Grafana's built-ins are the data source's or its backend's to replace)."""
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        var = variables.get(name)
        if var is None:
            return match.group(0)
        explicit = match.group(3) or match.group(6)
        chosen = explicit or fmt
        value: Value = var.value
        if var.is_all:
            if var.all_value and explicit not in ("text", "percentencode"):
                return interpolate(var.all_value, variables)  # a custom all value, unformatted
            value = "All" if explicit == "text" else list(var.options)
        return format_value(value, chosen, var)

    return VARIABLE_RE.sub(one, text)


# -- data source formats ----------------------------------------------------------------------

def prometheus_regular_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\\\'")


def prometheus_special_regex_escape(value: str) -> str:
    return re.sub(r"[$^*{}\[\]+?.()|]", lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


def prometheus_format(value: Value, var: Variable) -> str:
    """The Prometheus data source's interpolateQueryExpr."""
    if not var.multi and not var.include_all:
        return ",".join(prometheus_regular_escape(v) for v in _as_list(value))
    if isinstance(value, str):
        return prometheus_special_regex_escape(value)
    escaped = [prometheus_special_regex_escape(v) for v in value]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def victorialogs_format(value: Value, _: Variable) -> str:
    """The VictoriaLogs plugin's interpolateQueryExpr."""
    if isinstance(value, str):
        return value
    return f"({' OR '.join(value)})" if len(value) > 1 else "".join(value)


# -- intervals: $__interval, $__rate_interval, $__range ------------------------------------------

_ROUND_STEPS_MS = [  # gtime.RoundInterval: (upper bound, rounded value) in ms
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
    (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
    (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
    (16200000, 10800000), (32400000, 21600000), (86400000, 43200000), (172800000, 86400000),
    (604800000, 86400000), (1814400000, 604800000),
]
SAFE_RESOLUTION = 11000  # pkg/promlib: the most points a range query may return


def round_interval(ms: float) -> int:
    for bound, rounded in _ROUND_STEPS_MS:
        if ms <= bound:
            return rounded
    return 2592000000 if ms < 3628800000 else 31536000000


def format_interval(ms: int) -> str:
    """gtime.FormatInterval: the largest whole unit."""
    for unit, size in (("y", 31536000000), ("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms" if ms >= 1 else "1ms"


def go_duration(ms: int) -> str:
    """Go's time.Duration.String() for whole milliseconds (how $__rate_interval is written)."""
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3600000)
    minutes, rest = divmod(rest, 60000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    out = f"{hours}h" if hours else ""
    out += f"{minutes}m" if hours or minutes else ""
    return out + f"{seconds}s"


def parse_duration_ms(text: str) -> int:
    """A Grafana interval such as 15s, 1m, 500ms, <10s, or a bare number of seconds."""
    text = text.strip("<>")
    if text.isdigit():
        return int(text) * 1000
    units = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000, "w": 604800000, "y": 31536000000}
    parts = re.fullmatch(r"((\d+(?:\.\d+)?)(ms|s|m|h|d|w|y))+", text)
    if not parts:
        raise ValueError(f"not a Grafana interval: {text!r} (e.g. 15s, 1m, 500ms)")
    return round(sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", text)))


@dataclass(frozen=True)
class Window:
    """What a panel query gets from Grafana besides its target: the time range, its maxDataPoints
    (the panel's width in pixels) and the Prometheus data source's scrape interval (jsonData
    timeInterval; 15 s when unset)."""

    start: float  # unix seconds
    end: float
    max_data_points: int
    # The Prometheus data source's jsonData.timeInterval ("Scrape interval"), if set.
    time_interval_ms: int | None = None

    @property
    def range_ms(self) -> int:
        return round((self.end - self.start) * 1000)

    @property
    def scrape_interval_ms(self) -> int:
        return self.time_interval_ms or 15000

    @property
    def interval_ms(self) -> int:
        """$__interval as the frontend computes it (rangeutil.calculateInterval), bounded below
        by the data source's scrape interval when one is set."""
        interval = round_interval(self.range_ms / self.max_data_points)
        return max(interval, self.time_interval_ms or 1)

    @property
    def step_ms(self) -> int:
        """The range query's step, the backend's calculatePrometheusInterval."""
        raw = self.range_ms / self.max_data_points
        calculated = self.interval_ms if raw < self.interval_ms else round_interval(raw)
        return max(round_interval(self.range_ms / SAFE_RESOLUTION), calculated)

    @property
    def rate_interval_ms(self) -> int:
        return max(self.interval_ms + self.scrape_interval_ms, 4 * self.scrape_interval_ms)

    def builtins(self) -> list[tuple[str, str]]:
        """pkg/promlib InterpolateVariables' replacements, in its order ($__interval_ms before
        $__interval, $__range_ms and $__range_s before $__range)."""
        step, rate = self.step_ms, self.rate_interval_ms
        range_s = math.floor(self.range_ms / 1000 + 0.5)
        out = [("__interval_ms", str(step)), ("__interval", format_interval(step)),
               ("__range_ms", str(self.range_ms)), ("__range_s", str(range_s)), ("__range", f"{range_s}s"),
               ("__rate_interval_ms", str(rate)), ("__rate_interval", go_duration(rate))]
        return [(form.format(name), value) for name, value in out for form in ("${{{}}}", "${}")]


def prometheus_expr(expr: str, variables: Mapping[str, Variable], window: Window) -> str:
    """A Prometheus target's expr as Prometheus receives it: dashboard variables by the frontend,
    then the interval and range built-ins by Grafana's backend."""
    out = interpolate(expr, variables, prometheus_format)
    for name, value in window.builtins():
        out = out.replace(name, value)
    return out


# -- Jaeger -------------------------------------------------------------------------------------

_LOGFMT = re.compile(r'\s*([^\s="]+)(?:=("(?:[^"\\]|\\.)*"|[^\s"]*))?')


def logfmt_tags_to_json(tags: str) -> str:
    """convertTagsLogfmt: logfmt key=value pairs (a bare key is true) as the JSON object of strings
    Jaeger's /api/traces?tags= takes."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(tags.rstrip()):
        match = _LOGFMT.match(tags, pos)
        if not match or match.end() == pos:
            raise ValueError(f"not logfmt at {pos}: {tags!r}")
        key, raw = match.group(1), match.group(2)
        out[key] = "true" if raw is None else (json.loads(raw) if raw.startswith('"') else raw)
        pos = match.end()
    return json.dumps(out, separators=(",", ":"))
