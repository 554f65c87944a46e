"""Our dashboard lint (tests/dashboards/lint.py): each rule catches a dashboard broken in its one way,
and the built dashboards pass with the exceptions in dashboards/lint-exceptions.yaml."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.dashboards.conftest import built_dashboards
from tests.dashboards.lint import lint, lint_board, load_exceptions
from tests.dashboards.lint_rules import DASHBOARD_RULES, PANEL_RULES, TARGET_RULES

PROM = {"type": "prometheus", "uid": "${prometheus_datasource}"}
# The name and label template-datasource-rule wants (dashboards/lint-exceptions.yaml says why ours differ).
LOGS = {"type": "victoriametrics-logs-datasource", "uid": "${victoriametrics-logs-datasource_datasource}"}


def variable(name: str, query: str) -> dict[str, Any]:
    return {"name": name, "label": name.title(), "type": "query", "datasource": PROM, "query": query,
            "refresh": 2, "multi": True, "includeAll": True, "allValue": ".+",
            "current": {"text": ["All"], "value": ["$__all"]}}


def good() -> dict[str, Any]:
    """A small dashboard every rule accepts."""
    return {
        "title": "Good", "uid": "good", "editable": False,
        "templating": {"list": [
            {"name": "prometheus_datasource", "label": "Prometheus data source", "type": "datasource",
             "query": "prometheus", "current": {"value": "prometheus"}},
            variable("job", "label_values(up, job)"),
            variable("instance", 'label_values(up{job=~"$job"}, instance)'),
        ]},
        "panels": [{
            "id": 1, "type": "timeseries", "title": "Requests", "description": "Requests per second.",
            "datasource": PROM, "fieldConfig": {"defaults": {"unit": "reqps"}, "overrides": []},
            "targets": [{"refId": "A", "datasource": PROM,
                         "expr": 'sum by (job) (rate(http_requests_total{job=~"$job", instance=~"$instance"}'
                                 '[$__rate_interval]))'}],
        }],
    }


def set_expr(expr: str) -> Callable[[dict[str, Any]], None]:
    def edit(board: dict[str, Any]) -> None:
        board["panels"][0]["targets"][0]["expr"] = expr
    return edit


def edit_var(var: str, **fields: Any) -> Callable[[dict[str, Any]], None]:
    def edit(board: dict[str, Any]) -> None:
        next(v for v in board["templating"]["list"] if v["name"] == var).update(fields)
    return edit


def edit_panel(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda board: board["panels"][0].update(fields)


def add_logs_panel(expr: str) -> Callable[[dict[str, Any]], None]:
    def edit(board: dict[str, Any]) -> None:
        board["templating"]["list"].append({"name": "victoriametrics-logs-datasource_datasource",
                                            "label": "Victoriametrics-Logs-Datasource data source",
                                            "type": "datasource", "query": "victoriametrics-logs-datasource"})
        board["panels"].append({"id": 2, "type": "logs", "title": "Logs", "description": "Records.",
                                "datasource": LOGS, "targets": [{"refId": "A", "datasource": LOGS, "expr": expr}]})
    return edit


SELECTOR = 'http_requests_total{job=~"$job", instance=~"$instance"}'
BROKEN: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "template-datasource-rule": (edit_var("prometheus_datasource", label="Prom"), "labeled 'Prom'"),
    "template-job-rule": (edit_var("job", allValue=None), "allValue"),
    "template-instance-rule": (edit_var("instance", multi=False), "multi select"),
    "template-label-promql-rule": (edit_var("instance", query='label_values(up{job=~"$job", instance)'),
                                   "invalid PromQL"),
    "template-on-time-change-reload-rule": (edit_var("job", refresh=1), "refresh: 2"),
    "uneditable-dashboard": (lambda board: board.update(editable=True), "editable"),
    "panel-datasource-rule": (edit_panel(datasource={"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}),
                              "P1809F7CD0C75ACF3"),
    "panel-title-description-rule": (edit_panel(description=""), "no description"),
    "panel-units-rule": (edit_panel(fieldConfig={"defaults": {"unit": "requests/s"}}), "requests/s"),
    "panel-no-targets-rule": (edit_panel(targets=[]), "no targets"),
    "target-promql-rule": (set_expr(f"sum(rate({SELECTOR}[$__rate_interval])"), "parse error"),
    "target-rate-interval-rule": (set_expr(f"sum(rate({SELECTOR}[5m]))"), "$__rate_interval"),
    "target-job-rule": (set_expr('sum(rate(http_requests_total{instance=~"$instance"}[$__rate_interval]))'),
                        'job=~"$job"'),
    "target-instance-rule": (set_expr('sum(rate(http_requests_total{job=~"$job", instance="a"}[$__rate_interval]))'),
                             'has instance="a"'),
    "target-counter-agg-rule": (set_expr(f"sum({SELECTOR})"), "not aggregated"),
    "target-logsql-rule": (add_logs_panel("hardening.health.state:*"), "$job"),
}


def test_every_rule_has_a_broken_dashboard() -> None:
    assert set(BROKEN) == {*DASHBOARD_RULES, *PANEL_RULES, *TARGET_RULES,
                           "template-label-promql-rule", "target-logsql-rule"}


def test_the_good_dashboard_has_no_findings(promtool: str) -> None:
    assert lint_board(good(), promtool) == []
    add_logs_panel('hardening.health.state:* | filter job:~"$job"')(board := good())
    assert lint_board(board, promtool) == []


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_each_rule_catches_its_broken_dashboard(promtool: str, rule: str) -> None:
    board = copy.deepcopy(good())
    edit, says = BROKEN[rule]
    edit(board)
    found = [(f.rule, f.message) for f in lint_board(board, promtool)]
    assert [m for r, m in found if r == rule and says in m], found
    assert {r for r, _ in found} == {rule}, found  # broken in one way: only its rule fires


def test_the_built_dashboards_pass_strictly(promtool: str) -> None:
    assert lint(list(built_dashboards().values()), promtool) == []


def test_an_exception_that_excepts_nothing_is_a_finding(promtool: str) -> None:
    exceptions = {"target-job-rule": {"reason": "none", "entries": [{"dashboard": "Good", "panel": "Requests"}]}}
    assert lint([good()], promtool, exceptions) == [
        "unused exception target-job-rule: {'dashboard': 'Good', 'panel': 'Requests'} (nothing to except: remove it)"]


def test_an_exception_covers_its_panel_only(promtool: str) -> None:
    board = good()
    set_expr(f"sum({SELECTOR})")(board)
    exceptions = {"target-counter-agg-rule": {"reason": "r", "entries": [{"dashboard": "Good", "panel": "Requests"}]}}
    assert lint([board], promtool, exceptions) == []
    board["panels"][0]["title"] = "Other"
    assert len(lint([board], promtool, exceptions)) == 2  # the finding, and the now unused exception


def test_every_exception_has_a_reason() -> None:
    for rule, spec in load_exceptions().items():
        assert len(spec["reason"]) > 20 and spec["entries"], rule
