"""``python -m detector``."""

from detector.cli import app

app()
