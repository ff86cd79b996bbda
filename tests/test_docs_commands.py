"""Every shell command in the documentation still runs as written.

The test reads README.md, docs/*.md and the folder READMEs, takes every fenced ``bash``, ``sh`` or
``console`` block and runs it. The convention, stated in README.md ("Documentation") and checked
here: a block that is long or needs a broker, a daemon, Docker or a cluster carries a comment on
the line right before its fence,

    <!-- not-run: the reason, in words -->

and is only parsed, never run. Every other block is run:

- ``bash``/``sh`` blocks as one script (``bash -euo pipefail``), ``console`` blocks as the lines that
  start with ``$ `` (output lines are ignored);
- in a sandbox that looks like the repository root: a temporary copy of the repository (its ``.venv``
  linked) with ``../shared`` beside it, so the commands find what they expect, and nothing they write
  (``out/...``, a retrained model) touches the real checkout;
- the blocks of one file in document order, in one sandbox (a later block may read what an earlier
  one wrote), with the repository's ``.venv/bin`` first on ``PATH`` and no ``DETECTOR_*`` variables
  inherited from the caller.

Each run block must exit 0 within ``QUICK_S`` seconds: documented examples use small ``--days`` and
``--scale`` so that the whole file runs in seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "deploy" / "README.md",
    REPO / "dashboards" / "README.md",
    REPO / "models" / "README.md",
]
SHELL = ("bash", "sh", "console")
#: Wall-clock bound for one run block. The blocks take 1-17 s each on an idle 2-core machine; the bound
#: leaves room for a busy CI machine and still catches an example that simulates days of traffic.
QUICK_S = 120.0
#: The README is the user's page; the rest lives in docs/ (issue 12).
README_MAX_LINES = 250
MARK = re.compile(r"<!--\s*not-run:(.*?)-->")
FENCE = re.compile(r"^(\s*)(`{3,})\s*([\w+-]*)\s*$")
#: Not copied into the sandbox: git metadata, caches, outputs and the virtual environment (linked).
NOT_COPIED = (".git", ".venv", "out", "tmp", "__pycache__", "*_cache", "*.egg-info")


@dataclass(frozen=True)
class Block:
    """One fenced shell block."""

    path: Path
    line: int
    lang: str
    text: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    def script(self) -> str:
        """What runs: the whole block, or a console block's ``$ `` lines (with their continuations)."""
        if self.lang != "console":
            return self.text
        out: list[str] = []
        going_on = False
        for line in self.text.splitlines():
            if line.startswith("$ "):
                out.append(line[2:])
            elif going_on:
                out.append(line)
            else:
                continue
            going_on = line.rstrip().endswith("\\")
        return "\n".join(out) + "\n"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a shell language in ``path``, with the not-run mark right above it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, ticks, lang = m.groups()
        end = i + 1
        while end < len(lines) and lines[end].strip() != ticks:
            end += 1
        if lang in SHELL:
            mark = MARK.fullmatch(lines[i - 1].strip()) if i else None
            body = "\n".join(ln.removeprefix(indent) for ln in lines[i + 1 : end]) + "\n"
            found.append(Block(path, i + 1, lang, body, mark.group(1).strip() if mark else None))
        i = end + 1
    return found


def _all_blocks() -> list[Block]:
    return [b for p in DOC_FILES if p.is_file() for b in blocks(p)]


def test_the_documentation_has_commands_and_runs_most_of_them() -> None:
    """The parser finds blocks (a broken fence pattern would make every other test vacuous)."""
    found = _all_blocks()
    run = [b for b in found if b.not_run is None]
    assert len(found) >= 10, [b.where for b in found]
    assert len(run) >= 5, [b.where for b in run]
    assert any(b.path.name == "README.md" and b.path.parent == REPO for b in run)


@pytest.mark.parametrize(
    "path", [p for p in DOC_FILES if p.is_file()], ids=lambda p: str(p.relative_to(REPO))
)
def test_every_not_run_mark_has_a_reason_and_a_block(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines):
        if "not-run" not in line:
            continue
        where = f"{path.relative_to(REPO)}:{n + 1}"
        m = MARK.fullmatch(line.strip())
        if m is None:
            # prose may name the convention in backticks; a real mark is a line of its own
            assert "`<!-- not-run" in line, (
                f"{where}: malformed not-run mark (write <!-- not-run: reason -->)"
            )
            continue
        reason = m.group(1).strip()
        assert len(reason.split()) >= 2, f"{where}: a not-run mark needs a reason in words, got {reason!r}"
        nxt = FENCE.match(lines[n + 1]) if n + 1 < len(lines) else None
        assert nxt and nxt.group(3) in SHELL, f"{where}: a not-run mark must sit right above a shell fence"


