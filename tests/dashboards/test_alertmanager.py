"""alertmanager/alertmanager.yml on a real Alertmanager: a critical alert inhibits the warnings of
the same service, not those of another service."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from otel_hardening.stack import free_port
from otel_hardening.stack._process import ManagedProcess
from tests.dashboards.conftest import ROOT


def api(base: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read()
    return json.loads(text) if text else None


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("alertmanager not installed (apt-get install prometheus-alertmanager)")
    work = tmp_path_factory.mktemp("alertmanager")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = ManagedProcess.start(
        "alertmanager",
        [binary, f"--config.file={ROOT / 'alertmanager' / 'alertmanager.yml'}", f"--storage.path={work}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        work / "alertmanager.log", base + "/-/ready",
    )
    try:
        proc.wait_ready(30)
        yield base
    finally:
        proc.stop()


def alert(name: str, severity: str, service: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "severity": severity, "service": service, "job": service}}


def test_critical_inhibits_warnings_of_the_same_service_only(alertmanager: str) -> None:
    api(alertmanager, "/api/v2/alerts", [
        alert("HardeningServiceCritical", "critical", "shop"),
        alert("HardeningCircuitOpen", "warning", "shop"),
        alert("HardeningCircuitOpen", "warning", "cart"),
    ])

    def states() -> dict[tuple[str, str], Any]:
        return {(a["labels"]["alertname"], a["labels"]["service"]): a["status"]
                for a in api(alertmanager, "/api/v2/alerts")}

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = states()
        if now.get(("HardeningCircuitOpen", "shop"), {}).get("state") == "suppressed":
            break
        time.sleep(0.5)
    assert now[("HardeningCircuitOpen", "shop")]["inhibitedBy"], now
    assert now[("HardeningCircuitOpen", "cart")]["state"] == "active", now
    assert now[("HardeningServiceCritical", "shop")]["state"] == "active", now


