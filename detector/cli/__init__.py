"""Command line (typer only): one module per command group; ``detector.cli.main`` holds the app."""

from detector.cli.main import app, entry, main

__all__ = ["app", "entry", "main"]
