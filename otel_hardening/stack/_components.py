"""The stack's Go components (Jaeger, VictoriaLogs, and the tools the tests use): pinned in
components.tsv (package data), built once by tools/build-component.sh into the same cache as the
collector."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from otel_hardening.stack._paths import cache_dir
from otel_hardening.stack._process import StackError


@dataclass(frozen=True)
class Component:
    name: str
    module: str
    version: str
    binary: str

    @property
    def env_var(self) -> str:
        """``OTEL_HARDENING_<NAME>_BIN``: a binary to use instead of the cached build."""
        return f"OTEL_HARDENING_{self.name.upper().replace('-', '_')}_BIN"

    @property
    def cache_path(self) -> Path:
        return cache_dir() / f"{self.name}-{self.version}" / self.binary

    @property
    def build_command(self) -> str:
        return f"bash tools/build-component.sh {self.name}"


def components() -> dict[str, Component]:
    """Every row of components.tsv, by name."""
    text = resources.files("otel_hardening.stack").joinpath("components.tsv").read_text()
    table: dict[str, Component] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, module, version, binary = line.split("\t")
        table[name] = Component(name, module, version, binary)
    return table


def component(name: str) -> Component:
    table = components()
    if name not in table:
        raise StackError(f"unknown component {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def find_component(name: str) -> Path:
    """``$OTEL_HARDENING_<NAME>_BIN`` if set, else the cached build; a StackError says how to build it."""
    comp = component(name)
    env = os.environ.get(comp.env_var)
    if env:
        path = Path(env)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise StackError(f"{comp.env_var}={env} is not an executable file")
        return path
    path = comp.cache_path
    if path.is_file() and os.access(path, os.X_OK):
        return path
    raise StackError(
        f"{name} is not built (no {path}): build it once with `{comp.build_command}` "
        f"(from a checkout; minutes), or set {comp.env_var}"
    )
