"""Every TraceQL query users are given (dashboard tables, runbooks, docs/dashboards-and-alerts.md) is accepted by a real
Tempo: its search API answers 400 for a query it cannot parse."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from otel_hardening.stack import free_port
from otel_hardening.stack._process import ManagedProcess
from tests.dashboards.conftest import ROOT, built_dashboards, component

TEMPO_CONFIG = """
stream_over_http_enabled: true
server: {{http_listen_address: 127.0.0.1, http_listen_port: {http}, grpc_listen_address: 127.0.0.1,
          grpc_listen_port: {grpc}}}
distributor:
  receivers: {{otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{otlp}"}}}}}}}}
ingester: {{max_block_duration: 5m, trace_idle_period: 1s}}
memberlist: {{bind_addr: [127.0.0.1], bind_port: {gossip}, join_members: []}}
storage: {{trace: {{backend: local, wal: {{path: {dir}/wal}}, local: {{path: {dir}/blocks}}}}}}
usage_report: {{reporting_enabled: false}}
"""


def search(base: str, query: str) -> int:
    url = f"{base}/api/search?" + urllib.parse.urlencode({"q": query})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0  # not listening (yet)


@pytest.fixture(scope="module")
def tempo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = component("tempo")
    work = tmp_path_factory.mktemp("tempo")
    http = free_port()
    config = work / "tempo.yaml"
    config.write_text(TEMPO_CONFIG.format(http=http, grpc=free_port(), otlp=free_port(), gossip=free_port(),
                                          dir=work))
    base = f"http://127.0.0.1:{http}"
    # Ready when its search API answers (an empty query is valid TraceQL).
    proc = ManagedProcess.start("tempo", [str(binary), "-config.file", str(config)], work / "tempo.log",
                                f"{base}/api/search?" + urllib.parse.urlencode({"q": "{}"}))
    try:
        proc.wait_ready(60)
        yield base
    finally:
        proc.stop()


def given_queries() -> list[tuple[str, str]]:
    queries = [(f"{board['title']} / {panel['title']}", target["query"])
               for board in built_dashboards().values() for panel in board["panels"]
               for target in panel["targets"] if target["datasource"]["type"] == "tempo"]
    for doc in (ROOT / "docs" / "runbooks.md", ROOT / "docs" / "dashboards-and-alerts.md"):
        for line in doc.read_text().splitlines():
            if "TraceQL" in line or "Tempo:" in line:
                queries += [(doc.name, q) for q in re.findall(r"`(\{[^`]*\})`", line)]
    return queries


def grafana_defaults(query: str) -> str:
    """The query as Grafana sends it with every variable on All (.+), and $service as a name."""
    query = re.sub(r"\$\{\w+:regex\}|\$\{\w+\}", ".+", query)
    return query.replace("$service", "shop")


def test_tempo_rejects_a_broken_query(tempo: str) -> None:
    assert search(tempo, '{ span.hardening.outcome = "failure_after_retry" && bogus( }') == 400


def test_every_given_traceql_query_parses(tempo: str) -> None:
    queries = given_queries()
    assert len(queries) >= 8, queries
    bad = [f"{where}: {query}" for where, query in queries if search(tempo, grafana_defaults(query)) != 200]
    assert not bad, "Tempo cannot parse:\n" + "\n".join(bad)


def test_queries_found_in_docs() -> None:
    places = {where for where, _ in given_queries()}
    assert {"runbooks.md", "dashboards-and-alerts.md"} <= places, places


