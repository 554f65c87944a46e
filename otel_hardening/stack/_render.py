"""The repository's config files rendered for the local stack: the very files docker-compose mounts,
with listen addresses moved to free loopback ports, storage to the run directory, and nothing else
changed. Each renderer refuses a file it does not understand rather than guess."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_hardening.stack._process import StackError, free_port

OPTIONAL = ("jaeger", "victorialogs")
"""Components the stack can run without, when asked (``--without NAME``)."""

NO_BACKEND_OVERLAY = {"jaeger": "local-no-traces.yaml", "victorialogs": "local-no-logs.yaml"}
"""The collector overlay (collector/) that drops the exporter of a component left out."""

RULES_MOUNT = "/etc/prometheus-rules/"
"""Where prometheus.yml (and compose) expect the built rule files; the stack maps it to the checkout."""


@dataclass
class StackSettings:
    """Knobs of the local stack; the tests turn some down so that a run takes seconds, not minutes."""

    sampling_percentage: float = 10.0
    decision_wait: str = "10s"
    spanmetrics_flush_interval: str = "15s"
    scrape_interval: str | None = None
    """Every job's scrape interval; None keeps prometheus/prometheus.yml's."""
    evaluation_interval: str | None = None
    """Rule evaluation interval; None keeps prometheus/prometheus.yml's."""
    ready_timeout: float = 60.0
    without: frozenset[str] = frozenset()
    """Optional components (jaeger, victorialogs) not to start."""
    alert_webhook_url: str | None = None
    """Every Alertmanager webhook receiver's URL is replaced by this one (None: keep the file's)."""
    extra_collector_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Ports:
    otlp_grpc: int
    otlp_http: int
    health: int
    prom_exporter: int
    self_metrics: int
    prometheus: int
    alertmanager: int
    jaeger: int = 0
    """Jaeger's query API (HTTP)."""
    jaeger_grpc: int = 0
    jaeger_otlp: int = 0
    victorialogs: int = 0
    """VictoriaLogs' HTTP port: ingest, LogsQL queries and its web UI."""

    @classmethod
    def pick(cls) -> Ports:
        count = len(dataclasses.fields(cls))
        picked: set[int] = set()
        while len(picked) < count:
            picked.add(free_port())
        return cls(*sorted(picked))


@dataclass
class ScaleOutTargets:
    """The collector jobs' targets when agents run in front of gateways (collector/agent.yaml,
    gateway.yaml) instead of one collector: every gateway's prometheus exporter, and the own
    metrics of every collector, gateways and agents alike, told apart by ``otelcol_tier``."""

    exporters: list[str]
    self_metrics: dict[str, list[str]]
    """Tier (``gateway``, ``agent``) -> the own-metrics endpoints (host:port) of that tier."""


def collector_env(
    ports: Ports, traces_file: Path, settings: StackSettings, logs_file: Path | None = None
) -> dict[str, str]:
    """The ${env:...} values otelcol-config.yaml and local-overlay.yaml read, all on loopback."""
    env = {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports.otlp_grpc}",
        "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports.otlp_http}",
        "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{ports.health}",
        "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{ports.prom_exporter}",
        "OTELCOL_SELF_METRICS_HOST": "127.0.0.1",
        "OTELCOL_SELF_METRICS_PORT": str(ports.self_metrics),
        "OTELCOL_JAEGER_OTLP_ENDPOINT": f"127.0.0.1:{ports.jaeger_otlp}",
        "OTELCOL_VICTORIALOGS_LOGS_ENDPOINT":
            f"http://127.0.0.1:{ports.victorialogs}/insert/opentelemetry/v1/logs",
        "OTELCOL_TRACES_FILE": str(traces_file),
        "OTELCOL_LOGS_FILE": str(logs_file or traces_file.with_name(traces_file.stem + "-logs.jsonl")),
        "OTELCOL_SAMPLING_PERCENTAGE": f"{settings.sampling_percentage:g}",
        "OTELCOL_TAIL_DECISION_WAIT": settings.decision_wait,
        "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": settings.spanmetrics_flush_interval,
    }
    env.update(settings.extra_collector_env)
    return env


