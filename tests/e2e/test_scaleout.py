"""Scale-out on loopback: one agent (agent.yaml, loadbalancing by trace id) in front of two gateways
(otelcol-config.yaml + gateway.yaml + the local file overlays, tail sampling), scraped by a real
Prometheus running prometheus/prometheus.yml. Every span of a trace must land on the same gateway,
sampling decisions must be whole-trace, and the two gateways' span metrics must stay two series."""

from __future__ import annotations

import dataclasses
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode, set_span_in_context

from otel_hardening.stack import ManagedProcess, Ports, StackSettings, collector_env, free_port
from otel_hardening.stack._render import ScaleOutTargets, render_prometheus_config
from tests.e2e.conftest import ROOT, prom_query, read_spans, show_logs_on_failure, traces_by_id, wait_for

pytestmark = pytest.mark.e2e

SERVICE = "scaleout-test"
INSTANCE = "scaleout-process-1"
TRACES, SPANS_PER_TRACE = 40, 4
COLLECTOR = ROOT / "collector"


class ScaleOut:
    def __init__(self, collector_bin: Path, run_dir: Path, gateway_env: dict[str, str] | None = None) -> None:
        self.gateway_env = gateway_env or {}
        self.bin = collector_bin
        self.run_dir = run_dir
        self.procs: list[ManagedProcess] = []
        self.gateway_files: list[Path] = []
        self.gateway_ports: list[Ports] = []
        self.agent_ports: Ports | None = None
        self.agent_endpoint = ""
        self.prometheus_url = ""

    def start(self, gateways: int = 2) -> None:
        settings = StackSettings(sampling_percentage=50, decision_wait="3s", spanmetrics_flush_interval="2s")
        addresses = []
        *gateway_ports, agent = distinct_ports(gateways + 1)
        for i, ports in enumerate(gateway_ports):
            self.gateway_ports.append(ports)
            traces = self.run_dir / f"gateway-{i}.jsonl"
            self.gateway_files.append(traces)
            env = collector_env(ports, traces, settings, self.run_dir / f"gateway-{i}-logs.jsonl")
            env.update({"OTELCOL_GATEWAY_ID": f"gw-{i}", **self.gateway_env})
            argv = [str(self.bin)]
            # No Jaeger or VictoriaLogs here: the gateways write what they keep to files.
            for config in ("otelcol-config.yaml", "gateway.yaml", "local-overlay.yaml", "local-no-traces.yaml",
                           "local-no-logs.yaml"):
                argv += ["--config", str(COLLECTOR / config)]
            self.procs.append(ManagedProcess.start(
                f"gateway-{i}", argv, self.run_dir / f"gateway-{i}.log",
                f"http://127.0.0.1:{ports.health}/", env=env,
            ))
            addresses.append(f"127.0.0.1:{ports.otlp_grpc}")
        # Gateways first: spans the agent cannot deliver at once are retried seconds later, and a
        # span later than decision_wait gets a decision of its own (see the README).
        for proc in self.procs:
            proc.wait_ready(60)
        self.agent_ports = agent
        self.procs.append(ManagedProcess.start(
            "agent", [str(self.bin), "--config", str(COLLECTOR / "agent.yaml")], self.run_dir / "agent.log",
            f"http://127.0.0.1:{agent.health}/",
            env={
                "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{agent.otlp_grpc}",
                "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{agent.otlp_http}",
                "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{agent.health}",
                "OTELCOL_SELF_METRICS_HOST": "127.0.0.1",
                "OTELCOL_SELF_METRICS_PORT": str(agent.self_metrics),
                "OTELCOL_GATEWAYS": "[" + ", ".join(addresses) + "]",
                "OTELCOL_BATCH_TIMEOUT": "200ms",
            },
        ))
        self.agent_endpoint = f"http://127.0.0.1:{agent.otlp_grpc}"
        self.procs[-1].wait_ready(60)

    def start_prometheus(self, binary: str) -> None:
        """prometheus/prometheus.yml, its collector jobs on the gateways' exporters and on every
        collector's own metrics (agent included), scraping every second."""
        assert self.agent_ports is not None
        port = free_port()
        targets = ScaleOutTargets(
            exporters=[f"127.0.0.1:{p.prom_exporter}" for p in self.gateway_ports],
            self_metrics={
                "gateway": [f"127.0.0.1:{p.self_metrics}" for p in self.gateway_ports],
                "agent": [f"127.0.0.1:{self.agent_ports.self_metrics}"],
            },
        )
        ports = Ports.pick()
        ports.prometheus = port
        config = render_prometheus_config(ROOT / "prometheus" / "prometheus.yml", ports,
                                          StackSettings(scrape_interval="1s"), ROOT / "dashboards" / "build" / "rules",
                                          scale_out=targets)
        config.pop("alerting")  # no Alertmanager here
        path = self.run_dir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        self.prometheus_url = f"http://127.0.0.1:{port}"
        self.procs.append(ManagedProcess.start(
            "prometheus",
            [binary, f"--config.file={path}", f"--storage.tsdb.path={self.run_dir / 'prometheus-data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--enable-feature=exemplar-storage"],
            self.run_dir / "prometheus.log", f"{self.prometheus_url}/-/ready",
        ))
        self.procs[-1].wait_ready(60)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.log.read_text(errors='replace')[-3000:]}" for p in self.procs)


