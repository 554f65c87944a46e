"""The local no-Docker stack: the built collector, Prometheus, Alertmanager, Jaeger and VictoriaLogs
on free loopback ports.

It runs the repository's own config files (collector/otelcol-config.yaml + local-overlay.yaml,
prometheus/prometheus.yml, alertmanager/alertmanager.yml, jaeger/jaeger.yaml), the same ones
docker-compose mounts, rendered to loopback ports and the run directory (see _render.py).
Grafana is not run here: grafana/provisioning/ is rendered into the run directory with this stack's
URLs, for a Grafana of the user's own.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from otel_hardening.stack import _render
from otel_hardening.stack._components import find_component
from otel_hardening.stack._paths import find_collector, repo_root, require_tool
from otel_hardening.stack._process import ManagedProcess, StackError, tail
from otel_hardening.stack._render import NO_BACKEND_OVERLAY, OPTIONAL, Ports, StackSettings, collector_env

_STATE = "stack.json"


class LocalStack:
    """Start, inspect and stop the stack whose state lives in ``run_dir``."""

    def __init__(
        self, run_dir: Path, root: Path | None = None, settings: StackSettings | None = None,
        collector_bin: Path | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.root = root or repo_root()
        self.settings = settings or StackSettings()
        self._collector_bin = collector_bin
        self.ports: Ports | None = None
        self.procs: dict[str, ManagedProcess] = {}

    # -- paths -------------------------------------------------------------------------------
    @property
    def traces_file(self) -> Path:
        return self.run_dir / "traces.jsonl"

    @property
    def logs_file(self) -> Path:
        return self.run_dir / "logs.jsonl"

    def runs(self, name: str) -> bool:
        """Whether this stack runs (or would run) the component ``name``."""
        return name not in self.settings.without

    @property
    def collector_configs(self) -> list[Path]:
        collector = self.root / "collector"
        configs = [collector / "otelcol-config.yaml", collector / "local-overlay.yaml"]
        configs += [collector / NO_BACKEND_OVERLAY[name] for name in OPTIONAL if not self.runs(name)]
        return configs

    @property
    def rules_dir(self) -> Path:
        return self.root / "dashboards" / "build" / "rules"

    @property
    def dashboards_dir(self) -> Path:
        return self.root / "dashboards" / "build" / "dashboards"

    def config_files(self) -> list[Path]:
        """Every repository file this stack runs (docker-compose mounts the same ones)."""
        grafana = self.root / "grafana"
        return [
            *self.collector_configs, self.root / "prometheus" / "prometheus.yml",
            self.root / "alertmanager" / "alertmanager.yml", self.jaeger_config,
            grafana / "provisioning" / "datasources" / "datasources.yaml",
            grafana / "provisioning" / "dashboards" / "dashboards.yaml",
            *sorted(self.rules_dir.glob("*.yaml")), *sorted(self.dashboards_dir.glob("*.json")),
        ]

    @property
    def jaeger_config(self) -> Path:
        return self.root / "jaeger" / "jaeger.yaml"

    @property
    def grafana_provisioning(self) -> Path:
        """grafana/provisioning/ rendered with this stack's URLs, for a Grafana of the user's own."""
        return self.run_dir / "grafana" / "provisioning"

    def _ports(self) -> Ports:
        if self.ports is None:
            raise StackError("the stack is not up")
        return self.ports

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._ports().otlp_grpc}"

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._ports().otlp_http}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self._ports().prometheus}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self._ports().alertmanager}"

    @property
    def jaeger_url(self) -> str:
        """Jaeger's query API (``/api/traces``, ``/api/services``); it serves no web UI."""
        return f"http://127.0.0.1:{self._ports().jaeger}"

    @property
    def victorialogs_url(self) -> str:
        """VictoriaLogs: LogsQL at ``/select/logsql/query``, its web UI at ``/select/vmui/``."""
        return f"http://127.0.0.1:{self._ports().victorialogs}"

    def urls(self) -> dict[str, str]:
        """What ``up`` prints: every endpoint of the components that run."""
        urls = {
            "OTLP gRPC": self.otlp_grpc_endpoint, "OTLP HTTP": self.otlp_http_endpoint,
            "prometheus": self.prometheus_url, "alertmanager": self.alertmanager_url,
        }
        if self.runs("jaeger"):
            urls["jaeger API"] = f"{self.jaeger_url}/api/traces"
        if self.runs("victorialogs"):
            urls["logs API"] = f"{self.victorialogs_url}/select/logsql/query"
            urls["logs web UI"] = f"{self.victorialogs_url}/select/vmui/"
        return urls

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self, build: bool = False) -> None:
        if (self.run_dir / _STATE).exists():
            raise StackError(f"a stack is already recorded in {self.run_dir}: run `down` first")
        unknown = set(self.settings.without) - set(OPTIONAL)
        if unknown:
            raise StackError(
                f"cannot run without {', '.join(sorted(unknown))}: only {', '.join(OPTIONAL)} are optional"
            )
        collector_bin = self._collector_bin or find_collector(self.root, build=build)
        prometheus = require_tool("prometheus")
        alertmanager = shutil.which("prometheus-alertmanager") or require_tool("alertmanager")
        binaries: dict[str, Path] = {}
        for name in OPTIONAL:
            if self.runs(name):
                try:
                    binaries[name] = find_component(name)
                except StackError as exc:
                    raise StackError(f"{exc}; or start the stack without it: --without {name}") from None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ports = ports = Ports.pick()
        try:
            self._start_alertmanager(alertmanager, ports)
            if "victorialogs" in binaries:
                self._start_victorialogs(binaries["victorialogs"], ports)
            if "jaeger" in binaries:
                self._start_jaeger(binaries["jaeger"], ports)
            self._start_prometheus(prometheus, ports)
            self.start_collector(collector_bin)
            self._render_grafana_provisioning()
            for proc in self.procs.values():
                proc.wait_ready(self.settings.ready_timeout)
        except BaseException:
            self.down()
            raise
        self._save()

    def start_collector(self, collector_bin: Path | None = None) -> None:
        """(Re)start the collector on the same ports, appending to the same log and traces file."""
        ports = self._ports()
        if collector_bin is None:
            old = self.procs.get("collector")
            collector_bin = Path(old.argv[0]) if old else find_collector(self.root)
        argv = [str(collector_bin)]
        for config in self.collector_configs:
            argv += ["--config", str(config)]
        self.procs["collector"] = ManagedProcess.start(
            "collector", argv, self.run_dir / "collector.log",
            f"http://127.0.0.1:{ports.health}/",
            env=collector_env(ports, self.traces_file, self.settings, self.logs_file),
        )
        if (self.run_dir / _STATE).exists():
            self._save()

    def restart_jaeger(self) -> None:
        """Start a stopped Jaeger again on the same ports (the e2e tests stop it to break an exporter)."""
        old = self.procs["jaeger"]
        self._start_jaeger(Path(old.argv[0]), self._ports())
        self.procs["jaeger"].wait_ready(self.settings.ready_timeout)
        if (self.run_dir / _STATE).exists():
            self._save()

    def wait_collector_ready(self) -> None:
        self.procs["collector"].wait_ready(self.settings.ready_timeout)

    def kill_collector(self) -> None:
        self.procs["collector"].kill()

    def _write(self, name: str, config: Mapping[str, Any]) -> Path:
        path = self.run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    def _start_prometheus(self, binary: str, ports: Ports) -> None:
        config = _render.render_prometheus_config(
            self.root / "prometheus" / "prometheus.yml", ports, self.settings, self.rules_dir
        )
        path = self._write("prometheus.yml", config)
        self.procs["prometheus"] = ManagedProcess.start(
            "prometheus",
            [binary, f"--config.file={path}", f"--storage.tsdb.path={self.run_dir / 'prometheus-data'}",
             f"--web.listen-address=127.0.0.1:{ports.prometheus}", "--enable-feature=exemplar-storage"],
            self.run_dir / "prometheus.log", f"http://127.0.0.1:{ports.prometheus}/-/ready",
        )

    def _start_alertmanager(self, binary: str, ports: Ports) -> None:
        config = _render.render_alertmanager_config(
            self.root / "alertmanager" / "alertmanager.yml", self.settings.alert_webhook_url
        )
        path = self._write("alertmanager.yml", config)
        self.procs["alertmanager"] = ManagedProcess.start(
            "alertmanager",
            [binary, f"--config.file={path}", f"--storage.path={self.run_dir / 'alertmanager-data'}",
             f"--web.listen-address=127.0.0.1:{ports.alertmanager}", "--cluster.listen-address="],
            self.run_dir / "alertmanager.log", f"http://127.0.0.1:{ports.alertmanager}/-/ready",
        )

    def _start_jaeger(self, binary: Path, ports: Ports) -> None:
        # The checkout's jaeger/jaeger.yaml as is: it reads its addresses from the environment.
        self.procs["jaeger"] = ManagedProcess.start(
            "jaeger", [str(binary), "--config", str(self.jaeger_config)], self.run_dir / "jaeger.log",
            f"{self.jaeger_url}/api/services", env=_render.jaeger_env(ports), cwd=self.run_dir,
        )

    def _start_victorialogs(self, binary: Path, ports: Ports) -> None:
        self.procs["victorialogs"] = ManagedProcess.start(
            "victorialogs",
            [str(binary), f"-storageDataPath={self.run_dir / 'victorialogs-data'}",
             f"-httpListenAddr=127.0.0.1:{ports.victorialogs}"],
            self.run_dir / "victorialogs.log", f"{self.victorialogs_url}/health", cwd=self.run_dir,
        )

    def _render_grafana_provisioning(self) -> None:
        urls = {"prometheus": self.prometheus_url, "alertmanager": self.alertmanager_url}
        urls |= {name: getattr(self, f"{name}_url") for name in OPTIONAL if self.runs(name)}
        source = self.root / "grafana" / "provisioning"
        target = self.grafana_provisioning.relative_to(self.run_dir)
        self._write(str(target / "datasources" / "datasources.yaml"),
                    _render.render_grafana_datasources(source / "datasources" / "datasources.yaml", urls))
        self._write(str(target / "dashboards" / "dashboards.yaml"),
                    _render.render_grafana_dashboards(source / "dashboards" / "dashboards.yaml",
                                                      self.dashboards_dir))

    def down(self) -> None:
        """Stop what this stack started (by recorded pid), newest first; keep the logs."""
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        self.procs.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / _STATE).unlink()

    def status(self) -> dict[str, str]:
        return {name: ("ready" if p.ready() else "running" if p.running() else "stopped")
                for name, p in self.procs.items()}

    def logs(self, lines: int = 40) -> str:
        return "\n".join(
            f"===== {name} ({p.log}) =====\n{tail(p.log, lines)}" for name, p in self.procs.items()
        )

    # -- state -------------------------------------------------------------------------------
    def _save(self) -> None:
        state = {
            "root": str(self.root), "ports": vars(self._ports()),
            "without": sorted(self.settings.without),
            "traces_file": str(self.traces_file), "logs_file": str(self.logs_file),
            "procs": {name: p.to_json() for name, p in self.procs.items()},
        }
        (self.run_dir / _STATE).write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> LocalStack:
        path = run_dir / _STATE
        try:
            state: Mapping[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            raise StackError(f"no stack recorded in {run_dir}") from None
        settings = StackSettings(without=frozenset(state.get("without", [])))
        stack = cls(run_dir, root=Path(state["root"]), settings=settings)
        stack.ports = Ports(**state["ports"])
        stack.procs = {name: ManagedProcess.from_json(p) for name, p in state["procs"].items()}
        return stack


@contextlib.contextmanager
def local_stack(run_dir: Path, **kwargs: Any) -> Iterator[LocalStack]:
    """``with local_stack(tmp) as stack:`` — up, then down whatever happens."""
    stack = LocalStack(run_dir, **kwargs)
    stack.up()
    try:
        yield stack
    finally:
        stack.down()
