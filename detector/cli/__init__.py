"""Command line (typer only): one module per command group; ``detector.cli.main`` holds the app.

Before anything imports polars, ``allocator_env`` sets its allocator's options (``detector.memory``).
"""

import os

from detector.memory import allocator_env

allocator_env(os.environ)

from detector.cli.main import app, entry, main  # noqa: E402 (polars loads here, after its allocator options)

__all__ = ["app", "entry", "main"]
