"""Metric names in PromQL expressions, and the names the mixin may use (for the typo test)."""

from __future__ import annotations

import re
from pathlib import Path

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan", "Inf", "NaN"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_OFFSET = re.compile(r"\boffset\s+-?(?:\d+(?:ms|[smhdwy]))+")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+")
_NUMBER = re.compile(r"(?<![\w:])\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (functions, keywords, labels and variables removed)."""
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _GRAFANA_VAR.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        if text[match.end():].lstrip().startswith("("):
            continue  # a function or aggregation
        if match.group(0) not in KEYWORDS:
            names.add(match.group(0))
    return names


def variable_metric_names(query: str) -> set[str]:
    """Names in a Grafana Prometheus variable query such as label_values(metric{...}, label)."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
    return metric_names(match.group(1)) if match else metric_names(query)


def documented_names(telemetry_md: Path) -> set[str]:
    """Every Prometheus name in docs/telemetry.md's "Names in Prometheus" section, histogram
    suffixes expanded (`x_{bucket,sum,count}`)."""
    text = telemetry_md.read_text()
    section = text[text.index("## Names in Prometheus"):]
    names: set[str] = set()
    for base, suffixes in re.findall(r"\b([a-z][a-z0-9_]*)_\{([a-z,]+)\}", section):
        names.update(f"{base}_{s}" for s in suffixes.split(","))
    # http_client_*: the OpenTelemetry HTTP semantic conventions' own pool metrics, which we emit too.
    names.update(re.findall(r"\b(?:hardening|process|cpython|http_client)_[a-z0-9_]+\b", section))
    return names
