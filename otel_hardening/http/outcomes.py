"""The words of the telemetry contract (docs/telemetry.md): outcomes of a logical call, circuit states."""

from __future__ import annotations

# Outcomes of one logical call (attribute hardening.outcome).
SUCCESS = "success"
SUCCESS_AFTER_RETRY = "success_after_retry"
FAILURE = "failure"
FAILURE_AFTER_RETRY = "failure_after_retry"
REJECTED_CIRCUIT_OPEN = "rejected_circuit_open"
REJECTED_RETRY_BUDGET = "rejected_retry_budget"
POOL_TIMEOUT = "pool_timeout"
"""The call ended with ``httpx.PoolTimeout``: no connection of the client's own pool became free in time."""
OUTCOMES = (SUCCESS, SUCCESS_AFTER_RETRY, FAILURE, FAILURE_AFTER_RETRY, REJECTED_CIRCUIT_OPEN,
            REJECTED_RETRY_BUDGET, POOL_TIMEOUT)
FAILED_OUTCOMES = frozenset(OUTCOMES) - {SUCCESS, SUCCESS_AFTER_RETRY}

CIRCUIT_STATES = ("closed", "open", "half_open")
