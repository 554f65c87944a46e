"""Retried and failed-after-retries requests are found in Jaeger by exact tag, and leak hunt reports
and health changes in VictoriaLogs by service and by trace id, on the real local stack (collector,
Jaeger, VictoriaLogs) with the e2e workload (tests/e2e/workload.py) driven through a fault scenario.

One stack and one scenario per module: every call retried once, an outage (retries exhausted, the
circuit opens, health turns critical), recovery, then a leak hunt inside a traced request. Each test
then asks the backend's own HTTP API, polling: Jaeger keeps a trace once the collector's tail sampler
decides (decision_wait), VictoriaLogs makes a record searchable a second or two after ingest.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from otel_hardening.stack import LocalStack, ManagedProcess, StackSettings, free_port
from tests.e2e.conftest import (
    ROOT,
    Upstream,
    call_failed,
    jaeger_tags,
    jaeger_traces,
    logsql,
    serve_upstream,
    skip_without,
    start_stack,
    wait_for,
)

pytestmark = pytest.mark.e2e

SERVICE = "e2e-search"
APP_ENV = {
    "OTEL_SERVICE_NAME": SERVICE,
    "OTEL_METRIC_EXPORT_INTERVAL": "5000",
    "OTEL_BSP_SCHEDULE_DELAY": "200",
    "OTEL_BLRP_SCHEDULE_DELAY": "200",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    "OTEL_EXPORTER_OTLP_INSECURE": "true",
    "OTEL_PYTHON_HARDENING_RETRY_MAX_ATTEMPTS": "3",
    "OTEL_PYTHON_HARDENING_RETRY_BACKOFF_INITIAL": "0.01",
    "OTEL_PYTHON_HARDENING_RETRY_BACKOFF_MAX": "0.05",
    "OTEL_PYTHON_HARDENING_RETRY_BUDGET_RATIO": "1.0",
    "OTEL_PYTHON_HARDENING_RETRY_BUDGET_MIN_PER_SECOND": "1000",
    "OTEL_PYTHON_HARDENING_CIRCUIT_FAIL_MAX": "5",
    "OTEL_PYTHON_HARDENING_CIRCUIT_RESET_TIMEOUT": "2s",
    "OTEL_PYTHON_HARDENING_HEALTH_DETAILS": "always",
}
POLL = 60.0
"""Seconds a search may take to find what the scenario produced (typically 2-5 s)."""

_FAILURES: list[str] = []


@pytest.fixture(autouse=True)
def _note_failures(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if call_failed(request):
        _FAILURES.append(request.node.name)


@pytest.fixture(scope="module")
def search_stack(backends_missing: dict[str, str], stack_tools: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Every backend that is built; each test skips (with the reason) for the one it needs."""
    # Keep every trace: the log -> trace check looks up the hunt request's trace, a plain success.
    settings = StackSettings(sampling_percentage=100.0, decision_wait="2s", spanmetrics_flush_interval="5s",
                             without=frozenset(backends_missing))
    local = start_stack(tmp_path_factory.mktemp("search") / "stack", settings, stack_tools)
    try:
        yield local
    finally:
        if _FAILURES:
            sys.stderr.write(f"\n----- logs of the stack -----\n{local.logs(40)}\n")
        local.down()


@dataclass
class Scenario:
    stack: LocalStack
    upstream: Upstream
    app: ManagedProcess
    health_url: str
    hunt: dict[str, Any] = field(default_factory=dict)

    def app_status(self) -> str:
        """The app's own health endpoint: pass, warn or fail (critical)."""
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as response:
                return str(json.load(response)["status"])
        except urllib.error.HTTPError as exc:  # 503 = fail (critical)
            return str(json.loads(exc.read() or b"{}").get("status", "?"))
        except OSError:
            return "unreachable"


