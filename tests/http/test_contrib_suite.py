"""opentelemetry-instrumentation-httpx's own test suite, of the installed release, passes with
``otel_hardening.install()`` active around every case (contrib_conftest.py): the application that
instruments httpx itself (globally, per client, with a manual transport) sees what it would see
without us.

The suite comes from the release's sdist on PyPI, downloaded once into the cache outside the repo
(``~/.cache/otel-hardening/contrib-httpx-<version>``); without PyPI the test skips and says so. It
needs opentelemetry-test-utils of the same release, which ``./run test`` installs into .venv (it pins
exact opentelemetry-api/sdk versions, so not into the floors venv, whose run ignores this file).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from otel_hardening.stack._paths import cache_dir
from tests.http.contrib_conftest import PROMISE_CONTRADICTED

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]  # a first download, then the suite (~30 s)

PACKAGE = "opentelemetry-instrumentation-httpx"
SUITE = "tests/test_httpx_integration.py"
MIN_PASSED = 150
"""The 0.66b2 suite has 170 cases (2 skip on their own): fewer passing means cases went missing."""


def _suite(release: str) -> Path:
    """The release's tests/ folder, from its sdist, cached; skips the test when PyPI cannot be reached."""
    home = cache_dir() / f"contrib-httpx-{release}"
    if (home / SUITE).is_file():
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home.parent) as scratch:
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
             "--no-binary", ":all:", f"{PACKAGE}=={release}", "-d", scratch],
            capture_output=True, text=True, timeout=180)
        sdists = sorted(Path(scratch).glob("*.tar.gz"))
        if download.returncode != 0 or not sdists:
            pytest.skip(f"THE CONTRIB HTTPX SUITE WAS NOT RUN: pip could not download the {PACKAGE}=={release} sdist "
                        f"from PyPI ({(download.stderr or download.stdout).strip()[-300:]})")
        extracted = Path(scratch) / "extracted"
        with tarfile.open(sdists[0]) as sdist:
            for member in sdist.getmembers():
                parts = Path(member.name).parts  # <name>-<version>/tests/<file>.py
                if member.isfile() and len(parts) == 3 and parts[1] == "tests" and parts[2].endswith(".py"):
                    (extracted / "tests").mkdir(parents=True, exist_ok=True)
                    (extracted / "tests" / parts[2]).write_bytes(sdist.extractfile(member).read())  # type: ignore[union-attr]
        if not (extracted / SUITE).is_file():
            pytest.fail(f"the {PACKAGE}=={release} sdist has no {SUITE}")
        shutil.rmtree(home, ignore_errors=True)
        extracted.rename(home)
    return home


def test_the_contrib_httpx_suite_passes_with_install_active() -> None:
    release = version(PACKAGE)
    try:
        if version("opentelemetry-test-utils") != release:
            raise PackageNotFoundError
    except PackageNotFoundError:
        pytest.skip(f"THE CONTRIB HTTPX SUITE WAS NOT RUN: it needs opentelemetry-test-utils=={release} "
                    "(./run test installs it into .venv)")
    home = _suite(release)
    shutil.copyfile(Path(__file__).with_name("contrib_conftest.py"), home / "tests" / "conftest.py")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-p", "no:randomly",
         "--rootdir", str(home), "-o", "addopts=", "-o", "asyncio_default_fixture_loop_scope=function", SUITE],
        cwd=home, capture_output=True, text=True, timeout=240)
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"the contrib httpx {release} suite failed with install() active:\n{output[-6000:]}"
    passed = re.findall(r"^PASSED (\S+)", output, re.MULTILINE)
    assert len(passed) >= MIN_PASSED, output[-3000:]
    # the cases run with install()'s instrumentation off are the documented ones, and they passed
    contradicted = [case for case in PROMISE_CONTRADICTED if any(nodeid.endswith(case) for nodeid in passed)]
    assert contradicted == list(PROMISE_CONTRADICTED), output[-3000:]
