"""The repository's config files rendered for the local stack: the very files docker-compose mounts,
with listen addresses moved to free loopback ports, storage to the run directory, and nothing else
changed. Each renderer refuses a file it does not understand rather than guess."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_hardening.stack._process import StackError, free_port

OPTIONAL = ("tempo", "loki", "grafana")
"""Components the stack can run without, when asked (``--without NAME``)."""

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
    grafana_ready_timeout: float = 180.0
    """Grafana migrates its database on the first start: slow on a busy machine."""
    without: frozenset[str] = frozenset()
    """Optional components (tempo, loki, grafana) not to start."""
    alert_webhook_url: str | None = None
    """Every Alertmanager webhook receiver's URL is replaced by this one (None: keep the file's)."""
    grafana_admin_password: str | None = None
    """None: $GRAFANA_ADMIN_PASSWORD, else one generated for the run and printed by ``up``."""
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
    tempo_http: int = 0
    tempo_grpc: int = 0
    tempo_otlp: int = 0
    tempo_memberlist: int = 0
    loki_http: int = 0
    loki_grpc: int = 0
    grafana: int = 0

    @classmethod
    def pick(cls) -> Ports:
        count = len(dataclasses.fields(cls))
        picked: set[int] = set()
        while len(picked) < count:
            picked.add(free_port())
        return cls(*sorted(picked))


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
        "OTELCOL_TEMPO_OTLP_ENDPOINT": f"127.0.0.1:{ports.tempo_otlp}",
        "OTELCOL_LOKI_OTLP_ENDPOINT": f"http://127.0.0.1:{ports.loki_http}/otlp",
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
    source: Path, ports: Ports, settings: StackSettings, rules_dir: Path
) -> dict[str, Any]:
    """prometheus/prometheus.yml with its targets on this stack's loopback ports and its rule files
    in ``rules_dir`` (the built dashboards/build/rules/)."""
    config = load_yaml(source)
    targets = {
        "otel-collector": f"127.0.0.1:{ports.prom_exporter}",
        "otel-collector-self": f"127.0.0.1:{ports.self_metrics}",
        "prometheus": f"127.0.0.1:{ports.prometheus}",
    }
    for job in config.get("scrape_configs", []):
        name = job.get("job_name")
        if name not in targets:
            raise StackError(f"{source}: the local stack does not know where job {name!r} scrapes")
        job["static_configs"] = [{"targets": [targets[name]]}]
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


def render_tempo_config(source: Path, ports: Ports, data_dir: Path) -> dict[str, Any]:
    """grafana/tempo/tempo.yaml on loopback, storage under ``data_dir``."""
    config = load_yaml(source)
    server = config.setdefault("server", {})
    server.update({
        "http_listen_address": "127.0.0.1", "http_listen_port": ports.tempo_http,
        "grpc_listen_address": "127.0.0.1", "grpc_listen_port": ports.tempo_grpc,
    })
    try:
        protocols = config["distributor"]["receivers"]["otlp"]["protocols"]
    except (KeyError, TypeError):
        raise StackError(f"{source}: no distributor.receivers.otlp.protocols to move to loopback") from None
    protocols.pop("http", None)
    protocols["grpc"] = {**(protocols.get("grpc") or {}), "endpoint": f"127.0.0.1:{ports.tempo_otlp}"}
    config["memberlist"] = {
        "bind_addr": ["127.0.0.1"], "bind_port": ports.tempo_memberlist, "join_members": [],
    }
    storage = config.setdefault("storage", {}).setdefault("trace", {})
    storage["backend"] = "local"
    storage["wal"] = {**(storage.get("wal") or {}), "path": str(data_dir / "wal")}
    storage["local"] = {**(storage.get("local") or {}), "path": str(data_dir / "blocks")}
    return config


def render_loki_config(source: Path, ports: Ports, data_dir: Path) -> dict[str, Any]:
    """grafana/loki/loki.yaml on loopback, storage under ``data_dir``."""
    config = load_yaml(source)
    config.setdefault("server", {}).update({
        "http_listen_address": "127.0.0.1", "http_listen_port": ports.loki_http,
        "grpc_listen_address": "127.0.0.1", "grpc_listen_port": ports.loki_grpc,
    })
    common = config.setdefault("common", {})
    common["instance_addr"] = "127.0.0.1"
    common["path_prefix"] = str(data_dir)
    common["storage"] = {"filesystem": {
        "chunks_directory": str(data_dir / "chunks"), "rules_directory": str(data_dir / "rules"),
    }}
    # Answer /ready as soon as the ingester has joined its (in-memory) ring, not 15 s later.
    config.setdefault("ingester", {}).setdefault("lifecycler", {})["min_ready_duration"] = "0s"
    return config


def render_grafana_datasources(source: Path, urls: dict[str, str]) -> dict[str, Any]:
    """grafana/provisioning/datasources/datasources.yaml with each data source's URL taken from
    ``urls`` by uid; data sources whose uid is not there (a component left out) are dropped."""
    config = load_yaml(source)
    kept = []
    for datasource in config.get("datasources", []):
        uid = datasource.get("uid")
        if uid not in {"prometheus", "tempo", "loki", "alertmanager"}:
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


def grafana_ini(port: int, grafana_dir: Path) -> str:
    """Grafana's custom.ini for the local stack. No password in it: the admin password is passed in
    the environment of the Grafana process only."""
    return f"""\
# Rendered by otel_hardening.stack for this run; the admin password is not in this file.
[server]
http_addr = 127.0.0.1
http_port = {port}
root_url = http://127.0.0.1:{port}/

[paths]
data = {grafana_dir / "data"}
logs = {grafana_dir / "logs"}
plugins = {grafana_dir / "plugins"}
provisioning = {grafana_dir / "provisioning"}

[log]
mode = console

[analytics]
reporting_enabled = false
check_for_updates = false
check_for_plugin_updates = false

[security]
admin_user = admin
disable_gravatar = true

[users]
allow_sign_up = false

[auth.anonymous]
enabled = true
org_role = Viewer

[unified_alerting]
enabled = false

[alerting]
enabled = false

[plugins]
preinstall_disabled = true
"""
