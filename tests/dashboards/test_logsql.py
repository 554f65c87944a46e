"""Every LogsQL query users are given (the dashboards' VictoriaLogs panels, docs/runbooks.md) is
accepted by a real VictoriaLogs (its query API answers 400 for a query it cannot parse), with the
dashboard variables interpolated as Grafana does for several selections; and the panels' `job`
filter selects the same services as Prometheus' job label, service.namespace included."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from otel_hardening.stack import free_port
from otel_hardening.stack._process import ManagedProcess
from tests.dashboards.conftest import ROOT, built_dashboards, component
from tests.dashboards.grafana_vars import ALL, Variable, interpolate, victorialogs_format

LOGS_TYPE = "victoriametrics-logs-datasource"
SELECTIONS: dict[str, list[str]] = {
    "All": [ALL],
    "one": ["e2e-workload"],
    "namespaced and regex characters": ["ns1/shop.v2", "cart+1"],
}
# The Upstream (server.address) selected with each: the slow-request table filters on it too.
UPSTREAMS: dict[str, list[str]] = {
    "All": [ALL],
    "one": ["127.0.0.1"],
    "namespaced and regex characters": ["api.example", "_other"],
}


def query(base: str, logsql: str) -> tuple[int, list[dict[str, Any]]]:
    url = f"{base}/select/logsql/query?" + urllib.parse.urlencode({"query": logsql})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), [json.loads(line) for line in response.read().splitlines() if line]
    except urllib.error.HTTPError as exc:
        return int(exc.code), []


@pytest.fixture(scope="module")
def victorialogs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = component("victorialogs")
    work = tmp_path_factory.mktemp("victorialogs")
    base = f"http://127.0.0.1:{free_port()}"
    proc = ManagedProcess.start("victorialogs", [str(binary), "-storageDataPath", str(work / "data"),
                                                 "-httpListenAddr", base.removeprefix("http://")],
                                work / "victorialogs.log", f"{base}/health")
    try:
        proc.wait_ready(30)
        yield base
    finally:
        proc.stop()


def dashboard_queries() -> list[tuple[str, str]]:
    return [(f"{board['title']} / {panel['title']}", target["expr"])
            for board in built_dashboards().values() for panel in board["panels"]
            for target in panel["targets"] if target["datasource"]["type"] == LOGS_TYPE]


def runbook_queries() -> list[str]:
    lines = [line for page in ("runbooks.md", "dashboards-and-alerts.md")
             for line in (ROOT / "docs" / page).read_text().splitlines()]
    return [q.replace("$service", "shop") for line in lines if "LogsQL" in line for q in re.findall(r"`([^`]+)`", line)]


def job(selection: list[str], upstream: list[str] | None = None) -> dict[str, Variable]:
    return {"job": Variable("job", selection, multi=True, include_all=True, all_value=".+"),
            "upstream": Variable("upstream", upstream or [ALL], multi=True, include_all=True, all_value=".+")}


def ingest(base: str, records: list[dict[str, Any]]) -> None:
    body = "\n".join(json.dumps(r) for r in records).encode()
    request = urllib.request.Request(f"{base}/insert/jsonline?_stream_fields=service.name,service.namespace",
                                     data=body, headers={"Content-Type": "application/stream+json"})
    urllib.request.urlopen(request, timeout=10).close()


def test_victorialogs_rejects_a_broken_query(victorialogs: str) -> None:
    assert query(victorialogs, 'service.name:~"^(shop\\.v2)$"')[0] == 400  # a \. in a "string": invalid
    assert query(victorialogs, "hardening.health.state:* | filter (")[0] == 400


@pytest.mark.parametrize("selection", sorted(SELECTIONS))
def test_every_dashboard_logsql_query_parses(victorialogs: str, selection: str) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 3, queries
    bad = []
    for where, expr in queries:
        text = interpolate(expr, job(SELECTIONS[selection], UPSTREAMS[selection]), victorialogs_format)
        assert "$" not in text.replace("$`", ""), f"{where}: not interpolated: {text}"
        status = query(victorialogs, text)[0]
        if status != 200:
            bad.append(f"{where}: HTTP {status}: {text}")
    assert not bad, "VictoriaLogs cannot parse:\n" + "\n".join(bad)


def test_every_runbook_logsql_query_parses(victorialogs: str) -> None:
    queries = runbook_queries()
    assert len(queries) >= 5, queries
    bad = [q for q in queries if query(victorialogs, q)[0] != 200]
    assert not bad, "VictoriaLogs cannot parse:\n" + "\n".join(bad)


def test_the_job_filter_matches_prometheus_job_labels(victorialogs: str) -> None:
    """The Prometheus job of an app is service.namespace/service.name, or service.name alone: the
    panels' filter selects records by that, with ${job:regex} as Grafana formats it."""
    records = [
        {"_msg": "health a", "service.name": "shop.v2", "service.namespace": "ns1",
         "hardening.health.state": "critical"},
        {"_msg": "health b", "service.name": "shop.v2", "hardening.health.state": "degraded"},
        {"_msg": "health c", "service.name": "shopxv2", "hardening.health.state": "healthy"},
    ]
    ingest(victorialogs, records)
    health = next(expr for where, expr in dashboard_queries() if "Health changes" in where)

    def found(selection: list[str]) -> list[str]:
        text = interpolate(health, job(selection), victorialogs_format)
        return sorted(r["_msg"] for r in query(victorialogs, text)[1])

    deadline = time.monotonic() + 30
    while len(found([ALL])) < 3 and time.monotonic() < deadline:  # searchable a moment after ingest
        time.sleep(0.5)
    assert found([ALL]) == ["health a", "health b", "health c"]
    assert found(["ns1/shop.v2"]) == ["health a"]
    assert found(["shop.v2"]) == ["health b"]  # the dot is escaped: shopxv2 does not match
    assert found(["shop.v2", "shopxv2"]) == ["health b", "health c"]


