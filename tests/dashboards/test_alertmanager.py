"""alertmanager/alertmanager.yml on a real Alertmanager: each inhibit rule mutes what it should (the
same alert family, process, upstream or service) and nothing else: never HardeningCircuitOpen under
the page it causes, never an error-budget ticket under an unrelated page, never the watchdog."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from otel_hardening.stack import free_port
from otel_hardening.stack._process import ManagedProcess
from tests.dashboards.conftest import ROOT

CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
# Inhibition is decided when a group is flushed: after group_wait for a new group.
GROUP_WAIT = 10.0

Labels = dict[str, str]


def api(base: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read()
    return json.loads(text) if text else None


@pytest.fixture(scope="module")
def start_alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("alertmanager not installed (apt-get install prometheus-alertmanager)")
    started: list[ManagedProcess] = []

    def start() -> str:
        work = tmp_path_factory.mktemp("alertmanager")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = ManagedProcess.start(
            "alertmanager",
            [binary, f"--config.file={CONFIG}", f"--storage.path={work}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            work / "alertmanager.log", base + "/-/ready",
        )
        started.append(proc)
        proc.wait_ready(30)
        return base

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()


def alert(name: str, severity: str, service: str, **labels: str) -> Labels:
    return {"alertname": name, "severity": severity, "service": service, "job": service, **labels}


def post_and_settle(base: str, alerts: list[Labels], suppressed: list[Labels]) -> dict[str, Any]:
    """Post the alerts, wait until every one of ``suppressed`` is inhibited and every group has been
    flushed once, and return each alert's status by its label set."""
    posted = time.monotonic()
    api(base, "/api/v2/alerts", [{"labels": labels} for labels in alerts])

    def key(labels: Labels) -> str:
        return json.dumps(labels, sort_keys=True)

    deadline = posted + GROUP_WAIT + 30
    while True:
        now = {key(a["labels"]): a["status"] for a in api(base, "/api/v2/alerts")}
        done = all(now.get(key(labels), {}).get("state") == "suppressed" for labels in suppressed)
        if (done and time.monotonic() > posted + GROUP_WAIT + 2) or time.monotonic() > deadline:
            return {k: now.get(key(labels)) for labels in alerts for k in [key(labels)]}
        time.sleep(0.5)


def state(statuses: dict[str, Any], labels: Labels) -> tuple[str, list[str]]:
    status = statuses[json.dumps(labels, sort_keys=True)]
    return status["state"], status["inhibitedBy"]


# One Alertmanager holds every scenario but the scrape one (which mutes every service): each has its
# own service, so they cannot mute one another.
FD_CRITICAL = alert("HardeningFdExhaustion", "critical", "fd", instance="i1")
FD_WARNING_SAME = alert("HardeningFdExhaustion", "warning", "fd", instance="i1")
FD_WARNING_OTHER = alert("HardeningFdExhaustion", "warning", "fd", instance="i2")
BURN_PAGE = alert("HardeningUpstreamErrorBudgetBurn", "critical", "pay", server_address="a", server_port="80",
                  long_window="1h", short_window="5m")
BURN_TICKET_SAME = alert("HardeningUpstreamErrorBudgetBurn", "warning", "pay", server_address="a", server_port="80",
                         long_window="1d", short_window="2h")
BURN_TICKET_OTHER = alert("HardeningUpstreamErrorBudgetBurn", "warning", "pay", server_address="b", server_port="443",
                          long_window="1d", short_window="2h")
PAY_CRITICAL = alert("HardeningServiceCritical", "critical", "pay", instance="p1")
SHOP_CRITICAL = alert("HardeningServiceCritical", "critical", "shop", instance="i1")
SHOP_CIRCUIT = alert("HardeningCircuitOpen", "warning", "shop", instance="i1", hardening_circuit_name="http://api:80")
SHOP_POOL = alert("HardeningPoolSaturated", "warning", "shop", instance="i1", server_address="api", server_port="80",
                  reason="waiting")
SHOP_POOL_TIMEOUT = alert("HardeningPoolSaturated", "warning", "shop", instance="i1", server_address="api",
                          server_port="80", reason="pool_timeout")