@pytest.fixture(scope="module")
def scenario(search_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    with serve_upstream() as (upstream, upstream_url):
        port, health_port = free_port(), free_port()
        env = {**APP_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": search_stack.otlp_grpc_endpoint, "PYTHONPATH": str(ROOT),
               "OTEL_PYTHON_HARDENING_HEALTH_ENDPOINT": f"127.0.0.1:{health_port}"}
        log = tmp_path_factory.mktemp("workload") / "workload.log"
        app = ManagedProcess.start(
            "workload", [sys.executable, "-m", "tests.e2e.workload", "--port", str(port), "--upstream",
                         upstream_url, "--rps", "10"],
            log, f"http://127.0.0.1:{port}/healthz", env=env, cwd=ROOT,
        )
        run = Scenario(search_stack, upstream, app, f"http://127.0.0.1:{health_port}/healthz")
        try:
            app.wait_ready(30)
            _run(run)
        except BaseException:
            _FAILURES.append("scenario")
            app.stop()
            raise
        try:
            yield run
        finally:
            app.stop()
            if _FAILURES:
                sys.stderr.write(f"\n===== workload =====\n{log.read_text(errors='replace')[-4000:]}\n")


def _run(run: Scenario) -> None:
    run.upstream.set_phase("healthy")
    time.sleep(2)
    run.upstream.set_phase("alternate")  # 503, 200, 503, ...: each call succeeds after one retry
    time.sleep(4)
    run.upstream.set_phase("down")  # retries exhausted; after 5 failures the circuit opens: critical
    time.sleep(3)
    wait_for(lambda: run.app_status() == "fail", 30, interval=0.25, what="the app's health turning critical")
    time.sleep(1)
    run.upstream.set_phase("healthy")
    time.sleep(3)
    with urllib.request.urlopen(f"{run.app.ready_url.rsplit('/', 1)[0]}/hunt?seconds=2", timeout=60) as r:
        run.hunt = json.load(r)


# -- traces: Jaeger -------------------------------------------------------------------------------

def _hardening_spans(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in trace["spans"] if s["operationName"] == "hardening.request"]


def _parent(span: dict[str, Any]) -> str | None:
    return next((r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"), None)


def _events(span: dict[str, Any]) -> list[str]:
    return [f["value"] for log in span.get("logs", []) for f in log["fields"] if f["key"] == "event"]


def _check_trace(trace: dict[str, Any], outcome: str) -> dict[str, Any]:
    """The documented structure (docs/telemetry.md): under the request's SERVER span, attempt 1 (a
    CLIENT span) and the hardening.request span, which links to attempt 1 and is the parent of the
    resent attempts, each with http.request.resend_count = 1, 2, ... Returns the hardening span."""
    spans = {s["spanID"]: s for s in trace["spans"]}
    (logical,) = [s for s in _hardening_spans(trace) if jaeger_tags(s).get("hardening.outcome") == outcome]
    tags = jaeger_tags(logical)
    attempts = tags["hardening.attempts"]
    assert tags["hardening.retried"] is (attempts > 1), tags
    server = spans[_parent(logical) or ""]
    assert jaeger_tags(server).get("span.kind") == "server", server
    clients = sorted((s for s in trace["spans"] if jaeger_tags(s).get("span.kind") == "client"),
                     key=lambda s: s["startTime"])
    assert len(clients) == attempts, [c["operationName"] for c in clients]
    first, *resent = clients
    assert _parent(first) == server["spanID"] and "http.request.resend_count" not in jaeger_tags(first)
    assert [jaeger_tags(c).get("http.request.resend_count") for c in resent] == list(range(1, attempts))
    assert all(_parent(c) == logical["spanID"] for c in resent)
    links = [r["spanID"] for r in logical.get("references", []) if r["refType"] != "CHILD_OF"]
    assert links == [first["spanID"]], logical.get("references")
    return logical


def test_retried_requests_found_by_exact_tag(scenario: Scenario) -> None:
    skip_without("jaeger")
    traces = wait_for(lambda: jaeger_traces(scenario.stack, SERVICE, {"hardening.retried": "true",
                                                                      "hardening.outcome": "success_after_retry"}),
                      POLL, what="retried requests in Jaeger (hardening.retried=true)")
    for trace in traces[:10]:
        assert jaeger_tags(_check_trace(trace, "success_after_retry"))["hardening.attempts"] >= 2
    # Exact match, not a substring or a default: every hardening span of every trace found says so.
    found = jaeger_traces(scenario.stack, SERVICE, {"hardening.retried": "true"}, limit=1000)
    assert found and all(any(jaeger_tags(s)["hardening.retried"] is True for s in _hardening_spans(t))
                         for t in found)
    # A rejected request never reached the upstream, so it was never retried.
    assert jaeger_traces(scenario.stack, SERVICE, {"hardening.retried": "true",
                                                   "hardening.outcome": "rejected_circuit_open"}) == []
    # Each resent attempt's CLIENT span is found by its resend count (an int attribute, matched as a string).
    resent = jaeger_traces(scenario.stack, SERVICE, {"http.request.resend_count": "1"})
    assert resent and all(any(jaeger_tags(s).get("http.request.resend_count") == 1 for s in t["spans"])
                          for t in resent)


def test_failed_after_retries_found_by_exact_tag(scenario: Scenario) -> None:
    skip_without("jaeger")
    failed_retried = {"hardening.outcome": "failure_after_retry", "hardening.retried": "true"}
    traces = wait_for(lambda: jaeger_traces(scenario.stack, SERVICE, failed_retried), POLL,
                      what="failed-after-retries requests in Jaeger (hardening.outcome=failure_after_retry)")
    for trace in traces[:10]:
        logical = _check_trace(trace, "failure_after_retry")
        assert jaeger_tags(logical).get("error") is True, "a failed call's span has status ERROR"
    # The outcome alone also finds a call whose planned retry the circuit (opened meanwhile) refused:
    # one attempt, not retried, and the refusal is on the span as an event.
    for trace in jaeger_traces(scenario.stack, SERVICE, {"hardening.outcome": "failure_after_retry"}, limit=1000):
        logical = _check_trace(trace, "failure_after_retry")
        if jaeger_tags(logical)["hardening.retried"] is False:
            assert "hardening.retry.denied" in _events(logical), _events(logical)
    rejected = jaeger_traces(scenario.stack, SERVICE, {"hardening.outcome": "rejected_circuit_open"})
    assert rejected, "the outage opened the circuit: rejected requests are traced too"
    for trace in rejected:
        (logical,) = _hardening_spans(trace)
        tags = jaeger_tags(logical)
        assert (tags["hardening.retried"], tags["hardening.attempts"]) == (False, 0), tags
        assert not [s for s in trace["spans"] if jaeger_tags(s).get("span.kind") == "client"], "no request sent"


# -- logs: VictoriaLogs ---------------------------------------------------------------------------

def test_hunt_report_found_by_service_and_trace_id(scenario: Scenario) -> None:
    skip_without("victorialogs")
    hunt = scenario.hunt
    assert hunt.get("error") is None and hunt.get("sites", 0) >= 1 and "workload.py" in str(hunt["top"]), hunt
    by_service = wait_for(lambda: logsql(scenario.stack, f'service.name:="{SERVICE}" '
                                                         'hardening.leak.hunt.trigger:=api'),
                          POLL, what="the leak hunt report in VictoriaLogs by service.name")
    (record,) = by_service
    assert record["trace_id"] == hunt["trace_id"], record
    assert "#1 " in record["_msg"] and hunt["top"] in record["_msg"], record["_msg"]
    assert record["code.file.path"].endswith("workload.py"), record
    by_trace = logsql(scenario.stack, f'trace_id:="{hunt["trace_id"]}"')
    assert [r["_msg"] for r in by_trace] == [record["_msg"]]


def test_health_changes_found_by_service(scenario: Scenario) -> None:
    """Found by service and by their state fields. (A record carries a trace id only when a traced
    request's circuit transition caused the change: docs/telemetry.md; tests/health/test_change_cause.py.)"""
    skip_without("victorialogs")
    critical = wait_for(lambda: logsql(scenario.stack, f'service.name:="{SERVICE}" '
                                                       'hardening.health.state:=critical'),
                        POLL, what="the health change to critical in VictoriaLogs")
    assert any(" -> critical" in r["_msg"] and "circuit" in r["_msg"] for r in critical), critical
    changes = logsql(scenario.stack, f'service.name:="{SERVICE}" hardening.health.previous_state:*')
    states = [r["hardening.health.state"] for r in sorted(changes, key=lambda r: r["_time"])]
    assert states[0] == "healthy" and "critical" in states, states
    # The service's records are one stream (the collector's VL-Stream-Fields: service.name).
    assert {r["_stream"] for r in changes} == {f'{{service.name="{SERVICE}"}}'}


def test_log_record_links_to_its_trace_in_jaeger(scenario: Scenario) -> None:
    """The data source link (VictoriaLogs trace_id -> Jaeger) resolves: the hunt's trace is in Jaeger."""
    skip_without("jaeger", "victorialogs")
    trace_id = scenario.hunt["trace_id"]

    def trace() -> list[dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"{scenario.stack.jaeger_url}/api/traces/{trace_id}", timeout=10) as r:
                data: list[dict[str, Any]] = json.load(r).get("data") or []
                return data
        except OSError:
            return []

    (found,) = wait_for(trace, POLL, what=f"the hunt's trace {trace_id} in Jaeger")
    assert "GET /hunt" in [s["operationName"] for s in found["spans"]]
