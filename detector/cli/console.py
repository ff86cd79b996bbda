"""The command line's two consoles: progress and messages on stderr, results on stdout."""

from __future__ import annotations

import sys

from rich.console import Console

#: Progress bars and messages (stderr, so that stdout carries only results).
console = Console(stderr=True)


def out_console() -> Console:
    """stdout console; piped output gets a wide page so that tables are never cut."""
    return Console() if sys.stdout.isatty() else Console(width=1000)
