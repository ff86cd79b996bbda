"""Reload the rules when their files change, keeping the running set when the new one is broken."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from detector.detect.rules.errors import RuleError, RuleLoadError
from detector.detect.rules.loader import Catalogues, load_rules, rule_files
from detector.detect.rules.ruleset import RuleSet

log = logging.getLogger(__name__)

Fingerprint = frozenset[tuple[str, int, int]]


def fingerprint(directory: Path) -> Fingerprint:
    """The (relative path, mtime ns, size) set of the rule files: an edit, addition or removal changes it."""
    entries: set[tuple[str, int, int]] = set()
    for path in rule_files(directory):
        try:
            stat = path.stat()
        except OSError:  # removed between listing and stat: the next poll sees the new set
            continue
        entries.add((str(path.relative_to(directory)), stat.st_mtime_ns, stat.st_size))
    return frozenset(entries)


class RuleWatcher:
    """Holds the current ``RuleSet`` and swaps in a new one when the rule files change.

    The first load happens in the constructor and raises ``RuleLoadError`` (fail at start-up). Later,
    ``poll()`` reloads when the files' (path, mtime, size) set changed or ``request_reload()`` was
    called (safe from a SIGHUP handler: it only sets a flag). A reload that fails keeps the old set,
    stores the errors in ``errors``, logs them and passes them to ``on_error``; the same broken files
    are not reloaded again until they change.
    """

    def __init__(
        self,
        directory: Path,
        catalogues: Catalogues,
        *,
        on_error: Callable[[RuleLoadError], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.catalogues = catalogues
        self.on_error = on_error
        self._fingerprint = fingerprint(self.directory)
        self.current: RuleSet = load_rules(self.directory, catalogues)
        self.errors: list[RuleError] = []
        self._reload_requested = False

    def request_reload(self) -> None:
        """Make the next ``poll()`` reload even if no file changed (e.g. on SIGHUP)."""
        self._reload_requested = True

    def poll(self) -> RuleSet | None:
        """The new ``RuleSet`` if the files changed and load cleanly; otherwise None (``current`` stays)."""
        seen = fingerprint(self.directory)
        forced, self._reload_requested = self._reload_requested, False
        if seen == self._fingerprint and not forced:
            return None
        self._fingerprint = seen  # taken before loading: an edit during the load triggers another reload
        try:
            new = load_rules(self.directory, self.catalogues)
        except RuleLoadError as exc:
            self.errors = exc.errors
            log.error("rule reload failed, keeping the %d loaded rules:\n%s", len(self.current), exc)
            if self.on_error is not None:
                self.on_error(exc)
            return None
        self.errors = []
        self.current = new
        log.info("rules reloaded: %d rules", len(new))
        return new