def _sandbox(root: Path, shared: Path) -> Path:
    """A copy of the repository (5 MB; the virtual environment linked, not copied) with ../shared."""
    repo = root / "repo"
    shutil.copytree(REPO, repo, symlinks=True, ignore=shutil.ignore_patterns(*NOT_COPIED))
    (repo / ".venv").symlink_to(REPO / ".venv")
    (root / "shared").symlink_to(shared)
    return repo


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    venv_bin = REPO / ".venv" / "bin"
    bin_dir = venv_bin if venv_bin.is_dir() else Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "120"
    return env


@pytest.mark.shared
@pytest.mark.parametrize(
    "path",
    [p for p in DOC_FILES if p.is_file() and any(b.not_run is None for b in blocks(p))],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_documented_commands_run_as_written(path: Path, tmp_path: Path, shared_dir: Path) -> None:
    repo = _sandbox(tmp_path, shared_dir)
    env = _env()
    for block in blocks(path):
        if block.not_run is not None:
            continue
        started = time.monotonic()
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.script()],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=QUICK_S * 2,
            check=False,
        )
        took = time.monotonic() - started
        assert done.returncode == 0, (
            f"{block.where}: exit {done.returncode}\n--- block\n{block.text}--- stderr (tail)\n"
            f"{done.stderr[-3000:]}\n--- stdout (tail)\n{done.stdout[-1500:]}"
        )
        assert took < QUICK_S, (
            f"{block.where}: took {took:.0f} s; shrink its --days/--scale or mark it <!-- not-run: why -->"
        )


#: How a shell command starts, for finding one in a fence that names no language.
_COMMAND = re.compile(r"^\s*(\$ )?(detector|python|bash|\.venv/bin/|docker|helm|promtool|curl|pip)\b")


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_commands_sit_in_shell_fences(path: Path) -> None:
    """A command in a fence with no language would escape the run above: label it ``bash``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != m.group(2):
            end += 1
        if not m.group(3):
            commands = [ln for ln in lines[i + 1 : end] if _COMMAND.match(ln)]
            assert not commands, f"{path.relative_to(REPO)}:{i + 1}: label this fence bash: {commands[0]!r}"
        i = end + 1


def test_the_readme_is_a_short_user_page() -> None:
    n = len((REPO / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, (
        f"README.md has {n} lines (at most {README_MAX_LINES}; the rest goes in docs/)"
    )


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_prometheus_alert_has_a_runbook_section() -> None:
    """``runbook_url: .../docs/operations.md#<alertname-lowercase>`` must land on a section."""
    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert alerts
    anchors = _anchors(REPO / "docs" / "operations.md")
    missing = [name for name in alerts if name.lower() not in anchors]
    assert not missing, f"docs/operations.md has no section for {missing}"
    for name, rule in alerts.items():
        url = rule.get("annotations", {}).get("runbook_url")
        if url is not None:
            assert url.endswith(f"docs/operations.md#{name.lower()}"), f"{name}: runbook_url {url}"


#: Paths in backticks that name a file or folder of this repository (stale ones fail the test).
_PATH = re.compile(r"`((?:detector|deploy|dashboards|benchmarks|scripts|tests|rules|models|docs)/[\w./-]*)`")
_LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)")


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_paths_and_links_in_the_documentation_exist(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(REPO)
    if path.parent.parent == REPO and path.parent.name != "docs":
        text = ""  # folder READMEs name paths relative to their folder; only their links are checked
    stale = sorted({p for p in _PATH.findall(text) if not (REPO / p.rstrip("/")).exists()})
    assert not stale, f"{where} names paths that do not exist: {stale}"
    broken: list[str] = []
    for target, anchor in _LINK.findall(path.read_text(encoding="utf-8")):
        if "://" in target:
            continue
        dest = (path.parent / target).resolve() if target else path
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}#{anchor}")
    assert not broken, f"{where} links to missing files or sections: {broken}"
