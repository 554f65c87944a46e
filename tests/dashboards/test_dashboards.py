"""The built Grafana dashboards: stable uids, a description on every panel, every query on a
provisioned data source. The lint rules: tests/dashboards/test_lint.py."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.dashboards.conftest import ROOT, built_dashboards

# Alerts, docs links and bookmarks point at these: never change them.
UIDS = {
    "hardening-health.json": "hardening-health",
    "hardening-http.json": "hardening-http",
    "hardening-resources.json": "hardening-resources",
    "hardening-pipeline.json": "hardening-pipeline",
}
DASHBOARDS = sorted(UIDS)


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return list(board["panels"])


def test_the_four_dashboards_with_stable_uids() -> None:
    boards = built_dashboards()
    assert {name: board["uid"] for name, board in boards.items()} == UIDS


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_panel_says_what_to_do(name: str) -> None:
    board = built_dashboards()[name]
    assert board["description"]
    for panel in panels(board):
        assert len(panel.get("description", "")) >= 60, f"{name} / {panel['title']}: no useful description"
        assert panel["targets"], f"{name} / {panel['title']}: no query"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_units_and_layout(name: str) -> None:
    board = built_dashboards()[name]
    cells: set[tuple[int, int]] = set()
    for panel in panels(board):
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert unit, f"{name} / {panel['title']}: no unit"
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not mine & cells, f"{name} / {panel['title']} overlaps another panel"
        cells |= mine
    assert len({p["id"] for p in panels(board)}) == len(panels(board))


@pytest.mark.parametrize("name", DASHBOARDS)
def test_data_sources_are_the_provisioned_ones(name: str) -> None:
    """Every panel queries through a data source variable whose default is a provisioned uid."""
    provisioned = yaml.safe_load((ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text())
    uids = {ds["type"]: ds["uid"] for ds in provisioned["datasources"]}
    board = built_dashboards()[name]
    variables = {v["name"]: v for v in board["templating"]["list"] if v["type"] == "datasource"}
    for var in variables.values():
        assert var["current"]["value"] == uids.get(var["query"]), f"{var['name']}: no {var['query']} provisioned"
    for panel in panels(board):
        for target in panel["targets"]:
            ref = target["datasource"]["uid"]
            assert ref.startswith("${") and ref[2:-1] in variables, f"{panel['title']}: {ref}"
            assert variables[ref[2:-1]]["query"] == target["datasource"]["type"]
