"""The README and docs/*.md: every relative link and #anchor resolves (GitHub's anchor rules), the README
stays a front door, and what it tells users to run does run: the commands' --help, the Python snippets."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code removed."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(re.sub(r"`[^`]*`", "``", line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = "".join(ch for ch in text.strip().lower() if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in page.read_text().splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        match = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    return [target for line in prose(page.read_text()) for target in LINK.findall(line)]


def test_slug_follows_githubs_rules() -> None:
    assert slug("`otel-hardening demo` (`./run demo`)") == "otel-hardening-demo-run-demo"
    assert slug("3. One client: `harden()`") == "3-one-client-harden"
    assert slug("Local stack (no Docker)") == "local-stack-no-docker"
    assert slug("Résumé & [link](x.md) — ok") == "résumé--link--ok"


def test_pages_have_links_to_check() -> None:
    assert len(PAGES) >= 10
    assert sum(len(links(p)) for p in PAGES) >= 40


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: are not checked offline
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not broken, f"{page.name}:\n" + "\n".join(broken)


def test_readme_is_a_front_door() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    commands = text[text.index("## Two commands"):]
    assert commands.index("./run demo") < commands.index("./run test") < commands.index("\n## ")
    every_page = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert every_page <= {Path(t.partition("#")[0]).name for t in links(README)}, "a docs page the index misses"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_every_otel_hardening_command_the_readme_and_cli_page_name_has_help() -> None:
    named = set()
    for page in (README, ROOT / "docs" / "cli.md"):
        named |= set(re.findall(r"`otel-hardening ([a-z]+)\b", page.read_text()))
    assert {"demo", "health", "stack"} <= named, named
    result = _run(sys.executable, "-m", "otel_hardening.cli", "--help")
    assert result.returncode == 0 and "demo" in result.stdout, result.stderr
    for command in sorted(named):
        result = _run(sys.executable, "-m", "otel_hardening.cli", command, "--help")
        assert result.returncode == 0 and result.stdout.strip(), f"otel-hardening {command} --help: {result.stderr}"


def python_snippets(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_snippets_compile(page: Path) -> None:
    for i, snippet in enumerate(python_snippets(page)):
        compile(snippet, f"{page.name} snippet {i + 1}", "exec")


def test_readme_python_snippets_run() -> None:
    """The set-up, install() and harden() snippets run as written (an exporter with nothing listening
    only logs), in one fresh interpreter, in the README's order."""
    snippets = python_snippets(README)
    assert len(snippets) >= 2
    program = "\n".join(snippets) + "\nclient.close()\nprint('ran')\n"
    env_prefix = ["env", "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_TIMEOUT=1",
                  "OTEL_PYTHON_HARDENING_RESOURCES=off", "OTEL_PYTHON_HARDENING_HEALTH=off"]
    result = _run(*env_prefix, sys.executable, "-c", program)
    assert result.returncode == 0 and result.stdout.strip().endswith("ran"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
