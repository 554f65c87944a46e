"""Our strict dashboard lint over the built JSON: Grafana's dashboard lint rules (tests/dashboards/
lint_rules.py), every finding an error unless dashboards/lint-exceptions.yaml excepts it with a reason,
and an exception that excepts nothing is an error too. PromQL validity comes from Prometheus' own
parser: every target and variable query, interpolated as Grafana sends it, is checked with
``promtool check rules``.

    python -m tests.dashboards.lint [dashboards/build/dashboards/*.json]   # exit 1 on any finding
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.dashboards.grafana_vars import Window, prometheus_expr
from tests.dashboards.lint_rules import (
    DASHBOARD_RULES,
    PANEL_RULES,
    PROMETHEUS,
    TARGET_RULES,
    Finding,
    Target,
    panels,
    parse_structure,
    sample_variables,
    target_logsql_rule,
    template_label_promql_rule,
    template_query_promql,
    templates,
    variable_query,
)

ROOT = Path(__file__).resolve().parents[2]
EXCEPTIONS = ROOT / "dashboards" / "lint-exceptions.yaml"
BUILT = ROOT / "dashboards" / "build" / "dashboards"
WINDOW = Window(start=0, end=6 * 3600, max_data_points=1000)


def promtool_errors(exprs: Iterable[str], promtool: str) -> dict[str, str]:
    """Prometheus' parser on each expression (``promtool check rules``): the error of each it rejects."""
    unique = sorted(set(exprs))
    if not unique:
        return {}
    groups = [{"name": f"e{i}", "rules": [{"record": f"lint:e{i}", "expr": e}]} for i, e in enumerate(unique)]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as rules:
        yaml.safe_dump({"groups": groups}, rules)
        rules.flush()
        result = subprocess.run([promtool, "check", "rules", rules.name], capture_output=True, text=True)
    errors = {unique[int(i)]: why for i, why in
              re.findall(r'group "e(\d+)", rule \d+, "[^"]*": (.*)', result.stdout + result.stderr)}
    if result.returncode != 0 and not errors:
        raise RuntimeError(f"promtool check rules failed without naming a rule: {result.stdout}{result.stderr}")
    return errors


def lint_board(board: Mapping[str, Any], promtool: str) -> list[Finding]:
    """Every finding of every rule on one dashboard, before exceptions."""
    title = str(board.get("title", "?"))
    variables = sample_variables(board)
    found: list[Finding] = []
    for rule, check in DASHBOARD_RULES.items():
        found += [Finding(rule, title, None, message) for message in check(board)]
    targets = [Target(panel, query) for panel in panels(board) for query in panel.get("targets", [])]
    prometheus = [t for t in targets if t.kind == PROMETHEUS and t.expr]
    queries = {variable_query(t) for t in templates(board, "query")}
    interpolated = {t.expr: prometheus_expr(t.expr, variables, WINDOW) for t in prometheus}
    in_queries = {q: prometheus_expr(p, variables, WINDOW) for q in queries if (p := template_query_promql(q))}
    errors = promtool_errors([*interpolated.values(), *in_queries.values()], promtool)
    found += [Finding("template-label-promql-rule", title, None, message) for message in
              template_label_promql_rule(board, {q: errors[e] for q, e in in_queries.items() if e in errors})]
    has_job = any(t.get("name") == "job" for t in templates(board))
    for panel in panels(board):
        for rule, panel_check in PANEL_RULES.items():
            found += [Finding(rule, title, panel.get("title"), message) for message in panel_check(board, panel)]
    for target in targets:
        error = errors.get(interpolated.get(target.expr, ""))
        parsed = None
        if target in prometheus and error is None:
            parsed, error = parse_structure(target.expr, variables)
        for rule, target_check in TARGET_RULES.items():
            found += [Finding(rule, title, target.panel.get("title"), m) for m in target_check(target, parsed, error)]
        found += [Finding("target-logsql-rule", title, target.panel.get("title"), m)
                  for m in target_logsql_rule(target, parsed, error, has_job)]
    return found


def load_exceptions(path: Path = EXCEPTIONS) -> dict[str, Any]:
    config = yaml.safe_load(path.read_text()) or {}
    for rule, entries in (config.get("exclusions") or {}).items():
        if not str(entries.get("reason", "")).strip() or not entries.get("entries"):
            raise ValueError(f"{path}: exception for {rule} needs a reason and at least one entry "
                             "(dashboard, and panel for a panel or target rule)")
    return dict(config.get("exclusions") or {})


def _matches(entry: Mapping[str, Any], finding: Finding) -> bool:
    return entry.get("dashboard") == finding.dashboard and entry.get("panel") == finding.panel


def lint(boards: Sequence[Mapping[str, Any]], promtool: str,
         exceptions: Mapping[str, Any] | None = None) -> list[str]:
    """The findings no exception covers, and every exception entry that covers no finding."""
    exceptions = load_exceptions() if exceptions is None else exceptions
    findings = [f for board in boards for f in lint_board(board, promtool)]
    used: set[tuple[str, int]] = set()
    out: list[str] = []
    for f in findings:
        entries = list(enumerate((exceptions.get(f.rule) or {}).get("entries", [])))
        hits = [i for i, entry in entries if _matches(entry, f)]
        used.update((f.rule, i) for i in hits)
        if not hits:
            where = f"{f.dashboard}" + (f" / {f.panel}" if f.panel is not None else "")
            out.append(f"{f.rule}: {where}: {f.message}")
    linted = {str(b.get("title")) for b in boards}
    for rule, spec in exceptions.items():
        for i, entry in enumerate(spec.get("entries", [])):
            if (rule, i) not in used and entry.get("dashboard") in linted:
                out.append(f"unused exception {rule}: {entry} (nothing to except: remove it)")
    return out


def main(argv: Sequence[str] = ()) -> int:
    promtool = shutil.which("promtool")
    if promtool is None:
        print("promtool not found (apt-get install prometheus)", file=sys.stderr)
        return 2
    paths = [Path(p) for p in argv] or sorted(BUILT.glob("*.json"))
    problems = lint([json.loads(p.read_text()) for p in paths], promtool)
    print("\n".join(problems) or f"{len(paths)} dashboards: no findings")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