SHOP_DEGRADED_SAME = alert("HardeningServiceDegraded", "warning", "shop", instance="i1")
SHOP_DEGRADED_OTHER = alert("HardeningServiceDegraded", "warning", "shop", instance="i2")
CART_DOWN = alert("HardeningTargetDown", "critical", "cart", stage="service")
CART_PROCESS = alert("HardeningTargetDown", "warning", "cart", instance="c1", stage="process")
WEB_PROCESS = alert("HardeningTargetDown", "warning", "web", instance="w1", stage="process")
WATCHDOG = {"alertname": "HardeningWatchdog", "severity": "none", "service": "otel-hardening"}

SCENARIOS = [FD_CRITICAL, FD_WARNING_SAME, FD_WARNING_OTHER, BURN_PAGE, BURN_TICKET_SAME, BURN_TICKET_OTHER,
             PAY_CRITICAL, SHOP_CRITICAL, SHOP_CIRCUIT, SHOP_POOL, SHOP_POOL_TIMEOUT, SHOP_DEGRADED_SAME,
             SHOP_DEGRADED_OTHER, CART_DOWN, CART_PROCESS, WEB_PROCESS, WATCHDOG]
MUTED = [FD_WARNING_SAME, BURN_TICKET_SAME, SHOP_DEGRADED_SAME, CART_PROCESS]


@pytest.fixture(scope="module")
def statuses(start_alertmanager: Callable[[], str]) -> dict[str, Any]:
    return post_and_settle(start_alertmanager(), SCENARIOS, MUTED)


def test_the_config_has_the_inhibit_rules_tested_here() -> None:
    rules = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    assert len(rules) == 4, "a new inhibit rule needs its test here"


def test_same_alert_critical_mutes_its_warning_for_the_same_process_only(statuses: dict[str, Any]) -> None:
    assert state(statuses, FD_WARNING_SAME)[0] == "suppressed"
    assert state(statuses, FD_WARNING_OTHER) == ("active", [])
    assert state(statuses, FD_CRITICAL) == ("active", [])


def test_a_page_mutes_the_ticket_of_its_own_upstream_only(statuses: dict[str, Any]) -> None:
    assert state(statuses, BURN_TICKET_SAME)[0] == "suppressed"
    # Another upstream's budget ticket stays, under its own service's unrelated critical pages too.
    assert state(statuses, BURN_TICKET_OTHER) == ("active", [])
    assert state(statuses, BURN_PAGE) == ("active", [])
    assert state(statuses, PAY_CRITICAL) == ("active", [])


def test_critical_health_never_mutes_the_circuit_that_names_the_upstream(statuses: dict[str, Any]) -> None:
    assert state(statuses, SHOP_CIRCUIT) == ("active", [])
    assert state(statuses, SHOP_CRITICAL) == ("active", [])


def test_critical_health_never_mutes_the_pool_that_names_the_upstream(statuses: dict[str, Any]) -> None:
    """A saturated pool explains the latency or the errors a page is about: it stays, both reasons."""
    assert state(statuses, SHOP_POOL) == ("active", [])
    assert state(statuses, SHOP_POOL_TIMEOUT) == ("active", [])


def test_critical_health_mutes_degraded_of_the_same_process_only(statuses: dict[str, Any]) -> None:
    assert state(statuses, SHOP_DEGRADED_SAME)[0] == "suppressed"
    assert state(statuses, SHOP_DEGRADED_OTHER) == ("active", [])


def test_a_service_down_mutes_its_own_processes_only(statuses: dict[str, Any]) -> None:
    assert state(statuses, CART_PROCESS)[0] == "suppressed"
    assert state(statuses, WEB_PROCESS) == ("active", [])
    assert state(statuses, CART_DOWN) == ("active", [])


def test_nothing_mutes_the_watchdog(statuses: dict[str, Any]) -> None:
    assert state(statuses, WATCHDOG) == ("active", [])


def test_app_metrics_scrape_down_mutes_the_liveness_alerts_only(start_alertmanager: Callable[[], str]) -> None:
    scrape = alert("HardeningTargetDown", "critical", "otel-collector", instance="collector:8889", stage="scrape")
    scrape["job"] = "otel-collector"
    absent = alert("HardeningTargetDown", "critical", "otel-hardening", stage="absent")
    del absent["job"]
    circuit = alert("HardeningCircuitOpen", "warning", "web", instance="w1", hardening_circuit_name="http://api:80")
    muted = [WEB_PROCESS, CART_DOWN, absent]
    result = post_and_settle(start_alertmanager(), [scrape, *muted, circuit], muted)
    for labels in muted:
        assert state(result, labels)[0] == "suppressed", labels
    assert state(result, circuit) == ("active", [])
    assert state(result, scrape) == ("active", [])

