"""The local observability stack, without Docker: the collector built from collector/builder-config.yaml,
Prometheus and Alertmanager from the distribution's packages, on free loopback ports.

Command line (state and logs in ``--run-dir``, default
``${XDG_STATE_HOME:-~/.local/state}/otel-hardening/stack``)::

    python -m otel_hardening.stack up [--build] [--sampling-percentage 10]
    python -m otel_hardening.stack status
    python -m otel_hardening.stack down

``up`` prints the OTLP endpoint to point ``OTEL_EXPORTER_OTLP_ENDPOINT`` at, and the Prometheus and
Alertmanager URLs. Sampled traces go to ``<run-dir>/traces.jsonl`` (the collector's file exporter):
Tempo is not part of the local stack. ``down`` stops only the processes ``up`` started, by pid.

Environment: ``OTELCOL_BIN`` (a collector binary to use instead of the cached build),
``OTEL_HARDENING_REPO`` (the checkout whose config files to run).
"""

from otel_hardening.stack._paths import cached_collector, find_collector, repo_root
from otel_hardening.stack._process import ManagedProcess, StackError, free_port
from otel_hardening.stack._stack import LocalStack, Ports, StackSettings, collector_env, local_stack

__all__ = [
    "LocalStack",
    "ManagedProcess",
    "Ports",
    "StackError",
    "StackSettings",
    "cached_collector",
    "collector_env",
    "find_collector",
    "free_port",
    "local_stack",
    "repo_root",
]
