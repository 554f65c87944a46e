"""Tools and built files for the dashboards/alerts mixin tests. A missing tool skips its tests with
the reason and the command that provides it (.ci/run repeats every skip reason loudly)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_hardening.stack._components import find_component
from otel_hardening.stack._process import StackError

ROOT = Path(__file__).resolve().parents[2]
MIXIN = ROOT / "dashboards"
BUILD = MIXIN / "build"
RULE_TESTS = MIXIN / "tests"


def component(name: str) -> Path:
    try:
        return find_component(name)
    except StackError as exc:
        pytest.skip(f"{name} not built: {exc}")


def apt_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (apt-get install {package})")
    return path


@pytest.fixture(scope="session")
def jsonnet() -> Path:
    return component("jsonnet")


@pytest.fixture(scope="session")
def promtool() -> str:
    return apt_tool("promtool", "prometheus")


@pytest.fixture(scope="session")
def amtool() -> str:
    return apt_tool("amtool", "prometheus-alertmanager")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def built_alerts() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(BUILD / "rules" / "alerts.yaml")["groups"] for rule in group["rules"]]


def built_records() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(BUILD / "rules" / "rules.yaml")["groups"] for rule in group["rules"]]


def built_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((BUILD / "dashboards").glob("*.json"))}