def test_the_slow_request_table_selects_by_job_and_upstream(victorialogs: str) -> None:
    """The latest-slow-requests table: hardening.slow_request records only, of the selected services
    and upstreams (server.address, dots escaped), with the fields its columns show."""
    phases = {"hardening.duration": "3.2", "hardening.phase.queue": "2.5", "hardening.phase.connect": "0.1",
              "hardening.phase.headers": "0.5", "hardening.phase.backoff": "0.1",
              "hardening.slow_request.threshold": "2", "trace_id": "0af7651916cd43dd8448eb211c80319c"}
    records = [
        {"_msg": "slow a", "service.name": "pay", "server.address": "api.example", **phases},
        {"_msg": "slow b", "service.name": "pay", "server.address": "apixexample", **phases},
        {"_msg": "slow c", "service.name": "web", "server.address": "api.example", **phases},
        {"_msg": "not slow", "service.name": "pay", "server.address": "api.example",
         "hardening.health.state": "healthy"},
    ]
    ingest(victorialogs, records)
    slow = next(expr for where, expr in dashboard_queries() if "slow requests" in where)

    def found(jobs: list[str], upstreams: list[str]) -> list[dict[str, Any]]:
        return sorted(query(victorialogs, interpolate(slow, job(jobs, upstreams), victorialogs_format))[1],
                      key=lambda r: str(r["_msg"]))

    deadline = time.monotonic() + 30
    while len(found([ALL], [ALL])) < 3 and time.monotonic() < deadline:  # searchable a moment after ingest
        time.sleep(0.5)
    assert [r["_msg"] for r in found([ALL], [ALL])] == ["slow a", "slow b", "slow c"]
    assert [r["_msg"] for r in found(["pay"], ["api.example"])] == ["slow a"]
    assert [r["_msg"] for r in found(["pay", "web"], ["api.example"])] == ["slow a", "slow c"]
    (row,) = found(["web"], [ALL])
    columns = {k for k in phases if k.startswith("hardening.")} - {"hardening.slow_request.threshold"}
    assert set(row) == {"_time", "_msg", "job", "server.address", "trace_id"} | columns
    assert row["job"] == "web" and row["hardening.phase.queue"] == "2.5"
