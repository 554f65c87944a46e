"""The commands that run something: the demo, the local stack, the dashboards build."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from otel_hardening.cli import PROG, CommandError

STACK_ACTIONS = ("up", "status", "down")


def demo(args: argparse.Namespace) -> int:
    from otel_hardening.demo import DemoError, DemoOptions, run

    options = DemoOptions(duration=args.duration, phases=args.phases, plain=args.plain,
                          health_endpoint=args.health_endpoint, time_scale=args.time_scale, loop=args.loop)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # docker stop: shut down like Ctrl-C, flushing telemetry

    signal.signal(signal.SIGTERM, stop)
    try:
        return run(options)
    except DemoError as exc:
        raise CommandError(f"{PROG} demo: {exc}", 2) from None


def stack(argv: list[str]) -> int:
    """``otel_hardening.stack``'s own command line, under ``otel-hardening stack``."""
    if not argv or (argv[0] not in STACK_ACTIONS and argv[0] not in ("-h", "--help")):
        given = f" {argv[0]!r}" if argv else ""
        raise CommandError(f"{PROG} stack: expected one of {', '.join(STACK_ACTIONS)}, got{given or ' nothing'} "
                           f"(see {PROG} stack --help)", 2)
    from otel_hardening.stack.__main__ import main as stack_main

    try:
        status = stack_main(argv)
    except SystemExit as exc:  # its argparse: --help (0) or a bad option (2, message already printed)
        return exc.code if isinstance(exc.code, int) else 2
    if argv[0] == "status":
        _print_urls(argv)
    return status


def _print_urls(argv: list[str]) -> None:
    """After ``status``: the URLs ``up`` printed, again (they are on free ports, so not guessable)."""
    from otel_hardening.stack import LocalStack, StackError
    from otel_hardening.stack.__main__ import _default_run_dir

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--run-dir", type=Path, default=_default_run_dir())
    run_dir = parser.parse_known_args(argv[1:])[0].run_dir
    try:
        stack = LocalStack.load(run_dir)
        print(f"OTEL_EXPORTER_OTLP_ENDPOINT={stack.otlp_grpc_endpoint}")
        for name, url in stack.urls().items():
            print(f"{name + ':':14}{url}")
    except (StackError, OSError, AttributeError):
        pass  # status already said what is wrong


def dashboards_build() -> int:
    """Run dashboards/build.sh of the checkout (jsonnet sources are not shipped in the wheel)."""
    from otel_hardening.stack._paths import is_checkout, repo_root
    from otel_hardening.stack._process import StackError

    try:
        root = repo_root()
    except StackError:
        root = None
    script = root / "dashboards" / "build.sh" if root is not None else None
    if root is None or not is_checkout(root) or script is None or not script.is_file():
        raise CommandError(f"{PROG} dashboards build: needs an otel-hardening checkout (dashboards/build.sh "
                           "and the jsonnet sources); run it from one, or set OTEL_HARDENING_REPO. The built "
                           "dashboards and rules already ship in the package.")
    bash = shutil.which("bash") or "/bin/bash"
    sys.stdout.flush()
    return subprocess.run([bash, str(script)], cwd=root, env=os.environ.copy(), check=False).returncode
