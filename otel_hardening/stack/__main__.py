"""``python -m otel_hardening.stack up|down|status``: see the package docstring."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from otel_hardening.stack._process import StackError
from otel_hardening.stack._render import OPTIONAL, StackSettings
from otel_hardening.stack._stack import LocalStack


def _default_run_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "otel-hardening" / "stack"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m otel_hardening.stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--run-dir", type=Path, default=_default_run_dir(),
                        help="state, data and logs (default: %(default)s)")
    parser.add_argument("--build", action="store_true", help="build the collector first if not cached")
    parser.add_argument("--sampling-percentage", type=float, default=10.0,
                        help="share of plain-success traces kept by tail sampling (default: %(default)s)")
    parser.add_argument("--decision-wait", default="10s", help="tail-sampling decision_wait")
    parser.add_argument("--scrape-interval", default=None,
                        help="every Prometheus job's scrape interval (default: prometheus.yml's)")
    parser.add_argument("--evaluation-interval", default=None,
                        help="Prometheus rule evaluation interval (default: prometheus.yml's)")
    parser.add_argument("--without", action="append", choices=OPTIONAL, default=[], metavar="NAME",
                        help=f"do not start this component ({', '.join(OPTIONAL)}); repeatable")
    parser.add_argument("--alert-webhook-url", default=None,
                        help="send every Alertmanager webhook receiver's notifications here")
    args = parser.parse_args(argv)
    run_dir: Path = args.run_dir
    try:
        if args.command == "up":
            settings = StackSettings(
                sampling_percentage=args.sampling_percentage, decision_wait=args.decision_wait,
                scrape_interval=args.scrape_interval, evaluation_interval=args.evaluation_interval,
                without=frozenset(args.without), alert_webhook_url=args.alert_webhook_url,
            )
            stack = LocalStack(run_dir, settings=settings)
            stack.up(build=args.build)
            print(f"OTEL_EXPORTER_OTLP_ENDPOINT={stack.otlp_grpc_endpoint}")
            for name, url in stack.urls().items():
                print(f"{name + ':':14}{url}")
            if stack.runs("jaeger"):
                print(f"{'':14}Jaeger: search by exact tag, /api/traces?service=NAME&tags={{\"k\":\"v\"}}; "
                      "this build serves no web UI (its / is a placeholder): browse traces in Grafana")
            print(f"{'grafana:':14}not run here: it runs in the compose stack (docker compose up), or in your "
                  f"own Grafana provisioned from {stack.grafana_provisioning} (this stack's URLs; the "
                  "logs data source needs the victoriametrics-logs-datasource plugin)")
            print(f"{'copies:':14}{stack.traces_file}, {stack.logs_file}")
            print(f"{'process logs:':14}{run_dir}/*.log")
        elif args.command == "down":
            stack = LocalStack.load(run_dir)
            stack.down()
            print(f"stopped; logs kept in {run_dir}")
        else:
            stack = LocalStack.load(run_dir)
            states = stack.status()
            for name, state in states.items():
                print(f"{name:13} {state:8} pid {stack.procs[name].pid}  log {stack.procs[name].log}")
            return 0 if all(s == "ready" for s in states.values()) else 1
    except StackError as exc:
        print(f"otel_hardening.stack: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a run directory that cannot be written
        print(f"otel_hardening.stack: {exc.strerror or exc}: {exc.filename or run_dir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
