"""What users come for, proven on the real local stack (collector, Prometheus, Alertmanager, Tempo,
Loki, Grafana) with a fault workload: every target of every provisioned dashboard panel returns data
through Grafana's own API, and a critical fault reaches an Alertmanager webhook receiver in time, then
resolves.

One stack and one scenario per module (the stack takes ~1 min to start, Grafana most of it):
retried requests, an outage that opens the circuit (health critical), recovery, and a leak hunt.
Prometheus and Alertmanager run with the shipped intervals (prometheus/prometheus.yml,
alertmanager/alertmanager.yml): the alert times measured here are the documented ones.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from otel_hardening.resources._probe import memory_limit
from otel_hardening.stack import LocalStack, ManagedProcess, StackSettings, free_port
from otel_hardening.stack._render import OPTIONAL
from tests.e2e.conftest import (
    ROOT,
    Upstream,
    call_failed,
    prom_query,
    serve_upstream,
    skip_without,
    start_stack,
    wait_for,
)
from tests.e2e.grafana_api import Grafana, GrafanaError, Target, frames_have_data, targets

pytestmark = pytest.mark.e2e

SERVICE = "e2e-workload"
ALERT = "HardeningServiceCritical"
# The goals (issue 10, README "Alerts: how fast"): at the receiver within 60 s of the fault,
# resolved within 120 s of recovery.
ALERT_WITHIN, RESOLVE_WITHIN = 60.0, 120.0
# The app's side of recovery, which the pipeline cannot shorten: the circuit's reset timeout, then the
# health status's recovery hold (30 s default, kept) before critical steps down.
APP_ENV = {
    "OTEL_SERVICE_NAME": SERVICE,
    "OTEL_METRIC_EXPORT_INTERVAL": "5000",  # the documented setting; the SDK default (60 s) breaks the goal
    "OTEL_BSP_SCHEDULE_DELAY": "500",
    "OTEL_BLRP_SCHEDULE_DELAY": "500",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    "OTEL_EXPORTER_OTLP_INSECURE": "true",
    # Stable HTTP semantic conventions (README, "The pipeline"): attempt spans carry server.address,
    # which the per-attempt latency panel groups span metrics by.
    "OTEL_SEMCONV_STABILITY_OPT_IN": "http",
    "OTEL_PYTHON_HARDENING_RETRY_MAX_ATTEMPTS": "3",
    "OTEL_PYTHON_HARDENING_RETRY_BACKOFF_INITIAL": "0.01",
    "OTEL_PYTHON_HARDENING_RETRY_BACKOFF_MAX": "0.05",
    "OTEL_PYTHON_HARDENING_CIRCUIT_FAIL_MAX": "5",
    "OTEL_PYTHON_HARDENING_CIRCUIT_RESET_TIMEOUT": "5s",
    "OTEL_PYTHON_HARDENING_HEALTH_WINDOW": "20s",
    "OTEL_PYTHON_HARDENING_HEALTH_DETAILS": "always",
}


# -- the alert receiver ---------------------------------------------------------------------------

@dataclass
class Notification:
    at: float  # time.monotonic() when it arrived
    body: dict[str, Any]

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.body.get("alerts", []) if a.get("labels", {}).get("alertname") == name]


@dataclass
class Webhook:
    url: str
    received: list[Notification] = field(default_factory=list)

    def first(self, name: str, status: str, after: float) -> Notification | None:
        for note in list(self.received):
            if note.at >= after and any(a.get("status") == status for a in note.alerts(name)):
                return note
        return None


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hook.received.append(Notification(time.monotonic(), json.loads(body or b"{}")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


# -- the stack and the workload -------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_stack(lgtm_missing: dict[str, str], stack_tools: Path, webhook: Webhook,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Everything that is built: the alert test needs only the collector, Prometheus and Alertmanager;
    the tests that need Tempo, Loki or Grafana skip with the reason when one is missing."""
    settings = StackSettings(
        sampling_percentage=100.0, decision_wait="2s", spanmetrics_flush_interval="5s",
        alert_webhook_url=webhook.url, ready_timeout=90.0, grafana_ready_timeout=240.0,
        without=frozenset(lgtm_missing),
    )
    local = start_stack(tmp_path_factory.mktemp("lgtm") / "stack", settings, stack_tools)
    try:
        yield local
    finally:
        if _FAILURES:
            sys.stderr.write(f"\n----- logs of the stack -----\n{local.logs(40)}\n")
        local.down()


_FAILURES: list[str] = []
"""Tests (or the scenario) that failed in this module: the module's fixtures then print the logs."""


