"""``otel-hardening``: the demo, the local stack, dashboards, a health-endpoint reader and the doctor.

Every error the user can cause (a bad option, a port in use, a stack already up, no collector built)
is one line on stderr and a non-zero exit, never a traceback.

A command is a subparser whose ``run`` default takes the parsed arguments and returns the exit status;
a command module adds its own with an ``add_parser(sub)`` function (see ``_doctor.add_parser``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from otel_hardening._version import __version__

PROG = "otel-hardening"


class CommandError(Exception):
    """One line for the user; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CommandError(f"{self.prog}: {message} (see {self.prog} --help)", 2)


def _positive_seconds(raw: str) -> float:
    try:
        value = float(raw.strip().removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds (e.g. 120 or 120s)") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{raw!r}: expected a number of seconds > 0")
    return value


def _endpoint(raw: str) -> tuple[str, int]:
    """``PORT`` (on 127.0.0.1) or ``HOST:PORT``."""
    host, _, port = raw.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r}: expected PORT or HOST:PORT, e.g. 8080") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{raw!r}: port must be 0-65535")
    return host.strip("[]") or "127.0.0.1", number


def _phases(raw: str) -> tuple[str, ...]:
    from otel_hardening.demo._scenario import parse_phases

    try:
        return tuple(p.name for p in parse_phases(raw))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--phases {raw!r}: ")) from None


def build_parser() -> argparse.ArgumentParser:
    from otel_hardening.demo import DEFAULT_DURATION
    from otel_hardening.demo._scenario import PHASE_NAMES

    parser = _Parser(prog=PROG, description="Circuit breakers, retries, leak tracking and health status "
                                            "for httpx clients, observable through OpenTelemetry.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = sub.add_parser("demo", help="run the demo: embedded flaky upstreams, hardened clients, live view",
                          description="Embedded fault-injecting upstreams and hardened httpx clients (sync and "
                          "async) walk scripted phases: " + " -> ".join(PHASE_NAMES) + " (saturation: a slow upstream "
                          "called by more threads than its client's pool has connections, so requests wait for "
                          "one and some end in PoolTimeout). The view shows what the library measured, pool use "
                          "and network quality per upstream included. With OTEL_EXPORTER_OTLP_ENDPOINT set, "
                          "everything is also exported over OTLP (OTEL_EXPORTER_OTLP_PROTOCOL grpc or http/protobuf).")
    demo.add_argument("--duration", type=_positive_seconds, default=DEFAULT_DURATION,
                      help="seconds for one walk through the phases (default: %(default)g; 20 still shows all)")
    demo.add_argument("--phases", type=_phases, default=PHASE_NAMES,
                      help="comma-separated phases to run, in order (default: " + ",".join(PHASE_NAMES) + ")")
    demo.add_argument("--plain", action="store_true", help="line output for logs and CI instead of a live view")
    demo.add_argument("--health-endpoint", type=_endpoint, metavar="[HOST:]PORT",
                      help="serve /healthz, /readyz and /livez there (HOST defaults to 127.0.0.1)")
    demo.add_argument("--time-scale", type=float, metavar="FACTOR",
                      help="run the leak detector, hunt and health windows FACTOR times faster than their "
                           "production defaults (default: fitted to the leak phase)")
    demo.add_argument("--loop", action="store_true", help="walk the phases again and again until interrupted")
    demo.set_defaults(run=_run("demo"))

    stack = sub.add_parser("stack", help="the local no-Docker stack: up | status | down (see stack --help)",
                           add_help=False)
    stack.add_argument("args", nargs=argparse.REMAINDER)

    dashboards = sub.add_parser("dashboards", help="build the Grafana dashboards and alert rules (checkout only)")
    dashboards.add_argument("action", choices=["build"])
    dashboards.set_defaults(run=lambda args: _run("dashboards_build")())

    health = sub.add_parser("health", help="read a health endpoint and print it",
                            description="Exit status: 0 healthy, 1 degraded, 2 critical, 3 unreachable or not "
                                        "a health endpoint.")
    health.add_argument("url", help="e.g. http://127.0.0.1:8080/healthz (a bare host:port gets /healthz)")
    health.add_argument("--token", help="bearer token for details (default: $OTEL_PYTHON_HARDENING_HEALTH_TOKEN)")
    health.add_argument("--json", action="store_true", help="print the JSON document as received")
    health.set_defaults(run=lambda args: _health_command(args))

    from otel_hardening.cli import _doctor, _outbox

    for add_parser in (_doctor.add_parser, _outbox.add_parser):
        add_parser(sub)
    return parser


def _run(name: str) -> Callable[..., int]:
    """``_commands.<name>``, imported when the command runs (the demo's imports are not cheap)."""

    def call(*args: Any) -> int:
        from otel_hardening.cli import _commands

        return int(getattr(_commands, name)(*args))

    return call


def _health_command(args: argparse.Namespace) -> int:
    from otel_hardening.cli._health import health

    return health(args.url, args.token, args.json)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args_list)
    except CommandError as exc:
        print(str(exc), file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _dispatch(argv: list[str]) -> int:
    if argv[:1] == ["stack"]:  # everything after it, --help included, is the stack's own command line
        from otel_hardening.cli._commands import stack

        return stack(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(args.run(args))
