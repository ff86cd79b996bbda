"""Rule reload while the daemon runs: SIGHUP or changed files give a new rule set, window state stays.

A rule set that does not load is logged by the watcher and counted here (``result="failed"``); the
running rules stay, and the same broken files are not tried again until they change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from detector.detect.rules import RuleWatcher
    from detector.detect.rules.ruleset import RuleSet
    from detector.runtime.metrics import Metrics


class RuleReloader:
    """Polls a ``RuleWatcher`` once per loop and counts the outcome on the metrics registry."""

    def __init__(self, watcher: RuleWatcher, metrics: Metrics) -> None:
        self.watcher = watcher
        self.metrics = metrics
        metrics.track_rule_reloads()

    @property
    def current(self) -> RuleSet:
        """The rule set in force (a freshly restored engine takes it)."""
        return self.watcher.current

    def poll(self) -> RuleSet | None:
        """A new rule set to swap in, or None (nothing changed, or the change did not load)."""
        before = self.watcher.errors
        new = self.watcher.poll()
        if new is None:
            if self.watcher.errors and self.watcher.errors is not before:
                self.metrics.record_rule_reload(ok=False)
            return None
        self.metrics.record_rule_reload(ok=True)
        return new