@pytest.fixture(autouse=True)
def _note_failures(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if call_failed(request):
        _FAILURES.append(request.node.name)


@dataclass
class Scenario:
    stack: LocalStack
    upstream: Upstream
    app: ManagedProcess
    health_url: str
    start: float  # time.time() when the workload started
    fault_at: float = 0.0  # monotonic
    recovered_at: float = 0.0
    app_critical_at: float = 0.0
    app_left_critical_at: float = 0.0
    alert_at: float = 0.0
    resolved_at: float = 0.0
    hunt: dict[str, Any] = field(default_factory=dict)

    def app_status(self) -> str:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as response:
                return str(json.load(response)["status"])
        except urllib.error.HTTPError as exc:  # 503 = fail (critical)
            return str(json.loads(exc.read() or b"{}").get("status", "?"))
        except OSError:
            return "unreachable"


def _wait_app_status(scenario: Scenario, wanted: set[str], timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if scenario.app_status() in wanted:
            return time.monotonic()
        time.sleep(0.25)
    pytest.fail(f"the app's health did not become {wanted} within {timeout:.0f}s")


@pytest.fixture(scope="module")
def scenario(full_stack: LocalStack, webhook: Webhook, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Scenario]:
    """The fault workload, run once: retried requests, an outage (circuit open, health critical) until
    the alert arrives, recovery until it resolves, then a leak hunt."""
    with serve_upstream() as (upstream, upstream_url):
        port, health_port = free_port(), free_port()
        env = {**APP_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": full_stack.otlp_grpc_endpoint,
               "OTEL_PYTHON_HARDENING_HEALTH_ENDPOINT": f"127.0.0.1:{health_port}", "PYTHONPATH": str(ROOT)}
        log = tmp_path_factory.mktemp("workload") / "workload.log"
        app = ManagedProcess.start(
            "workload", [sys.executable, "-m", "tests.e2e.workload", "--port", str(port), "--upstream",
                         upstream_url, "--rps", "10"],
            log, f"http://127.0.0.1:{port}/healthz", env=env, cwd=ROOT,
        )
        run = Scenario(full_stack, upstream, app, f"http://127.0.0.1:{health_port}/healthz", time.time())
        try:
            app.wait_ready(30)
            _run(run, webhook)
        except BaseException:
            _FAILURES.append("scenario")
            app.stop()
            sys.stderr.write(f"\n===== workload =====\n{log.read_text(errors='replace')[-4000:]}\n")
            raise
        try:
            yield run
        finally:
            app.stop()
            if _FAILURES:
                sys.stderr.write(f"\n===== workload =====\n{log.read_text(errors='replace')[-4000:]}\n")


def _run(run: Scenario, webhook: Webhook) -> None:
    prometheus = run.stack.prometheus_url
    # Healthy traffic first, then every call retried once (traces for the retried-requests table).
    run.upstream.set_phase("healthy")
    wait_for(lambda: prom_query(prometheus, f'hardening_health_status{{job="{SERVICE}", '
                                            'hardening_health_state="healthy"} == 1'),
             60, what=f"{SERVICE} reporting healthy in Prometheus")
    run.upstream.set_phase("alternate")
    time.sleep(15)
    run.upstream.set_phase("healthy")
    time.sleep(5)

    # The outage: every attempt fails, the circuit opens, health turns critical.
    run.upstream.set_phase("down")
    run.fault_at = time.monotonic()
    run.app_critical_at = _wait_app_status(run, {"fail"}, 30)
    note = wait_for(lambda: webhook.first(ALERT, "firing", run.fault_at), ALERT_WITHIN + 60,
                    interval=0.25, what=f"{ALERT} firing at the webhook receiver")
    run.alert_at = note.at

    run.upstream.set_phase("healthy")
    run.recovered_at = time.monotonic()
    run.app_left_critical_at = _wait_app_status(run, {"pass", "warn"}, 120)
    note = wait_for(lambda: webhook.first(ALERT, "resolved", run.recovered_at), RESOLVE_WITHIN + 90,
                    interval=0.25, what=f"{ALERT} resolved at the webhook receiver")
    run.resolved_at = note.at

    # A leak hunt inside a traced request: its report is a log record in Loki.
    with urllib.request.urlopen(f"{run.app.ready_url.rsplit('/', 1)[0]}/hunt?seconds=2", timeout=30) as r:
        run.hunt = json.load(r)


# -- the alert ------------------------------------------------------------------------------------

def test_critical_alert_reaches_the_receiver_and_resolves(scenario: Scenario, webhook: Webhook) -> None:
    to_alert = scenario.alert_at - scenario.fault_at
    to_resolve = scenario.resolved_at - scenario.recovered_at
    app_detect = scenario.app_critical_at - scenario.fault_at
    app_recover = scenario.app_left_critical_at - scenario.recovered_at
    print(f"\n{ALERT}: time to alert {to_alert:.1f} s (app critical after {app_detect:.1f} s, pipeline "
          f"{to_alert - app_detect:.1f} s); time to resolve {to_resolve:.1f} s (app left critical after "
          f"{app_recover:.1f} s, pipeline {to_resolve - app_recover:.1f} s)")
    firing = webhook.first(ALERT, "firing", scenario.fault_at)
    assert firing is not None
    alert = firing.alerts(ALERT)[0]
    assert alert["labels"].get("severity") == "critical", alert
    assert alert["labels"].get("service") == SERVICE, alert
    assert alert["annotations"].get("runbook_url") and alert["annotations"].get("dashboard_url"), alert
    assert to_alert <= ALERT_WITHIN, f"{ALERT} reached the receiver {to_alert:.1f} s after the fault"
    assert to_resolve <= RESOLVE_WITHIN, f"{ALERT} resolved {to_resolve:.1f} s after recovery"
    # No flapping: between firing and resolved, no resolved-then-firing-again for this alert.
    states = [a["status"] for n in webhook.received if scenario.fault_at <= n.at <= scenario.resolved_at
              for a in n.alerts(ALERT)]
    assert states.count("resolved") == 1 and states[-1] == "resolved", states


# -- the dashboards -------------------------------------------------------------------------------

def _built_dashboards() -> dict[str, dict[str, Any]]:
    built = {}
    for path in sorted((ROOT / "dashboards" / "build" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        built[dashboard["uid"]] = dashboard
    return built


@pytest.fixture(scope="module")
def grafana(full_stack: LocalStack, lgtm_missing: dict[str, str]) -> Grafana:
    skip_without(lgtm_missing, "grafana")
    assert full_stack.grafana_admin_password
    return Grafana(full_stack.grafana_url, full_stack.grafana_admin_password)


def test_provisioned_dashboards_are_the_built_ones(full_stack: LocalStack, grafana: Grafana) -> None:
    built = _built_dashboards()
    assert len(built) >= 4, f"expected the four dashboards in dashboards/build/dashboards, got {sorted(built)}"

    def provisioned() -> dict[str, dict[str, Any]] | None:
        found = {uid: grafana.dashboard(uid) for uid in built}
        return found if all(found.values()) else None

    loaded = wait_for(provisioned, 60, what="every built dashboard provisioned in Grafana")
    for uid, dashboard in built.items():
        got = loaded[uid]
        assert got["title"] == dashboard["title"]
        assert [p.get("title") for p in got["panels"]] == [p.get("title") for p in dashboard["panels"]], uid
        assert [t for p in got["panels"] for t in p.get("targets", [])] == \
            [t for p in dashboard["panels"] for t in p.get("targets", [])], uid


def _has_data(grafana: Grafana, target: Target, start: float, end: float) -> str | None:
    """None when the target returned data through Grafana, else why not."""
    if target.ds_type == "tempo":
        traces = grafana.tempo_search(target.text, int(start), int(end) + 1)
        return None if traces else "no traces"
    if target.ds_type not in {"prometheus", "loki"}:
        return f"data source type {target.ds_type} not checked"
    uid = str(target.target.get("datasource", {}).get("uid", target.ds_type))
    result = grafana.ds_query(uid, target.target, int(start * 1000), int(end * 1000))
    if result.get("error"):
        return f"error: {result['error']}"
    return None if frames_have_data(result) else "no data"


def _absent_on_this_platform() -> dict[str, str]:
    """Metrics docs/telemetry.md says some platforms lack, that this one lacks: name -> why."""
    absent = {}
    if memory_limit() is None:
        absent["hardening_process_memory_limit_bytes"] = "no cgroup memory limit on this machine"
    return absent


def test_every_panel_target_returns_data(scenario: Scenario, grafana: Grafana, lgtm_missing: dict[str, str]) -> None:
    skip_without(lgtm_missing, *OPTIONAL)
    all_targets = [t for uid in _built_dashboards() for t in targets(grafana.dashboard(uid))]
    assert len(all_targets) >= 20, f"suspiciously few targets: {len(all_targets)}"
    absent = _absent_on_this_platform()
    start = scenario.start - 60

    def empty() -> list[str]:
        end = time.time()
        out = []
        for target in all_targets:
            why = _has_data(grafana, target, start, end)
            excused = [f"{name}: {reason}" for name, reason in absent.items() if name in target.text]
            if why and excused and why == "no data":
                print(f"\nempty, as expected here ({'; '.join(excused)}): {target.label}")
            elif why:
                out.append(f"{target.label} [{target.ds_type}] {why}: {target.text}")
        return out

    # Rates over a window and span metrics need a few scrapes after the scenario; Tempo search a few
    # seconds more. Poll, then list whatever is still empty.
    deadline = time.monotonic() + 60
    missing = empty()
    while missing and time.monotonic() < deadline:
        time.sleep(5)
        missing = empty()
    assert not missing, f"{len(missing)} of {len(all_targets)} targets returned nothing:\n" + "\n".join(missing)


def test_retried_requests_are_found_in_tempo(scenario: Scenario, grafana: Grafana, lgtm_missing: dict[str, str]
                                            ) -> None:
    skip_without(lgtm_missing, "tempo")
    traces = wait_for(lambda: grafana.tempo_search("{ span.http.request.resend_count > 0 }",
                                                   int(scenario.start), int(time.time()) + 1),
                      60, what="retried traces in Tempo through Grafana")
    trace = grafana.tempo_trace(traces[0]["traceID"])
    resends = [
        attr["value"].get("intValue") for batch in trace.get("batches", trace.get("resourceSpans", []))
        for scope in batch.get("scopeSpans", batch.get("instrumentationLibrarySpans", []))
        for span in scope.get("spans", []) for attr in span.get("attributes", [])
        if attr["key"] == "http.request.resend_count"
    ]
    assert any(int(v) >= 1 for v in resends if v is not None), trace


def test_hunt_and_health_records_are_in_loki(scenario: Scenario, grafana: Grafana, lgtm_missing: dict[str, str]
                                            ) -> None:
    skip_without(lgtm_missing, "loki")
    assert scenario.hunt.get("error") is None and scenario.hunt.get("sites", 0) >= 1, scenario.hunt
    assert scenario.hunt["top"] and "workload.py" in scenario.hunt["top"], scenario.hunt

    def lines(expr: str) -> list[str]:
        result = grafana.ds_query("loki", {"expr": expr, "queryType": "range", "maxLines": 100},
                                  int(scenario.start * 1000) - 60000, int(time.time() * 1000))
        out: list[str] = []
        for frame in result.get("frames", []):
            for column in frame.get("data", {}).get("values", []):
                out += [v for v in column if isinstance(v, str)]
        return out

    hunt = wait_for(lambda: [line for line in lines(f'{{service_name="{SERVICE}"}}') if "#1 " in line], 60,
                    what="the leak hunt report in Loki")
    assert any("workload.py" in line for line in hunt), hunt
    health = lines(f'{{service_name="{SERVICE}"}} |= "health "')
    assert any("-> critical" in line for line in health), health
    # The hunt's record carries its request's trace id: Loki -> Tempo links work.
    by_trace = lines(f'{{service_name="{SERVICE}"}} | trace_id="{scenario.hunt["trace_id"]}"')
    assert any("#1 " in line for line in by_trace), by_trace


def test_latency_exemplars_link_to_traces_in_tempo(scenario: Scenario, grafana: Grafana,
                                                  lgtm_missing: dict[str, str]) -> None:
    skip_without(lgtm_missing, "tempo")
    """Span-metric latency buckets carry exemplars (collector -> OpenMetrics -> Prometheus exemplar
    storage) whose trace_id opens a trace Tempo has."""
    query = f'traces_span_metrics_duration_seconds_bucket{{service_name="{SERVICE}"}}'
    url = (f"{scenario.stack.prometheus_url}/api/v1/query_exemplars?"
           + urllib.parse.urlencode({"query": query, "start": scenario.start, "end": time.time()}))

    def trace_ids() -> list[str]:
        with urllib.request.urlopen(url, timeout=10) as response:
            data = json.load(response)["data"]
        return [e["labels"]["trace_id"] for series in data for e in series["exemplars"] if "trace_id" in e["labels"]]

    ids = wait_for(trace_ids, 30, what=f"exemplars with a trace_id on {query}")
    found = [tid for tid in ids[-20:] if _trace_or_none(grafana, tid)]
    assert found, f"none of the exemplars' traces is in Tempo: {ids[-20:]}"


def _trace_or_none(grafana: Grafana, trace_id: str) -> dict[str, Any] | None:
    try:
        return grafana.tempo_trace(trace_id)
    except GrafanaError:
        return None
