"""The built dashboards against Grafana's own types (PyPI grafana-foundation-sdk, the Grafana 11.6
models). The SDK decodes anything without complaint, keeping unknown keys out and wrong types in, so
decoding alone proves nothing: each dashboard is decoded, every decoded value is checked against the
model's type annotations, and the re-encoded JSON is compared with the original; a field the models
drop or retype fails, unless ALLOWED says why the SDK cannot model it."""

from __future__ import annotations

import enum
import json
import re
import sys
import types
import typing
from typing import Any

import pytest

from tests.dashboards.conftest import built_dashboards

sdk = pytest.importorskip("grafana_foundation_sdk", reason="pip install grafana-foundation-sdk (dev extra)")
from grafana_foundation_sdk.cog import plugins  # noqa: E402
from grafana_foundation_sdk.cog import runtime as cogruntime  # noqa: E402
from grafana_foundation_sdk.cog.encoder import JSONEncoder  # noqa: E402
from grafana_foundation_sdk.models.dashboard import Dashboard  # noqa: E402

plugins.register_default_plugins()

# JSON paths (list indexes as []) the round trip may drop, with why.
ALLOWED = {
    ".templating.list[].definition": "the query editor's display copy of `query` (Grafana writes it when a "
                                     "variable is saved); the schema's VariableModel has no such field",
}
# Data source types the SDK has no query model for: their targets decode as UnknownDataquery, a bag
# kept verbatim. tests/e2e/test_dashboards_alerts.py runs each of them against the real backend.
UNMODELLED_QUERIES = {"jaeger", "victoriametrics-logs-datasource"}


def round_trip(board: dict[str, Any]) -> tuple[Dashboard, dict[str, Any]]:
    decoded = Dashboard.from_json(board)
    return decoded, json.loads(json.dumps(decoded, cls=JSONEncoder))


def changes(before: Any, after: Any, path: str = "") -> list[str]:
    """Fields of `before` missing from `after` or with another value or JSON type (additions are
    the SDK's defaults and are fine)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = [f"{path}.{k} dropped" for k in before if k not in after]
        return out + [c for k in before if k in after for c in changes(before[k], after[k], f"{path}.{k}")]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [c for i, (b, a) in enumerate(zip(before, after, strict=True)) for c in changes(b, a, f"{path}[{i}]")]
    if type(before) is not type(after) or before != after:
        return [f"{path} retyped or changed: {json.dumps(before)[:80]} -> {json.dumps(after)[:80]}"]
    return []


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))


def type_errors(value: Any, hint: Any, path: str) -> list[str]:
    """Where a decoded value does not have the type its model declares."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        # Panel options and field config: typed by the panel plugin's model, when it has one.
        return type_errors(value, type(value), path) if hasattr(value, "to_json") else []
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return []
        candidates = [a for a in args if a is not type(None)]
        classes = [a for a in candidates if isinstance(a, type) and hasattr(a, "to_json") and isinstance(value, a)]
        tried = [type_errors(value, arg, path) for arg in (classes[:1] or candidates)]
        if any(not t for t in tried):
            return []
        return tried[0] if len(tried) == 1 else [f"{path}: {type(value).__name__} is none of {args}"]
    if value is None:
        return [] if hint is type(None) else [f"{path}: null, {hint} expected"]
    if origin is typing.Literal:
        return [] if value in args else [f"{path}: {value!r} is not one of {args}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__}, a list expected"]
        return [e for i, item in enumerate(value) for e in type_errors(item, args[0], f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__}, an object expected"]
        return [e for k, v in value.items() for e in type_errors(v, args[1], f"{path}.{k}")]
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{path}: {value!r} is not a number"]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        # The SDK keeps an enum's JSON value as it is.
        ok = isinstance(value, hint) or value in {e.value for e in hint}
        return [] if ok else [f"{path}: {value!r} is not one of {[e.value for e in hint]}"]
    if isinstance(hint, type) and issubclass(hint, str | int | bool):
        ok = isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
        return [] if ok else [f"{path}: {value!r} is not {hint.__name__}"]
    if isinstance(hint, type):
        if isinstance(value, dict) and hasattr(hint, "from_json"):
            value = hint.from_json(value)  # some fields the SDK leaves undecoded (transformations)
        if not isinstance(value, hint):
            return [f"{path}: {type(value).__name__}, {hint.__name__} expected"]
        if isinstance(value, cogruntime.UnknownDataquery) or not hasattr(value, "to_json"):
            return []
        return [e for name, h in _hints(type(value)).items() for e in type_errors(getattr(value, name, None), h,
                                                                               f"{path}.{name}")]
    return []


def _generic(path: str) -> str:
    return re.sub(r"\[\d+\]", "[]", path.split(" ")[0])


@pytest.mark.parametrize("name", sorted(built_dashboards()))
def test_dashboard_round_trips_through_grafana_types(name: str) -> None:
    board = built_dashboards()[name]
    decoded, encoded = round_trip(board)
    lost = [c for c in changes(board, encoded) if _generic(c) not in ALLOWED]
    assert not lost, f"{name}: the Grafana 11.6 models drop or retype:\n" + "\n".join(lost)
    wrong = type_errors(decoded, Dashboard, "dashboard")
    assert not wrong, f"{name}: values of the wrong type:\n" + "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(built_dashboards()))
def test_queries_are_typed_except_the_unmodelled_data_sources(name: str) -> None:
    decoded, _ = round_trip(built_dashboards()[name])
    for panel in decoded.panels or []:
        for target in getattr(panel, "targets", None) or []:
            ds_type = panel.datasource.type_val if panel.datasource else None
            if isinstance(target, cogruntime.UnknownDataquery):
                assert ds_type in UNMODELLED_QUERIES, f"{panel.title}: {ds_type} target not typed"
            else:
                assert ds_type not in UNMODELLED_QUERIES


def test_the_check_fails_on_dropped_and_retyped_fields() -> None:
    """The comparison is not vacuous: an unknown key, a wrong type and a value the models rewrite."""
    board = json.loads(json.dumps(built_dashboards()["hardening-http.json"]))
    board["panels"][0]["bogusOption"] = 1
    board["panels"][1]["gridPos"]["w"] = "8"
    board["panels"][2]["targets"][0]["range"] = "yes"
    decoded, encoded = round_trip(board)
    assert ".panels[0].bogusOption dropped" in changes(board, encoded)
    wrong = type_errors(decoded, Dashboard, "dashboard")
    assert any(".panels[1].grid_pos.w" in e for e in wrong), wrong
    assert any(".panels[2].targets[0].range" in e for e in wrong), wrong
