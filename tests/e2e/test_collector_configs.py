"""Every shipped config is accepted by the real tools: `otelcol validate` on the built collector for
each collector config combination, promtool and amtool for Prometheus and Alertmanager."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import ROOT

COLLECTOR = ROOT / "collector"
# (configs layered with --config, extra env): the ways the configs are run.
FILES = {"OTELCOL_TRACES_FILE": "/dev/null", "OTELCOL_LOGS_FILE": "/dev/null"}
COMBINATIONS = {
    "single (compose)": (["otelcol-config.yaml"], {}),
    "single (local stack)": (["otelcol-config.yaml", "local-overlay.yaml"], FILES),
    "single (local, no Jaeger, no VictoriaLogs)": (
        ["otelcol-config.yaml", "local-overlay.yaml", "local-no-traces.yaml", "local-no-logs.yaml"], FILES),
    "gateway": (["otelcol-config.yaml", "gateway.yaml"], {}),
    "gateway (local)": (["otelcol-config.yaml", "gateway.yaml", "local-overlay.yaml"], FILES),
    "agent": (["agent.yaml"], {"OTELCOL_GATEWAYS": "[127.0.0.1:4317, 127.0.0.1:5317]"}),
}


def test_every_collector_config_is_covered() -> None:
    shipped = {p.name for p in COLLECTOR.glob("*.yaml")} - {"builder-config.yaml"}
    covered = {name for configs, _ in COMBINATIONS.values() for name in configs}
    assert shipped == covered, f"configs not validated: {shipped - covered}"


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_otelcol_validate(collector_bin: Path, combination: str) -> None:
    configs, env = COMBINATIONS[combination]
    argv = [str(collector_bin), "validate"]
    for config in configs:
        argv += ["--config", str(COLLECTOR / config)]
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=60,
                            check=False)
    assert result.returncode == 0, f"{combination}: {result.stdout}{result.stderr}"


def test_tail_sampling_keeps_trouble() -> None:
    """The policies the issue asks for, in the one place gateways and the single collector share."""
    config = yaml.safe_load((COLLECTOR / "otelcol-config.yaml").read_text())
    policies = {p["type"]: p for p in config["processors"]["tail_sampling"]["policies"]}
    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    assert policies["numeric_attribute"]["numeric_attribute"]["key"] == "http.request.resend_count"
    assert policies["numeric_attribute"]["numeric_attribute"]["min_value"] == 1
    outcomes = set(policies["string_attribute"]["string_attribute"]["values"])
    assert outcomes == {"success_after_retry", "failure", "failure_after_retry", "rejected_circuit_open",
                        "rejected_retry_budget", "pool_timeout"}
    assert not policies["string_attribute"]["string_attribute"].get("invert_match")
    assert policies["boolean_attribute"]["boolean_attribute"] == {"key": "hardening.slow", "value": True}
    assert "probabilistic" in policies
    gateway = yaml.safe_load((COLLECTOR / "gateway.yaml").read_text())
    assert "tail_sampling" not in gateway.get("processors", {}), "gateways must share the single policy set"
    for name in ("otelcol-config.yaml", "agent.yaml"):
        pipelines = yaml.safe_load((COLLECTOR / name).read_text())["service"]["pipelines"]
        for pipeline, spec in pipelines.items():
            assert spec["processors"][0] == "memory_limiter", f"{name} {pipeline}: memory_limiter must be first"


def test_traces_and_logs_backends_and_exemplars() -> None:
    """Sampled traces reach Jaeger over OTLP, logs VictoriaLogs' OTLP path (file fallback locally);
    latency buckets carry exemplars to Prometheus."""
    config = yaml.safe_load((COLLECTOR / "otelcol-config.yaml").read_text())
    assert config["service"]["pipelines"]["traces/sampled"]["exporters"] == ["otlp/jaeger"]
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "${env:OTELCOL_JAEGER_OTLP_ENDPOINT:-jaeger:4317}"
    logs = config["service"]["pipelines"]["logs"]
    assert logs["receivers"] == ["otlp"] and logs["processors"] == ["memory_limiter", "batch"]
    assert logs["exporters"] == ["otlphttp/victorialogs"]
    exporter = config["exporters"]["otlphttp/victorialogs"]
    assert exporter["logs_endpoint"].endswith("/insert/opentelemetry/v1/logs}") and "endpoint" not in exporter
    assert config["connectors"]["spanmetrics"]["exemplars"]["enabled"] is True
    assert config["exporters"]["prometheus"]["enable_open_metrics"] is True
    no_logs = yaml.safe_load((COLLECTOR / "local-no-logs.yaml").read_text())
    assert no_logs["service"]["pipelines"]["logs"]["exporters"] == ["file/logs"]
    no_traces = yaml.safe_load((COLLECTOR / "local-no-traces.yaml").read_text())
    assert no_traces["service"]["pipelines"]["traces/sampled"]["exporters"] == ["file/traces"]
    agent = yaml.safe_load((COLLECTOR / "agent.yaml").read_text())
    assert agent["service"]["pipelines"]["logs"]["exporters"] == ["loadbalancing/logs"]


def test_prometheus_config_valid_for_debian_prometheus() -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    result = subprocess.run(["promtool", "check", "config", "--syntax-only", str(ROOT / "prometheus/prometheus.yml")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_config_valid() -> None:
    if shutil.which("amtool") is None:
        pytest.skip("amtool not installed (apt-get install prometheus-alertmanager)")
    result = subprocess.run(["amtool", "check-config", str(ROOT / "alertmanager/alertmanager.yml")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scaled_out_series_stay_apart_and_expire() -> None:
    """Gateways label what they export with an identity of their own (two gateways compute span
    metrics for the same app process), keep the single collector's expiration (the liveness alerts
    depend on it), and span metrics of gone processes expire."""
    base = yaml.safe_load((COLLECTOR / "otelcol-config.yaml").read_text())
    gateway = yaml.safe_load((COLLECTOR / "gateway.yaml").read_text())
    labels = gateway["exporters"]["prometheus"]["const_labels"]
    assert labels["otelcol_gateway"] == "${env:OTELCOL_GATEWAY_ID:-${env:HOSTNAME}}"
    assert "metric_expiration" not in gateway["exporters"]["prometheus"], "a gateway must keep the 45s expiration"
    assert base["exporters"]["prometheus"]["metric_expiration"] == "45s"
    assert base["connectors"]["spanmetrics"]["metrics_expiration"] == "${env:OTELCOL_SPANMETRICS_EXPIRATION:-5m}"
    prometheus = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["otel-collector"]["honor_labels"] is True
    assert not jobs["otel-collector-self"].get("honor_labels"), "own metrics: instance = the collector scraped"
