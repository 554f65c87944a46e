"""The local no-Docker stack: the built collector, Prometheus and Alertmanager on free loopback ports.

It runs the repository's own config files (collector/otelcol-config.yaml + local-overlay.yaml,
prometheus/prometheus.yml, alertmanager/alertmanager.yml), the same ones docker-compose mounts.
Tempo is not installable without Docker, so sampled traces go to a JSON-lines file.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_hardening.stack._paths import find_collector, repo_root, require_tool
from otel_hardening.stack._process import ManagedProcess, StackError, free_port, tail

_STATE = "stack.json"


@dataclass
class StackSettings:
    """Knobs the tests turn down so that a run takes seconds, not minutes."""

    sampling_percentage: float = 10.0
    decision_wait: str = "10s"
    spanmetrics_flush_interval: str = "15s"
    scrape_interval: str = "15s"
    ready_timeout: float = 60.0
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

    @classmethod
    def pick(cls) -> Ports:
        picked: set[int] = set()
        while len(picked) < 7:
            picked.add(free_port())
        return cls(*sorted(picked))


def collector_env(ports: Ports, traces_file: Path, settings: StackSettings) -> dict[str, str]:
    """The ${env:...} values otelcol-config.yaml reads, all on loopback."""
    env = {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports.otlp_grpc}",
        "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports.otlp_http}",
        "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{ports.health}",
        "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{ports.prom_exporter}",
        "OTELCOL_SELF_METRICS_HOST": "127.0.0.1",
        "OTELCOL_SELF_METRICS_PORT": str(ports.self_metrics),
        "OTELCOL_TRACES_FILE": str(traces_file),
        "OTELCOL_SAMPLING_PERCENTAGE": f"{settings.sampling_percentage:g}",
        "OTELCOL_TAIL_DECISION_WAIT": settings.decision_wait,
        "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": settings.spanmetrics_flush_interval,
    }
    env.update(settings.extra_collector_env)
    return env


def render_prometheus_config(source: Path, ports: Ports, settings: StackSettings) -> dict[str, Any]:
    """prometheus/prometheus.yml with its targets moved to this stack's loopback ports."""
    import yaml  # optional dependency: pip install 'otel-hardening[dev]'

    config: dict[str, Any] = yaml.safe_load(source.read_text())
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
    config["alerting"] = {
        "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports.alertmanager}"]}]}]
    }
    config["rule_files"] = [str(source.parent / rule) for rule in config.get("rule_files", [])]
    config.setdefault("global", {})
    config["global"]["scrape_interval"] = settings.scrape_interval
    config["global"]["evaluation_interval"] = settings.scrape_interval
    return config


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
    def collector_configs(self) -> list[Path]:
        collector = self.root / "collector"
        return [collector / "otelcol-config.yaml", collector / "local-overlay.yaml"]

    def config_files(self) -> list[Path]:
        """Every repository config file this stack runs (docker-compose mounts the same ones)."""
        return [
            *self.collector_configs, self.root / "prometheus" / "prometheus.yml",
            self.root / "alertmanager" / "alertmanager.yml",
        ]

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

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self, build: bool = False) -> None:
        if (self.run_dir / _STATE).exists():
            raise StackError(f"a stack is already recorded in {self.run_dir}: run `down` first")
        collector_bin = self._collector_bin or find_collector(self.root, build=build)
        prometheus = require_tool("prometheus")
        alertmanager = shutil.which("prometheus-alertmanager") or require_tool("alertmanager")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ports = ports = Ports.pick()
        try:
            self._start_alertmanager(alertmanager, ports)
            self._start_prometheus(prometheus, ports)
            self.start_collector(collector_bin)
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
            env=collector_env(ports, self.traces_file, self.settings),
        )
        if (self.run_dir / _STATE).exists():
            self._save()

    def wait_collector_ready(self) -> None:
        self.procs["collector"].wait_ready(self.settings.ready_timeout)

    def kill_collector(self) -> None:
        self.procs["collector"].kill()

    def _start_prometheus(self, binary: str, ports: Ports) -> None:
        config = render_prometheus_config(self.root / "prometheus" / "prometheus.yml", ports, self.settings)
        path = self.run_dir / "prometheus.yml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.procs["prometheus"] = ManagedProcess.start(
            "prometheus",
            [binary, f"--config.file={path}", f"--storage.tsdb.path={self.run_dir / 'prometheus-data'}",
             f"--web.listen-address=127.0.0.1:{ports.prometheus}"],
            self.run_dir / "prometheus.log", f"http://127.0.0.1:{ports.prometheus}/-/ready",
        )

    def _start_alertmanager(self, binary: str, ports: Ports) -> None:
        config = self.root / "alertmanager" / "alertmanager.yml"
        self.procs["alertmanager"] = ManagedProcess.start(
            "alertmanager",
            [binary, f"--config.file={config}", f"--storage.path={self.run_dir / 'alertmanager-data'}",
             f"--web.listen-address=127.0.0.1:{ports.alertmanager}", "--cluster.listen-address="],
            self.run_dir / "alertmanager.log", f"http://127.0.0.1:{ports.alertmanager}/-/ready",
        )

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
            "traces_file": str(self.traces_file),
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
        stack = cls(run_dir, root=Path(state["root"]))
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
