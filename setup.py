"""Build hook: the local stack's configs ship in the wheel, copied from the repo's top-level folders.

collector/, prometheus/, alertmanager/, jaeger/, grafana/ and dashboards/build/ stay the only source: at build
time they are copied into ``otel_hardening/stack/_data/`` inside the wheel (never into the checkout), so
``otel-hardening stack up`` works from an installed wheel. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
STACK_DATA = ("collector", "prometheus", "alertmanager", "jaeger", "grafana", "dashboards/build")
SKIP = shutil.ignore_patterns("*.md", "__pycache__", "*.pyc")


class BuildPyWithStackData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout itself
        target = Path(self.build_lib) / "otel_hardening" / "stack" / "_data"
        shutil.rmtree(target, ignore_errors=True)
        for folder in STACK_DATA:
            source = ROOT / folder
            if source.is_dir():
                shutil.copytree(source, target / folder, ignore=SKIP)


setup(cmdclass={"build_py": BuildPyWithStackData})
