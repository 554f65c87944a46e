"""The local stack renders the repository's own config files (the ones compose mounts) to loopback
ports and its run directory, and changes nothing else; it refuses what it does not understand."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from otel_hardening.stack import LocalStack, Ports, StackError, StackSettings, _render, find_component
from tests.e2e.conftest import ROOT


@pytest.fixture
def ports() -> Ports:
    return Ports.pick()


def test_ports_are_distinct(ports: Ports) -> None:
    values = list(vars(ports).values())
    assert len(set(values)) == len(values) and 0 not in values


def test_prometheus_rules_targets_and_intervals(ports: Ports, tmp_path: Path) -> None:
    source = ROOT / "prometheus/prometheus.yml"
    original = yaml.safe_load(source.read_text())
    rules = tmp_path / "rules"
    config = _render.render_prometheus_config(source, ports, StackSettings(), rules)
    assert config["rule_files"] == [str(rules / "*.yaml")]
    assert config["global"] == original["global"], "intervals kept unless asked"
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["otel-collector"]["static_configs"] == [{"targets": [f"127.0.0.1:{ports.prom_exporter}"]}]
    assert jobs["otel-collector"]["scrape_interval"] == "5s"
    fast = _render.render_prometheus_config(source, ports, StackSettings(scrape_interval="1s",
                                                                         evaluation_interval="2s"), rules)
    assert fast["global"]["scrape_interval"] == "1s" and fast["global"]["evaluation_interval"] == "2s"
    assert all("scrape_interval" not in j for j in fast["scrape_configs"])


def test_prometheus_unknown_job_or_rules_refused(ports: Ports, tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
    config["scrape_configs"].append({"job_name": "mystery", "static_configs": [{"targets": ["x:1"]}]})
    source = tmp_path / "prometheus.yml"
    source.write_text(yaml.safe_dump(config))
    with pytest.raises(StackError, match="mystery"):
        _render.render_prometheus_config(source, ports, StackSettings(), tmp_path)
    config["scrape_configs"].pop()
    config["rule_files"] = ["/somewhere/else/*.yml"]
    source.write_text(yaml.safe_dump(config))
    with pytest.raises(StackError, match="/somewhere/else"):
        _render.render_prometheus_config(source, ports, StackSettings(), tmp_path)


def test_alertmanager_webhooks_rewritten_routes_kept() -> None:
    source = ROOT / "alertmanager/alertmanager.yml"
    original = yaml.safe_load(source.read_text())
    kept = _render.render_alertmanager_config(source, None)
    assert kept == original
    config = _render.render_alertmanager_config(source, "http://127.0.0.1:1/hook")
    urls = [w["url"] for r in config["receivers"] for w in r.get("webhook_configs", [])]
    assert urls and set(urls) == {"http://127.0.0.1:1/hook"}
    assert config["route"] == original["route"]


def test_grafana_datasources_by_uid(tmp_path: Path) -> None:
    source = ROOT / "grafana/provisioning/datasources/datasources.yaml"
    original = {d["uid"]: d for d in yaml.safe_load(source.read_text())["datasources"]}
    assert set(original) == set(_render.DATASOURCE_UIDS)
    urls = {"prometheus": "http://127.0.0.1:1", "alertmanager": "http://127.0.0.1:2", "jaeger": "http://127.0.0.1:3"}
    config = _render.render_grafana_datasources(source, urls)
    rendered = {d["uid"]: d for d in config["datasources"]}
    assert set(rendered) == set(urls), "a component left out (victorialogs) loses its data source"
    for uid, datasource in rendered.items():
        assert datasource["url"] == urls[uid]
        assert {k: v for k, v in datasource.items() if k != "url"} == \
            {k: v for k, v in original[uid].items() if k != "url"}


def test_jaeger_config_on_loopback_from_env(ports: Ports) -> None:
    """jaeger/jaeger.yaml as compose and the local stack run it: loopback by default, OTLP/gRPC in, the
    memory store, no self-tracing, and no port beyond those the stack sets."""
    config = yaml.safe_load((ROOT / "jaeger/jaeger.yaml").read_text())
    query = config["extensions"]["jaeger_query"]
    assert query["enable_tracing"] is False
    assert list(config["receivers"]) == ["otlp"] and list(config["receivers"]["otlp"]["protocols"]) == ["grpc"]
    assert config["service"]["extensions"] == ["jaeger_storage", "jaeger_query"]
    assert config["service"]["telemetry"]["metrics"]["level"] == "none"
    assert "memory" in config["extensions"]["jaeger_storage"]["backends"][query["storage"]["traces"]]
    endpoints = [query["http"]["endpoint"], query["grpc"]["endpoint"],
                 config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]]
    env = _render.jaeger_env(ports)
    for endpoint in endpoints:
        name, default = endpoint.removeprefix("${env:").removesuffix("}").split(":-")
        assert default.startswith("127.0.0.1:"), endpoint
        assert env[name].startswith("127.0.0.1:"), name
    assert set(env) == {e.removeprefix("${env:").split(":-")[0] for e in endpoints}


def test_without_adds_the_file_only_overlays(tmp_path: Path) -> None:
    full = LocalStack(tmp_path, root=ROOT)
    assert [p.name for p in full.collector_configs] == ["otelcol-config.yaml", "local-overlay.yaml"]
    lean = LocalStack(tmp_path, root=ROOT, settings=StackSettings(without=frozenset({"jaeger", "victorialogs"})))
    assert [p.name for p in lean.collector_configs][2:] == ["local-no-traces.yaml", "local-no-logs.yaml"]
    no_logs = LocalStack(tmp_path, root=ROOT, settings=StackSettings(without=frozenset({"victorialogs"})))
    assert [p.name for p in no_logs.collector_configs][2:] == ["local-no-logs.yaml"]
    bogus = LocalStack(tmp_path / "x", root=ROOT, settings=StackSettings(without=frozenset({"prometheus"})))
    with pytest.raises(StackError, match="only jaeger, victorialogs are optional"):
        bogus.up()


def test_component_binary_from_env_or_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "jaeger"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("OTEL_HARDENING_JAEGER_BIN", str(fake))
    assert find_component("jaeger") == fake
    monkeypatch.setenv("OTEL_HARDENING_JAEGER_BIN", str(tmp_path / "nope"))
    with pytest.raises(StackError, match=r"OTEL_HARDENING_JAEGER_BIN=.*not an executable"):
        find_component("jaeger")
    monkeypatch.delenv("OTEL_HARDENING_JAEGER_BIN")
    monkeypatch.setenv("OTELCOL_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(StackError, match=r"build-component.sh victorialogs"):
        find_component("victorialogs")
    with pytest.raises(StackError, match="unknown component"):
        find_component("nginx")
    assert os.environ.get("OTEL_HARDENING_JAEGER_BIN") is None

