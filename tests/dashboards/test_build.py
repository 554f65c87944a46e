"""The mixin sources are formatted and lint-clean, and the committed build is what they produce."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.dashboards.conftest import BUILD, MIXIN, ROOT

SOURCES = sorted(p for p in MIXIN.rglob("*sonnet") if BUILD not in p.parents)


def test_sources_found() -> None:
    names = {p.relative_to(MIXIN).as_posix() for p in SOURCES}
    assert {"config.libsonnet", "mixin.libsonnet", "dashboards.jsonnet", "alerts.jsonnet", "rules.jsonnet"} <= names


def test_jsonnetfmt(jsonnet: Path) -> None:
    result = subprocess.run([str(jsonnet.parent / "jsonnetfmt"), "--test", *map(str, SOURCES)],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"not formatted (run jsonnetfmt -i on them): {result.stdout}{result.stderr}"


def test_jsonnet_lint(jsonnet: Path) -> None:
    result = subprocess.run([str(jsonnet.parent / "jsonnet-lint"), "-J", str(MIXIN), *map(str, SOURCES)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_committed_build_is_fresh(jsonnet: Path, tmp_path: Path) -> None:
    """dashboards/build/ is committed (compose and the local stack mount it): it must be what
    dashboards/build.sh makes of the sources now."""
    out = tmp_path / "build"
    result = subprocess.run(["bash", str(MIXIN / "build.sh"), str(out)], capture_output=True, text=True,
                            env={**os.environ, "JSONNET": str(jsonnet)}, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    fresh, committed = _tree(out), _tree(BUILD)
    assert sorted(fresh) == sorted(committed), "files differ: run bash dashboards/build.sh and commit dashboards/build/"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale: {stale}; run bash dashboards/build.sh and commit dashboards/build/"


def test_build_fails_loudly_and_keeps_the_previous_build(jsonnet: Path, tmp_path: Path) -> None:
    """A broken source must not leave a half-written build behind."""
    broken = tmp_path / "mixin"
    subprocess.run(["cp", "-r", str(MIXIN), str(broken)], check=True)
    (broken / "alerts.jsonnet").write_text("{ syntax error")
    out = tmp_path / "out"
    (out / "rules").mkdir(parents=True)
    (out / "rules" / "alerts.yaml").write_text("previous")
    result = subprocess.run(["bash", str(broken / "build.sh"), str(out)], capture_output=True, text=True,
                            env={**os.environ, "JSONNET": str(jsonnet)})
    assert result.returncode != 0
    assert (out / "rules" / "alerts.yaml").read_text() == "previous"


def test_config_is_applied_everywhere(jsonnet: Path) -> None:
    """node-mixin's trap: a threshold or selector half-applied. Override config.libsonnet's values and
    none of the defaults may be left in any dashboard, alert or recording rule."""
    overrides = {
        "hardeningSelector": 'job=~"zz.*"', "collectorSelector": 'job="zz-collector"',
        "scrapeTargetSelector": 'job="zz-scrape"', "sloTarget": 0.975, "fdWarningRatio": 0.71,
        "fdCriticalRatio": 0.93, "telemetryDropRatio": 0.033, "retryBudgetRatio": 0.35,
        "criticalFor": "17s", "fdCriticalFor": "19s", "grafanaUrl": "https://zz.example", "runbookUrl": "https://zz.example/rb.md",
        "poolWaitingShare": 0.25, "poolTimeoutWindow": "13m",
    }
    code = (f"local m = (import 'mixin.libsonnet') + {{ _config+:: {json.dumps(overrides)} }};"
            "[m.grafanaDashboards, m.prometheusAlerts, m.prometheusRules]")
    result = subprocess.run([str(jsonnet), "-J", str(MIXIN), "-e", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    defaults = ['job!=\\"\\"', "otel-collector-self", "(1 - 0.99)", "> 0.8 ", "> 0.95", "> 0.01",
                "> 1.2", '"20s"', "127.0.0.1:3000", "docs/runbooks.md#", "quantile_over_time(0.5,", "at least 50%"]
    left = [d for d in defaults if d in text]
    assert not left, f"defaults still in the output after overriding config.libsonnet: {left}"
    for value in ('job=~\\"zz.*\\"', 'job=\\"zz-collector\\"', "(1 - 0.975)", "> 0.71", "> 0.93", "> 0.033",
                  "> 1.35", '"17s"', "https://zz.example/d/", "https://zz.example/rb.md#", "quantile_over_time(0.75,",
                  "at least 25%", "pool_timeout\\\"}[13m]", "offset 13m"):
        assert value in text, value
