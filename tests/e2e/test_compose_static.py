"""docker-compose.yml, validated without a Docker engine: the compose v2 CLI accepts it (`config -q`),
it mounts only files that exist, pins its images, publishes only on loopback, and mounts the very
configs the local stack runs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_hardening.stack import LocalStack, find_component
from tests.e2e.conftest import skip_without

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2] if isinstance(volume, str) else (volume["source"], volume["target"])
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def test_compose_cli_accepts_the_file() -> None:
    """The compose v2 CLI's own model and interpolation (`config -q` needs no engine), with the
    variables .env.example sets: what `docker compose up` would refuse, this refuses."""
    skip_without("docker-compose")
    compose_bin = find_component("docker-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    result = subprocess.run([str(compose_bin), "-f", str(COMPOSE), "--env-file", str(ROOT / ".env.example"),
                             "config", "-q"], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    without_env = subprocess.run([str(compose_bin), "-f", str(COMPOSE), "--env-file", os.devnull, "config", "-q"],
                                 capture_output=True, text=True, timeout=120, cwd=ROOT, env=env, check=False)
    assert without_env.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in without_env.stderr, without_env.stderr


def test_services(compose: dict[str, Any]) -> None:
    assert {"collector", "prometheus", "alertmanager", "jaeger", "victorialogs", "grafana", "demo"} <= \
        set(compose["services"])
    assert not {"tempo", "loki"} & set(compose["services"])


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    missing = []
    for name, service in compose["services"].items():
        for source, _ in _bind_mounts(service):
            rel = Path(source).as_posix().removeprefix("./")
            if not (ROOT / rel).exists():
                missing.append(f"{name}: {source}")
    assert not missing, f"mounted paths missing from the repo: {missing}"
    # The mixin's build output: something to provision and to load.
    assert list((ROOT / "dashboards/build/dashboards").glob("*.json")), "no built dashboards to mount"
    assert list((ROOT / "dashboards/build/rules").glob("*.yaml")), "no built rule files to mount"


def test_images_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"{name}: no image"
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: image {image} is not pinned to a version"


def test_build_base_image_pinned() -> None:
    froms = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert froms and all(re.search(r":\d+\.\d+\.\d+", f) for f in froms), froms


def test_ports_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: port {port} not on loopback"


def test_healthchecks_and_depends_on(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dep, spec in service.get("depends_on", {}).items():
            condition = spec["condition"]
            assert condition in {"service_started", "service_healthy"}, (name, dep)
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy, which has none"
    for name in ("prometheus", "alertmanager", "grafana", "demo"):
        assert "healthcheck" in services[name], name


def test_grafana_has_no_default_admin_password(compose: dict[str, Any]) -> None:
    env = compose["services"]["grafana"]["environment"]
    password = env["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?"), "the admin password must come from .env, no default"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    example = (ROOT / ".env.example").read_text()
    assert "GRAFANA_ADMIN_PASSWORD=" in example and "admin/admin" not in example


def test_grafana_datasources_have_fixed_uids(compose: dict[str, Any]) -> None:
    data = yaml.safe_load((ROOT / "grafana/provisioning/datasources/datasources.yaml").read_text())
    by_uid = {d["uid"]: d for d in data["datasources"]}
    assert {d["type"]: d["uid"] for d in data["datasources"]} == {
        "prometheus": "prometheus", "jaeger": "jaeger", "victoriametrics-logs-datasource": "victorialogs",
        "alertmanager": "alertmanager"}
    # Trace links: exemplars -> Jaeger, spans -> their logs in VictoriaLogs, log records -> Jaeger.
    exemplars = by_uid["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert exemplars == [{"name": "trace_id", "datasourceUid": "jaeger", "urlDisplayLabel": "Open trace in Jaeger"}]
    to_logs = by_uid["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert to_logs["datasourceUid"] == "victorialogs" and to_logs["customQuery"] is True
    # $$ is the provisioning file's escape for a literal $ (Grafana expands $VAR from its environment).
    assert to_logs["query"] == 'trace_id:="$${__trace.traceId}"'
    assert [f["datasourceUid"] for f in by_uid["victorialogs"]["jsonData"]["derivedFields"]] == ["jaeger"]
    # Each data source's compose URL names a service of the compose file, on the port it listens on.
    for uid, datasource in by_uid.items():
        host, port = datasource["url"].removeprefix("http://").split(":")
        published = [str(p).split("#")[0].strip() for p in compose["services"][host].get("ports", [])]
        assert any(p.endswith(f":{port}") for p in published), (uid, port, published)
    # The logs data source is a plugin: the compose Grafana installs it.
    grafana_env = compose["services"]["grafana"]["environment"]
    assert "victoriametrics-logs-datasource" in grafana_env["GF_INSTALL_PLUGINS"].split(",")


def test_rules_and_exemplars_wired(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    config = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
    mounts = dict(_bind_mounts(prometheus))
    rules_target = mounts["./dashboards/build/rules"]
    assert config["rule_files"] == [f"{rules_target}/*.yaml"]
    assert "--enable-feature=exemplar-storage" in prometheus["command"]
    assert compose["services"]["demo"]["environment"]["OTEL_METRIC_EXPORT_INTERVAL"] == "5000"


def test_compose_mounts_the_configs_the_local_stack_runs(compose: dict[str, Any], tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, root=ROOT)
    runs = {p.resolve() for p in stack.config_files()}
    services = compose["services"]
    mounted: dict[str, set[Path]] = {}
    for name in ("collector", "prometheus", "alertmanager", "jaeger", "grafana"):
        files: set[Path] = set()
        for source, _target in _bind_mounts(services[name]):
            path = (ROOT / source).resolve()
            files |= {p for p in path.iterdir() if p.suffix in {".yml", ".yaml", ".json"}} if path.is_dir() else {path}
        mounted[name] = files
        assert files, f"{name} mounts no config"
        assert files <= runs, f"{name} mounts configs the local stack does not run: {files - runs}"
    # ... and the files the services are told to load are among them.
    assert "--config=/etc/otelcol/otelcol-config.yaml" in services["collector"]["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in services["alertmanager"]["command"]
    assert services["jaeger"]["command"] == ["--config", "/etc/jaeger/jaeger.yaml"]