def distinct_ports(count: int) -> list[Ports]:
    """``count`` port sets without a port in common: a process started later must not get a port
    an earlier one has not bound yet."""
    while True:
        sets = [Ports.pick() for _ in range(count)]
        ports = [port for p in sets for port in dataclasses.astuple(p) if port]
        if len(ports) == len(set(ports)):
            return sets


@pytest.fixture
def scaleout(collector_bin: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ScaleOut]:
    yield from running(ScaleOut(collector_bin, tmp_path), request)


@pytest.fixture
def overflowing(collector_bin: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ScaleOut]:
    """Gateways whose tail-sampling buffer holds 5 traces: 40 concurrent traces overflow it."""
    yield from running(ScaleOut(collector_bin, tmp_path, {"OTELCOL_TAIL_NUM_TRACES": "5"}), request)


def running(setup: ScaleOut, request: pytest.FixtureRequest) -> Iterator[ScaleOut]:
    try:
        setup.start()
        yield setup
    finally:
        show_logs_on_failure(request, setup.logs())
        setup.stop()


def send_interleaved_traces(endpoint: str) -> tuple[set[str], set[str]]:
    """TRACES traces of SPANS_PER_TRACE spans, each span its own export, traces interleaved in time,
    all from one process (INSTANCE). Returns the trace ids (hex) with an error span and those without."""
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE, "service.instance.id": INSTANCE}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    tracer = provider.get_tracer("scaleout")
    roots = [tracer.start_span("root") for _ in range(TRACES)]
    errors: set[str] = set()
    plain: set[str] = set()
    for step in range(1, SPANS_PER_TRACE):
        for i, root in enumerate(roots):
            child = tracer.start_span(f"step-{step}", context=set_span_in_context(root))
            if step == 2 and i % 2 == 0:
                child.set_status(Status(StatusCode.ERROR, "boom"))
            child.end()
        time.sleep(0.2)
    for i, root in enumerate(roots):
        root.end()
        trace_id = format(root.get_span_context().trace_id, "032x")
        (errors if i % 2 == 0 else plain).add(trace_id)
    provider.shutdown()
    return errors, plain


def test_agent_routes_whole_traces_to_one_gateway(scaleout: ScaleOut) -> None:
    errors, plain = send_interleaved_traces(scaleout.agent_endpoint)

    def per_gateway() -> list[dict[str, list[dict[str, object]]]]:
        return [traces_by_id(read_spans(path), SERVICE) for path in scaleout.gateway_files]

    def errors_arrived() -> bool:
        seen = set().union(*(set(g) for g in per_gateway()))
        return errors <= seen

    wait_for(errors_arrived, 45, what="every error trace on some gateway")
    time.sleep(4)  # decision_wait 3s: every plain trace is decided by now
    gateways = per_gateway()

    kept_plain = 0
    for trace_id in errors | plain:
        holders = [i for i, g in enumerate(gateways) if trace_id in g]
        if trace_id in errors:
            assert len(holders) == 1, f"error trace {trace_id} on gateways {holders}"
        if not holders:
            continue  # a plain trace the probabilistic policy dropped, whole
        assert len(holders) == 1, f"trace {trace_id} split across gateways {holders}"
        spans = gateways[holders[0]][trace_id]
        assert len(spans) == SPANS_PER_TRACE, f"trace {trace_id}: {len(spans)} of {SPANS_PER_TRACE} spans kept"
        kept_plain += trace_id in plain

    assert all(gateways), "the agent sent every trace to one gateway: no load balancing"
    # 20 plain traces at 50%: expect ~10; far outside means sampling is not per trace.
    assert 2 <= kept_plain <= 18, f"kept {kept_plain} of {len(plain)} plain traces at 50%"


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    return binary


