"""The command line's one error path: every failure becomes one line on stderr and a documented exit code.

``describe`` turns an exception into ``(line, exit code)``: the project's own ``DetectorError`` kinds
carry both; errors of the loaders that predate them (rules, IP intel, models, settings, input files,
Kafka) are recognised here, so no command catches anything itself. ``unknown_variables`` warns about
``DETECTOR_*`` names no setting reads. Exit codes are listed in ``docs/cli.md``.
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable, Mapping
from typing import Any

from detector.errors import ConfigError, DetectorError, InputError

#: Exit codes (docs/cli.md).
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = InputError.exit_code
#: Variables read outside the settings classes: the test suite's shared folder, and the switch that
#: shows the Python traceback of an error.
EXTRA_VARIABLES = ("DETECTOR_SHARED", "DETECTOR_TRACEBACK")
#: At most this many problems of one error are spelled out on its line; the rest are counted.
MAX_PROBLEMS = 5


def one_line(text: str) -> str:
    """``text`` on one line: its non-blank lines joined with ``; ``."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _capped(problems: list[str]) -> str:
    head = "; ".join(problems[:MAX_PROBLEMS])
    rest = len(problems) - MAX_PROBLEMS
    return head + (f"; and {rest} more" if rest > 0 else "")


def _settings_prefixes() -> dict[str, str]:
    """Settings class name -> its environment prefix."""
    from detector.runtime.stream.settings import StreamSettings
    from detector.settings import EngineSettings

    return {
        cls.__name__: str(cls.model_config.get("env_prefix", "")).upper()
        for cls in (EngineSettings, StreamSettings)
    }


def known_variables() -> set[str]:
    """Every ``DETECTOR_*`` name a setting reads (nested ones as ``PARENT__CHILD``)."""
    from pydantic import BaseModel

    from detector.runtime.stream.settings import StreamSettings
    from detector.settings import AllocatorSettings, EngineSettings

    names = set(EXTRA_VARIABLES)
    for cls in (EngineSettings, StreamSettings, AllocatorSettings):
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        for name, field in cls.model_fields.items():
            alias = field.validation_alias  # DETECTOR_STAGE: read under its own name
            names.add(alias.upper() if isinstance(alias, str) else f"{prefix}{name.upper()}")
            sub = field.annotation
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                names.update(f"{prefix}{name.upper()}__{s.upper()}" for s in sub.model_fields)
    return names


def unknown_variables(names: Iterable[str]) -> list[str]:
    """A warning for each ``DETECTOR_*`` name no setting reads, with the closest known name."""
    known = known_variables()
    out = []
    for name in sorted(n for n in names if n.upper().startswith("DETECTOR_")):
        if name.upper() in known:
            continue
        close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.75)
        hint = f"did you mean {close[0]}?" if close else "no setting reads it (docs/cli.md lists them)"
        out.append(f"unknown variable {name} is ignored; {hint}")
    return out


def _settings_error(exc: Any, prefix: str) -> str:
    """One line naming each bad variable, its value and what it needs."""
    parts = []
    for d in exc.errors():
        loc = [str(p) for p in d.get("loc", ()) if not str(p).isdigit()]
        var = prefix + "__".join(p.upper() for p in loc) if loc else f"{prefix}*"
        if loc and loc[0].upper().startswith("DETECTOR_"):  # a setting read under its own name (an alias)
            var = "__".join(p.upper() for p in loc)
        value = d.get("input")
        shown = f"={value!r}" if isinstance(value, str | int | float) and len(str(value)) <= 60 else ""
        msg = str(d.get("msg", "invalid")).removeprefix("Value error, ")
        if "timedelta" in msg or d.get("type", "").startswith("time_delta"):
            msg += " (write 900 for seconds, 15m, 2h, 7d, 00:15:00 or PT15M)"
        parts.append(f"{var}{shown}: {msg}")
    return "invalid setting: " + _capped(parts) + "; fix the variable (or the --config file)"


def describe(exc: BaseException) -> tuple[str, int]:
    """The one line to print for ``exc`` and the exit code."""
    import polars as pl
    import yaml
    from pydantic import ValidationError

    from detector.detect.models.runtime import ModelError
    from detector.detect.rules.errors import RuleLoadError
    from detector.enrich.ipintel import IpIntelError
    from detector.enrich.prompt.markers import MarkerError

    if isinstance(exc, ValidationError) and exc.title in (prefixes := _settings_prefixes()):
        return _settings_error(exc, prefixes[exc.title]), ConfigError.exit_code
    if isinstance(exc, RuleLoadError):
        where = _capped([one_line(str(e)) for e in exc.errors])
        return f"rules: {where}; fix the rule file (`detector rules check DIR` lists every error)", EXIT_USAGE
    if isinstance(exc, IpIntelError):
        first, *issues = str(exc).splitlines()
        tail = f": {_capped([i.strip() for i in issues])}" if issues else ""
        return f"IP intelligence: {first}{tail}", EXIT_USAGE
    if isinstance(exc, ModelError | MarkerError):
        return f"models: {one_line(str(exc))}", EXIT_USAGE
    # after the subsystems above, which subclass DetectorError too but keep their own line and code
    if isinstance(exc, DetectorError):
        return one_line(str(exc)), exc.exit_code
    if isinstance(exc, EOFError):
        return f"input ended early (a truncated .gz?): {one_line(str(exc))}", EXIT_INPUT
    if isinstance(exc, pl.exceptions.PolarsError):
        return f"cannot read the input: {one_line(str(exc))}", EXIT_INPUT
    if isinstance(exc, yaml.YAMLError):
        return f"invalid YAML: {one_line(str(exc))}", EXIT_USAGE
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"address already in use: {exc}; choose another port", EXIT_USAGE
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError | PermissionError):
        return f"{exc.filename}: {exc.strerror}", EXIT_USAGE
    kafka = _kafka_error(exc)
    if kafka is not None:
        return kafka
    return (
        f"unexpected error: {type(exc).__name__}: {one_line(str(exc))} "
        "(set DETECTOR_TRACEBACK=1 to see where, and please report it)",
        EXIT_INTERNAL,
    )


def _kafka_error(exc: BaseException) -> tuple[str, int] | None:
    from kafka import errors as kerr

    from detector.errors import ServiceError

    if isinstance(exc, kerr.KafkaTimeoutError | kerr.KafkaConnectionError | kerr.BrokerNotAvailableError):
        return (
            f"Kafka: {type(exc).__name__}: {one_line(str(exc))}; check DETECTOR_STREAM_BOOTSTRAP_SERVERS "
            "and that the broker is up",
            ServiceError.exit_code,
        )
    return None


def environment_warnings(env: Mapping[str, str]) -> list[str]:
    """Warnings about the ``DETECTOR_*`` variables in ``env``."""
    return unknown_variables(env)
