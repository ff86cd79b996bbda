"""Errors of the rules subsystem: every one says which file, line and column it comes from.

Loading a rule directory never stops at the first problem: each file's problems are collected as
``RuleError`` values and raised together as one ``RuleLoadError`` (pySigma's ``collect_errors`` habit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from detector.errors import DetectorError


@dataclass(frozen=True, slots=True)
class RuleError:
    """One problem in one rule file.

    ``line`` and ``column`` are 1-based positions in the file (``None`` where unknown, e.g. a missing
    directory). ``rule_id`` is the file's stem, so errors can be grouped by rule.
    """

    path: Path
    line: int | None
    column: int | None
    message: str

    @property
    def rule_id(self) -> str:
        """The rule the error belongs to (the file name's stem)."""
        return self.path.stem

    @property
    def location(self) -> str:
        """``path:line:column`` (as much of it as is known)."""
        where = str(self.path)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class RuleLoadError(DetectorError):
    """Raised by ``load_rules`` with every error of every file found in one run."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors: list[RuleError] = list(errors)
        noun = "error" if len(self.errors) == 1 else "errors"
        lines = "\n".join(f"  {e}" for e in self.errors)
        super().__init__(f"{len(self.errors)} rule {noun}:\n{lines}")


class ExpressionError(DetectorError):
    """A syntax or type error in a condition; ``pos`` is the 0-based offset in the condition string."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