def test_gateways_span_metrics_never_collide(scaleout: ScaleOut) -> None:
    """Both gateways compute span metrics for the same app process (its traces are spread by trace
    id). Each gateway's series must stay its own (otelcol_gateway), so that summing over gateways
    gives every span exactly once; the agent's own metrics are scraped too."""
    scaleout.start_prometheus(prometheus_binary())
    send_interleaved_traces(scaleout.agent_endpoint)
    roots = f'traces_span_metrics_calls_total{{job="{SERVICE}", instance="{INSTANCE}", span_name="root"}}'

    def all_roots_counted() -> list[dict[str, object]]:
        total = prom_query(scaleout.prometheus_url, f"sum without (otelcol_gateway) ({roots})")
        return total if total and float(total[0]["value"][1]) == TRACES else []

    wait_for(all_roots_counted, 60, what=f"{TRACES} root spans counted over both gateways")
    per_gateway = {r["metric"]["otelcol_gateway"]: float(r["value"][1])
                   for r in prom_query(scaleout.prometheus_url, roots)}
    assert set(per_gateway) == {"gw-0", "gw-1"}, per_gateway
    assert all(per_gateway.values()), f"a gateway counted no root span: {per_gateway}"
    # Summed over gateways, every span counted exactly once; no series without a gateway of its own.
    spans = f'traces_span_metrics_calls_total{{job="{SERVICE}", instance="{INSTANCE}"}}'
    total = prom_query(scaleout.prometheus_url, f"sum({spans})")
    assert float(total[0]["value"][1]) == TRACES * SPANS_PER_TRACE, total
    stray = prom_query(scaleout.prometheus_url, f'{spans[:-1]}, otelcol_gateway!~"gw-0|gw-1"}}')
    assert not stray, f"span-metric series without a gateway label: {stray}"
    with urllib.request.urlopen(f"{scaleout.prometheus_url}/metrics", timeout=5) as response:
        own = response.read().decode()
    for counter in ("prometheus_target_scrapes_sample_duplicate_timestamp_total",
                    "prometheus_target_scrapes_sample_out_of_order_total"):
        values = [line.split()[-1] for line in own.splitlines() if line.startswith(counter + " ")]
        assert values == ["0"], f"{counter}: {values}"
    log = (scaleout.run_dir / "prometheus.log").read_text(errors="replace")
    assert "out of order" not in log.lower() and "duplicate sample" not in log.lower(), log[-3000:]

    # The agent's own metrics: what it handed to the gateways.
    agent = ('otelcol_exporter_sent_spans_total'
             '{job="otel-collector-self", otelcol_tier="agent", exporter="loadbalancing"}')
    wait_for(lambda: prom_query(scaleout.prometheus_url, f"{agent} >= {TRACES * SPANS_PER_TRACE}"), 30,
             what="the agent's own exporter metrics in Prometheus")

    def every_collector_up() -> list[tuple[str, str]]:
        up = [(r["metric"]["otelcol_tier"], r["value"][1])
              for r in prom_query(scaleout.prometheus_url, 'up{job="otel-collector-self"}')]
        return up if sorted(up) == [("agent", "1"), ("gateway", "1"), ("gateway", "1")] else []

    wait_for(every_collector_up, 30, what="the own metrics of the agent and both gateways scraped")


def test_tail_sampling_overflow_alert_expression_on_real_gateways(overflowing: ScaleOut) -> None:
    """The built HardeningTelemetryDropping stage=tail_sampling expression, evaluated by Prometheus on
    the real gateways' own metrics, sees the traces evicted undecided (metric names of the built
    collector, not of its documentation)."""
    rules = yaml.safe_load((ROOT / "dashboards" / "build" / "rules" / "alerts.yaml").read_text())
    [expr] = [r["expr"] for g in rules["groups"] for r in g["rules"]
              if r.get("alert") == "HardeningTelemetryDropping" and r["labels"].get("stage") == "tail_sampling"]
    overflowing.start_prometheus(prometheus_binary())
    # Two waves: a counter appears at its first increment, and rate() cannot see what it counted
    # before its first scrape; the second wave moves counters Prometheus already holds.
    send_interleaved_traces(overflowing.agent_endpoint)
    time.sleep(3)
    send_interleaved_traces(overflowing.agent_endpoint)
    firing = wait_for(lambda: prom_query(overflowing.prometheus_url, expr), 60,
                      what="the tail-sampling overflow expression true on a gateway")
    gateways = {f"127.0.0.1:{p.self_metrics}" for p in overflowing.gateway_ports}
    assert {r["metric"]["instance"] for r in firing} <= gateways, firing
    assert all(float(r["value"][1]) > 0.01 for r in firing), firing
