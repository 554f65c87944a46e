"""The declared dependency ranges are the tested ones: pyproject.toml's floors are the pins of
constraints/floors.txt (which ./run test installs into .venv-floors), every package otel_hardening
imports is declared, and httpx/httpcore are capped below their next minor release."""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from importlib.metadata import distributions, packages_distributions, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "otel_hardening"
FLOORS = ROOT / "constraints" / "floors.txt"

# Imported directly but not a runtime dependency, and why.
NOT_RUNTIME = {
    "pytest": "the pytest plugin (testing/pytest_plugin.py) is loaded by pytest itself",
    "redis": "the redis extra (CIRCUIT_STORAGE=redis://), imported only then",
    "opentelemetry-exporter-otlp-proto-grpc": "the otlp extra (the demo's export)",
    "grpcio": "the otlp extra (its gRPC exporter brings it; the doctor's gRPC probe imports it lazily)",
    "opentelemetry-exporter-otlp-proto-http": "the otlp extra (the demo's export)",
}
CAPPED = ("httpx", "httpcore")  # the layer uses their private names (http/hooks.py)


def _project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]  # type: ignore[no-any-return]


def _runtime() -> dict[str, Requirement]:
    reqs = (Requirement(r) for r in _project()["dependencies"])  # type: ignore[attr-defined]
    return {canonicalize_name(r.name): r for r in reqs}


def _floors() -> dict[str, Version]:
    pins = {}
    for line in FLOORS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            pins[canonicalize_name(name)] = Version(pinned)
    return pins


def _lower(req: Requirement) -> Version:
    bounds = [Version(s.version) for s in req.specifier if s.operator == ">="]
    assert len(bounds) == 1, f"{req}: one >= floor expected"
    return bounds[0]


def _imported_modules() -> set[str]:
    modules: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module)
                if node.module == "opentelemetry":  # from opentelemetry import trace: a namespace's module
                    modules.update(f"opentelemetry.{alias.name}" for alias in node.names)
    return {m for m in modules if m.split(".")[0] not in (*sys.stdlib_module_names, "otel_hardening")}


def _imported_distributions() -> set[str]:
    owners = packages_distributions()
    # opentelemetry is a namespace shared by many distributions: map each of its files to its own
    namespace = {str(dist.locate_file(f).resolve()): canonicalize_name(dist.metadata["Name"])  # type: ignore[attr-defined]
                 for dist in distributions() for f in dist.files or ()
                 if str(f).startswith("opentelemetry/") and str(f).endswith(".py")}
    found: set[str] = set()
    for module in _imported_modules():
        top = module.split(".")[0]
        if module == "opentelemetry":
            continue
        if top == "opentelemetry":
            spec = importlib.util.find_spec(module)
            owner = namespace.get(str(Path(spec.origin).resolve())) if spec and spec.origin else None
            assert owner, f"no installed distribution provides {module}"
            found.add(owner)
        else:
            assert owners.get(top), f"{module} is imported by otel_hardening but no installed distribution provides it"
            found.update(canonicalize_name(d) for d in owners[top])
    return found


def test_every_imported_package_is_declared() -> None:
    runtime = set(_runtime())
    undeclared = sorted(_imported_distributions() - runtime - set(NOT_RUNTIME))
    assert not undeclared, f"imported by otel_hardening but not in [project.dependencies]: {undeclared}"


def test_every_runtime_floor_is_the_pin_the_floors_run_installs() -> None:
    runtime, floors = _runtime(), _floors()
    missing = sorted(set(runtime) - set(floors))
    assert not missing, f"no floor pinned in constraints/floors.txt for {missing}"
    different = {name: (str(req), str(floors[name])) for name, req in runtime.items() if _lower(req) != floors[name]}
    assert not different, f"pyproject.toml's floor differs from constraints/floors.txt: {different}"


FLOORS_RUN = os.environ.get("OTEL_HARDENING_FLOORS_RUN") == "1"
"""Set by ./run test for its run in .venv-floors."""


def test_the_installed_versions_are_the_ones_this_run_claims_to_test() -> None:
    if FLOORS_RUN:
        wrong = {name: version(name) for name, pinned in _floors().items() if Version(version(name)) != pinned}
        assert not wrong, f"the floors run has versions other than constraints/floors.txt: {wrong}"
    else:
        outside = {name: version(name) for name, req in _runtime().items() if version(name) not in req.specifier}
        assert not outside, f"installed outside the declared ranges: {outside}"


def test_httpx_and_httpcore_are_capped_below_their_next_minor_release() -> None:
    runtime = _runtime()
    for name in CAPPED:
        caps = [Version(s.version) for s in runtime[name].specifier if s.operator == "<"]
        assert len(caps) == 1, f"{runtime[name]}: a < cap expected"
        cap, installed = caps[0], Version(version(name))
        assert cap.micro == 0 and cap > _floors()[name], (name, str(cap))
        if not FLOORS_RUN:  # the newest run: the cap is right above the newest release tested
            assert (cap.major, cap.minor) == (installed.major, installed.minor + 1), \
                f"{name} capped at <{cap}: the next minor release after the tested {installed} expected"
