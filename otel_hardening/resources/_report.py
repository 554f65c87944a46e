"""A hunt's result as an OTel log record (and a span event when a recording span asked for it)."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber, get_logger_provider
from opentelemetry.context import Context

from otel_hardening._version import __version__
from otel_hardening.resources._hunt import LeakReport

EVENT = "hardening.leak.report"
SCOPE = "otel_hardening"


def attributes(report: LeakReport, trigger: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "hardening.leak.hunt.trigger": trigger,
        "hardening.leak.hunt.duration": report.seconds,
        "hardening.leak.hunt.truncated": report.truncated,
        "hardening.leak.site.count": len(report.sites),
    }
    if report.sites:
        top = report.sites[0]
        attrs.update({
            "code.file.path": top.file,
            "code.line.number": top.line,
            "hardening.leak.size_diff": top.size_diff,
            "hardening.leak.count_diff": top.count_diff,
            "hardening.leak.sites": [f"{s.file}:{s.line} +{s.size_diff} B" for s in report.sites],
        })
    return attrs


def body(report: LeakReport) -> str:
    if not report.sites:
        return f"leak hunt over {report.seconds:.1f} s: no growing allocation site"
    lines = [f"leak hunt over {report.seconds:.1f} s: top {len(report.sites)} growing allocation sites"]
    for i, site in enumerate(report.sites, 1):
        lines.append(f"#{i} {site.file}:{site.line} +{site.size_diff} B in +{site.count_diff} blocks")
        lines.extend(f"    {frame}" for frame in site.traceback)
    return "\n".join(lines)


def emit(report: LeakReport, trigger: str, context: Context | None, logger_provider: Any = None) -> None:
    attrs = attributes(report, trigger)
    provider = logger_provider if logger_provider is not None else get_logger_provider()
    logger = provider.get_logger(SCOPE, __version__)
    span_ctx = trace.get_current_span(context).get_span_context()
    record = LogRecord(
        trace_id=span_ctx.trace_id if span_ctx.is_valid else None,
        span_id=span_ctx.span_id if span_ctx.is_valid else None,
        trace_flags=span_ctx.trace_flags if span_ctx.is_valid else None,
        severity_number=SeverityNumber.WARN,
        severity_text="WARN",
        body=body(report),
        attributes=attrs,
    )
    logger.emit(record)
    span = trace.get_current_span(context)
    if span.is_recording():
        span.add_event(EVENT, attrs)
