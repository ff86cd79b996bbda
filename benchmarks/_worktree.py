"""A git revision checked out in a temporary worktree, for the A/B benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIT = shutil.which("git") or "git"


@contextmanager
def base_worktree(revision: str) -> Iterator[Path]:
    """``revision`` checked out (detached) in a temporary folder, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(  # noqa: S603 - git with a revision the user named
            [GIT, "worktree", "add", "--detach", "-q", str(base), revision], cwd=ROOT, check=True
        )
        try:
            yield base
        finally:
            subprocess.run([GIT, "worktree", "remove", "--force", str(base)], cwd=ROOT, check=True)  # noqa: S603
