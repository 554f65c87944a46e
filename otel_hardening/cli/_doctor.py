"""``otel-hardening doctor``: is this app's OpenTelemetry set-up one that makes the dashboards and alerts
work? Each check is one plain line, with the fix under it; exit 0 (all good), 1 (warnings), 2 (broken).

Run it in the app's environment (same virtualenv, same variables). Without ``--setup`` it checks the
zero-code set-up, the one ``opentelemetry-instrument`` builds from the environment; with
``--setup MODULE[:FUNCTION]`` it first runs the app's own SDK set-up code and checks the providers
that code left.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import PackageNotFoundError, entry_points, requires, version

from otel_hardening.cli._doctor_sdk import SIGNALS, Finding, Setup, SetupError, from_globals, run_setup, zero_code
from otel_hardening.cli._otlp_probe import probe, target_of

TIME_TO_ALERT = "time to alert measured 20 s (p95, 5 outages) with 5 s: docs/stack.md#time-to-alert"
EXIT = {"ok": 0, "info": 0, "warn": 1, "fail": 2}
LABEL = {"ok": "ok  ", "info": "info", "warn": "WARN", "fail": "FAIL"}
LOST = {"traces": "no hardening.request or per-attempt spans",
        "metrics": "no metrics: the dashboards stay empty and no alert ever fires",
        "logs": "no leak-hunt reports or health-change records"}
SDK_FIX = {
    "traces": "set a TracerProvider with a BatchSpanProcessor(OTLPSpanExporter()) (README, 'install()')",
    "metrics": "set a MeterProvider(metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter(), "
               "export_interval_millis=5000)]) (README, 'install()')",
    "logs": "set_logger_provider(LoggerProvider()) with a BatchLogRecordProcessor(OTLPLogExporter()) (README)",
}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    doctor = sub.add_parser(
        "doctor", help="check this app's OpenTelemetry set-up: providers, export interval, collector, config",
        description=__doc__.split("\n\n")[1].replace("\n", " ") + " Exit status: 0 all good, 1 warnings, 2 broken.")
    doctor.add_argument("--setup", metavar="MODULE[:FUNCTION]",
                        help="import MODULE (from the current directory too) and call FUNCTION: the code that sets "
                             "up your OpenTelemetry SDK; without it, the zero-code set-up is checked")
    doctor.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS",
                        help="how long each collector probe waits (default: %(default)g)")
    doctor.add_argument("--no-probe", action="store_true", help="do not contact the collector")
    doctor.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from otel_hardening.cli import PROG, CommandError

    if not 0 < args.timeout <= 60:
        raise CommandError(f"{PROG} doctor: --timeout {args.timeout:g}: expected seconds > 0 and <= 60", 2)
    env = dict(os.environ)
    complaints = _Complaints()
    sdk_logger = logging.getLogger("opentelemetry")
    sdk_logger.addHandler(complaints)  # the SDK's own warnings become findings, not stray stderr lines
    try:
        if args.setup:
            try:
                run_setup(args.setup)
            except SetupError as exc:
                raise CommandError(f"{PROG} doctor: {exc}", 2) from None
            setup = from_globals(f"the set-up of --setup {args.setup}")
        else:
            setup = zero_code(env)
        findings = list(checks(setup, env, probe_timeout=None if args.no_probe else args.timeout))
    finally:
        sdk_logger.removeHandler(complaints)
    findings += [Finding("warn", "OpenTelemetry SDK", f"it complained: {text}") for text in complaints.seen]
    print(f"{PROG} doctor: {setup.mode}")
    for finding in findings:
        print(f"{LABEL[finding.level]}  {finding.subject}: {finding.what}")
        if finding.fix and finding.level in ("warn", "fail"):
            print(f"      fix: {finding.fix}")
    status = max((EXIT[f.level] for f in findings), default=0)
    counts = {level: sum(f.level == level for f in findings) for level in ("fail", "warn")}
    print(f"{counts['fail']} broken, {counts['warn']} warnings: exit {status}")
    return status


def checks(setup: Setup, env: Mapping[str, str], probe_timeout: float | None) -> Iterator[Finding]:
    """Every check, in reading order; a check that fails unexpectedly is one finding, never a traceback."""
    parts: list[Callable[[], list[Finding]]] = [
        lambda: setup.findings, lambda: providers(setup), lambda: interval(setup),
        lambda: collector(setup, probe_timeout), lambda: instrumentation(env, setup), lambda: semconv(env),
        lambda: hardening_config(env), versions,
    ]
    for part in parts:
        try:
            yield from part()
        except Exception as exc:
            yield Finding("warn", "doctor", f"a check could not run: {type(exc).__name__}: {exc}")


def providers(setup: Setup) -> list[Finding]:
    out = []
    for signal in SIGNALS:
        pipeline = setup.pipelines[signal]
        level = "fail" if signal == "metrics" else "warn"
        names = sorted({type(e).__name__ for e in pipeline.exporters} | set(pipeline.pull_readers))
        if not pipeline.provider:
            out.append(Finding(level, signal, f"no SDK provider is set: {LOST[signal]}", SDK_FIX[signal]))
        elif not names and pipeline.requested:
            continue  # the exporter asked for could not be made: said above
        elif not names:
            zero = "zero-code" in setup.mode
            why = f" (OTEL_{signal.upper()}_EXPORTER=none)" if zero else ""
            out.append(Finding(level, signal, f"a provider but no exporter{why}: {LOST[signal]}",
                               f"OTEL_{signal.upper()}_EXPORTER=otlp" if zero else SDK_FIX[signal]))
        elif all(n.startswith(("Console", "InMemory")) for n in names):
            out.append(Finding("warn", signal, f"exported only to {', '.join(names)}: nothing reaches a collector",
                               SDK_FIX[signal]))
        else:
            out.append(Finding("ok", signal, f"provider set, exported by {', '.join(names)}"))
    return out


def interval(setup: Setup) -> list[Finding]:
    ms = setup.interval_ms
    if ms is None:
        return []
    seconds = ms / 1000
    if ms <= 5000:
        return [Finding("ok", "metric export interval", f"{seconds:g} s: alerts can fire within the 60 s goal "
                        f"({TIME_TO_ALERT})")]
    return [Finding("warn", "metric export interval",
                    f"{seconds:g} s: every alert fires up to {seconds - 5:g} s later than with 5 s ({TIME_TO_ALERT}), "
                    "and the health and circuit panels lag as much",
                    "OTEL_METRIC_EXPORT_INTERVAL=5000 (in code: export_interval_millis=5000)")]


def collector(setup: Setup, timeout: float | None) -> list[Finding]:
    out = []
    for signal in SIGNALS:
        for exporter in setup.pipelines[signal].exporters:
            target = target_of(signal, exporter)
            if target is None:
                continue
            if timeout is None:
                out.append(Finding("info", f"collector ({signal})", f"{target.shown}: not probed (--no-probe)"))
                continue
            answer = probe(target, timeout)
            if answer.ok:
                out.append(Finding("ok", f"collector ({signal})", f"{target.shown} {answer.detail}"))
            elif not answer.reachable:
                out.append(Finding("fail", f"collector ({signal})", f"{target.shown}: {answer.detail}: this app's "
                                   f"{signal} are dropped after the exporter's retries",
                                   "start the collector (`otel-hardening stack up` prints its endpoint) or point "
                                   f"OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT) "
                                   "at yours"))
            else:
                out.append(Finding("fail" if signal == "metrics" else "warn", f"collector ({signal})",
                                   f"{target.shown}: {answer.detail}",
                                   f"add a {signal} pipeline to the collector, or fix the endpoint"))
    return out


def instrumentation(env: Mapping[str, str], setup: Setup) -> list[Finding]:
    disabled = {n.strip() for n in env.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    found = {ep.name for ep in entry_points(group="opentelemetry_instrumentor")}
    zero = "zero-code" in setup.mode
    out = []
    if "hardening" not in found:
        out.append(Finding("fail" if zero else "info", "zero-code", "the 'hardening' instrumentor is not registered",
                           "reinstall otel-hardening into this environment"))
    elif "hardening" in disabled:
        out.append(Finding("warn" if zero else "info", "zero-code",
                           "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS turns the 'hardening' instrumentor off",
                           "remove 'hardening' from OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"))
    elif zero:
        out.append(Finding("ok", "zero-code", "the 'hardening' instrumentor loads with the others"))
    if not zero and not list(entry_points(group="opentelemetry_distro")):
        out.append(Finding("info", "zero-code", "opentelemetry-distro is not installed: fine with your own set-up, "
                           "needed for `opentelemetry-instrument`"))
    return out


def semconv(env: Mapping[str, str]) -> list[Finding]:
    raw = env.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
    if {"http", "http/dup"} & {part.strip() for part in raw.split(",")}:
        return [Finding("ok", "semantic conventions", f"OTEL_SEMCONV_STABILITY_OPT_IN={raw}: attempt spans carry "
                        "server.address")]
    return [Finding("warn", "semantic conventions", "HTTP spans use the old attribute names: the per-attempt latency "
                    "panel (grouped by server.address) stays empty", "OTEL_SEMCONV_STABILITY_OPT_IN=http")]


class _Complaints(logging.Handler):
    """The first sentence of each distinct SDK warning: the rest may quote a header value."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().split(":")[0].split("\n")[0].strip()[:160]
        except Exception:
            text = str(record.msg)[:160]
        if text and text not in self.seen:
            self.seen.append(text)


