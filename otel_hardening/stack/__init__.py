"""The local observability stack, without Docker: the collector built from collector/builder-config.yaml,
Prometheus and Alertmanager from the distribution's packages, Jaeger (traces) and VictoriaLogs (logs)
built from their Go modules (tools/build-component.sh), on free loopback ports. Grafana is not run
here: it runs in the compose stack, or in the user's own Grafana provisioned from grafana/provisioning/
(``up`` renders a copy with this stack's URLs into the run directory).

Command line (state and logs in ``--run-dir``, default
``${XDG_STATE_HOME:-~/.local/state}/otel-hardening/stack``)::

    python -m otel_hardening.stack up [--build] [--without jaeger] [--without victorialogs]
                                      [--alert-webhook-url URL]
    python -m otel_hardening.stack status
    python -m otel_hardening.stack down

``up`` prints the OTLP endpoint to point ``OTEL_EXPORTER_OTLP_ENDPOINT`` at and every component's
URL. Sampled traces go to Jaeger and logs to VictoriaLogs, with a copy of each in
``<run-dir>/traces.jsonl`` and ``<run-dir>/logs.jsonl``. ``down`` stops only the processes ``up``
started, by pid.

Environment: ``OTELCOL_BIN`` (a collector binary to use instead of the cached build),
``OTEL_HARDENING_JAEGER_BIN`` and ``OTEL_HARDENING_VICTORIALOGS_BIN`` (likewise),
``OTEL_HARDENING_REPO`` (the checkout whose config files to run).
"""

from otel_hardening.stack._components import find_component
from otel_hardening.stack._paths import cached_collector, find_collector, repo_root
from otel_hardening.stack._process import ManagedProcess, StackError, free_port
from otel_hardening.stack._render import Ports, StackSettings, collector_env
from otel_hardening.stack._stack import LocalStack, local_stack

__all__ = [
    "LocalStack",
    "ManagedProcess",
    "Ports",
    "StackError",
    "StackSettings",
    "cached_collector",
    "collector_env",
    "find_collector",
    "find_component",
    "free_port",
    "local_stack",
    "repo_root",
]
