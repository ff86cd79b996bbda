"""``python -m detector``."""

from detector.cli import entry

entry()