class _Reads(dict[str, str]):
    """The environment, remembering which variables the configuration read."""

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)
        self.read: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)


class _Rejections(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.rejected: list[tuple[object, ...]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("invalid %s=%r") and isinstance(record.args, tuple):
            self.rejected.append(record.args)


def hardening_config(env: Mapping[str, str]) -> list[Finding]:
    """The configuration in effect, and every variable that fell back to its default (bad value) or that
    nothing reads (a typo)."""
    from otel_hardening import _env, _logging
    from otel_hardening._redaction import redact_url
    from otel_hardening.config import HardeningConfig

    ours = {k: v for k, v in env.items() if k.startswith(_env.PREFIX)}
    for key, value in ours.items():
        _logging.forget(f"config:{key}={value}")  # each rejection is logged once per process: say it again
    reads, handler = _Reads(env), _Rejections()
    _logging.logger.addHandler(handler)
    try:
        config = HardeningConfig.from_env(reads)
    finally:
        _logging.logger.removeHandler(handler)
    out = []
    for name, raw, accepted, default in (args[:4] for args in handler.rejected if len(args) >= 4):
        shown = "(hidden)" if "TOKEN" in str(name) else redact_url(str(raw)) if "://" in str(raw) else repr(raw)
        out.append(Finding("warn", "hardening config", f"{name}={shown} is not accepted, so the default {default} "
                           f"is in effect", f"accepted: {accepted}"))
    for name in sorted(set(ours) - reads.read):
        out.append(Finding("warn", "hardening config", f"{name} is not a setting: nothing reads it (a typo?)",
                           "see docs/configuration.md for the names"))
    r, c, h = config.retry, config.circuit, config.health
    outbox = ("off" if config.outbox is None else "on, the app's default file" if not config.outbox
              else f"on, {redact_url(config.outbox) if config.outbox.startswith(('redis', 'unix')) else config.outbox}")
    out.append(Finding("ok", "hardening config",
                       f"in effect: retries {r.max_attempts} attempts within {r.deadline:g} s, "
                       f"circuit opens after {c.fail_max} failures for {c.reset_timeout:g} s, health "
                       f"{'on' if h.enabled else 'off'} (recovery hold {h.recovery_hold:g} s), resources "
                       f"{'on' if config.resources.enabled else 'off'}, outbox {outbox}; "
                       f"{len(ours)} OTEL_PYTHON_HARDENING_* variable(s) set"))
    return out


def versions() -> list[Finding]:
    """Installed versions against the ranges otel-hardening declares (its package metadata)."""
    try:  # packaging comes with opentelemetry-instrumentation, a dependency
        from packaging.requirements import Requirement
    except ImportError:
        return [Finding("info", "versions", "not checked: the 'packaging' module is missing")]
    out = []
    try:
        declared = requires("otel-hardening") or []
    except PackageNotFoundError:
        return [Finding("warn", "versions", "otel-hardening's package metadata is missing: reinstall it")]
    for line in declared:
        req = Requirement(line)
        extra = req.marker is not None and "extra" in str(req.marker)
        if req.marker is not None and not extra and not req.marker.evaluate():
            continue
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            if not extra:
                out.append(Finding("fail", "versions", f"{req.name} is not installed (needed: {req.specifier})",
                                   f"pip install '{req}'"))
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            out.append(Finding("warn", "versions", f"{req.name} {installed} is outside the tested range "
                               f"{req.specifier}", f"pip install '{req.name}{req.specifier}'"))
    try:
        api, sdk = version("opentelemetry-api"), version("opentelemetry-sdk")
        if api != sdk:
            out.append(Finding("warn", "versions", f"opentelemetry-api {api} and opentelemetry-sdk {sdk} differ",
                               f"pip install 'opentelemetry-api=={sdk}'"))
    except PackageNotFoundError:
        pass
    if not any(f.level != "ok" for f in out):
        out.append(Finding("ok", "versions", f"every dependency within its declared range (otel-hardening "
                           f"{version('otel-hardening')}, opentelemetry-sdk {_installed('opentelemetry-sdk')}, "
                           f"httpx {_installed('httpx')})"))
    return out


def _installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"
