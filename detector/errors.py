"""The project's root error, with an optional location, and the kinds the command line sorts by.

Every module may raise these; the command line catches them in one place (``detector.cli.main.main``)
and prints one line, ``location: message``, then exits with the kind's code (``docs/cli.md``).
"""

from __future__ import annotations

from typing import ClassVar


class DetectorError(Exception):
    """An error a user can act on: ``message`` says what is wrong and what to do; ``location`` names
    the file (``path:line``), variable, port or address it comes from, when known."""

    #: Exit status of the command line for this kind of error.
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, location: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ConfigError(DetectorError, ValueError):
    """A setting, option, rule, allow-list, model or IP-intel file that cannot be used (exit 2).

    Also a ``ValueError``, which loaders raised before this class existed."""

    exit_code = 2


class InputError(DetectorError):
    """Input data that cannot be read or yields no event (exit 5)."""

    exit_code = 5


class ServiceError(DetectorError):
    """A service the command needs (the Kafka broker) cannot be reached (exit 6)."""

    exit_code = 6