def load_yaml(path: Path) -> dict[str, Any]:
    import yaml  # optional dependency: pip install 'otel-hardening[dev]'

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise StackError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise StackError(f"{path}: expected a YAML mapping")
    return data


def render_prometheus_config(
    source: Path, ports: Ports, settings: StackSettings, rules_dir: Path,
    scale_out: ScaleOutTargets | None = None,
) -> dict[str, Any]:
    """prometheus/prometheus.yml with its targets on this stack's loopback ports (the collector
    jobs on ``scale_out``'s when given) and its rule files in ``rules_dir`` (the built
    dashboards/build/rules/)."""
    config = load_yaml(source)
    groups: dict[str, list[dict[str, Any]]] = {
        "otel-collector": [{"targets": [f"127.0.0.1:{ports.prom_exporter}"]}],
        "otel-collector-self": [{"targets": [f"127.0.0.1:{ports.self_metrics}"]}],
        "prometheus": [{"targets": [f"127.0.0.1:{ports.prometheus}"]}],
    }
    if scale_out is not None:
        groups["otel-collector"] = [{"targets": scale_out.exporters}]
        groups["otel-collector-self"] = [
            {"targets": targets, "labels": {"otelcol_tier": tier}}
            for tier, targets in scale_out.self_metrics.items()
        ]
    for job in config.get("scrape_configs", []):
        name = job.get("job_name")
        if name not in groups:
            raise StackError(f"{source}: the local stack does not know where job {name!r} scrapes")
        job["static_configs"] = groups[name]
        if settings.scrape_interval:
            job.pop("scrape_interval", None)
    config["alerting"] = {
        "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports.alertmanager}"]}]}]
    }
    rule_files = []
    for pattern in config.get("rule_files", []):
        if not str(pattern).startswith(RULES_MOUNT):
            raise StackError(f"{source}: the local stack does not know where rule files {pattern!r} are")
        rule_files.append(str(rules_dir / str(pattern).removeprefix(RULES_MOUNT)))
    config["rule_files"] = rule_files
    config.setdefault("global", {})
    if settings.scrape_interval:
        config["global"]["scrape_interval"] = settings.scrape_interval
    if settings.evaluation_interval:
        config["global"]["evaluation_interval"] = settings.evaluation_interval
    return config


def render_alertmanager_config(source: Path, webhook_url: str | None) -> dict[str, Any]:
    """alertmanager/alertmanager.yml, every webhook receiver pointed at ``webhook_url`` if given."""
    config = load_yaml(source)
    if webhook_url:
        for receiver in config.get("receivers", []):
            for webhook in receiver.get("webhook_configs", []) or []:
                webhook["url"] = webhook_url
    return config


def jaeger_env(ports: Ports) -> dict[str, str]:
    """The ${env:...} addresses jaeger/jaeger.yaml reads, on this stack's loopback ports."""
    return {
        "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports.jaeger_otlp}",
        "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{ports.jaeger}",
        "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{ports.jaeger_grpc}",
    }


DATASOURCE_UIDS = ("prometheus", "jaeger", "victorialogs", "alertmanager")
"""The provisioned data sources' fixed uids (dashboards refer to them); each is the component's name."""


def render_grafana_datasources(source: Path, urls: dict[str, str]) -> dict[str, Any]:
    """grafana/provisioning/datasources/datasources.yaml with each data source's URL taken from
    ``urls`` by uid; data sources whose uid is not there (a component left out) are dropped."""
    config = load_yaml(source)
    kept = []
    for datasource in config.get("datasources", []):
        uid = datasource.get("uid")
        if uid not in DATASOURCE_UIDS:
            raise StackError(f"{source}: the local stack does not know where data source {uid!r} is")
        if uid in urls:
            kept.append({**datasource, "url": urls[uid]})
    config["datasources"] = kept
    return config


def render_grafana_dashboards(source: Path, dashboards_dir: Path) -> dict[str, Any]:
    """grafana/provisioning/dashboards/dashboards.yaml reading ``dashboards_dir`` directly."""
    config = load_yaml(source)
    for provider in config.get("providers", []):
        provider.setdefault("options", {})["path"] = str(dashboards_dir)
    return config
