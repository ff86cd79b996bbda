"""Validation against the event contract: the reject a bad record becomes, and the column-wise checks.

``validate_flat`` takes a flattened batch (``detector.schema.flatten_exprs``) from either reader (JSON in
``detector.decode``, Parquet in ``detector.decode_parquet``) and computes, in one ``select``, the first
failing check of every row: required fields, the schema version, lengths, ranges, the tier, the IP
address and simhash patterns and RFC 3339 timestamps. A failure is a ``Reject`` carrying a reason code
(``REASONS``: a small fixed set, safe as a metric label), the field, a detail message, the record's
position and a structural payload, never the record's content.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import orjson
import polars as pl

from detector.schema import EVENT_SCHEMA, FIELD_PATHS, parse_ts

#: Reject reason codes (bounded: used as a metric label). ``unreadable``: a file (or the rest of one)
#: that could not be read at all (a truncated gzip or Parquet file), rejected as one entry.
REASONS = (
    "not_json",
    "not_object",
    "missing_field",
    "type_error",
    "invalid_value",
    "schema_version",
    "oversized",
    "duplicate_key",
    "unreadable",
)


@dataclass(frozen=True)
class Reject:
    """One record (or unreadable file) that failed decoding or validation.

    ``raw`` is the dead-letter payload: the record's structure as JSON (``detector.deadletter``), never
    its content.
    """

    reason: str
    field: str | None
    detail: str
    position: str
    raw: bytes
    #: The record's index within its batch (orders rejects; not written out).
    index: int = -1

    def to_json_dict(self) -> dict[str, object]:
        """JSON-ready form for the dead-letter sink."""
        return {
            "reason": self.reason,
            "field": self.field,
            "detail": self.detail,
            "position": self.position,
            "record": _payload(self.raw),
        }


def _payload(raw: bytes) -> object:
    """A reject's payload as JSON; a payload built elsewhere that is not JSON is described, not copied."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"bytes": len(raw)}


# --------------------------------------------------------------------------------------------------
# Column-wise checks on the flattened frame
# --------------------------------------------------------------------------------------------------
# ASCII digits only: polars' regex ``\d`` is Unicode and would take "\u0663.2.3.4".
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H = r"[0-9a-fA-F]{1,4}"
_LS32 = rf"(?:{_H}:{_H}|{_IPV4})"
_IPV6 = (  # RFC 3986 IPv6address: every RFC 4291 text form, embedded IPv4 (64:ff9b::1:192.0.2.33) included
    r"(?:"
    rf"(?:{_H}:){{6}}{_LS32}|"
    rf"::(?:{_H}:){{5}}{_LS32}|"
    rf"(?:{_H})?::(?:{_H}:){{4}}{_LS32}|"
    rf"(?:(?:{_H}:){{0,1}}{_H})?::(?:{_H}:){{3}}{_LS32}|"
    rf"(?:(?:{_H}:){{0,2}}{_H})?::(?:{_H}:){{2}}{_LS32}|"
    rf"(?:(?:{_H}:){{0,3}}{_H})?::{_H}:{_LS32}|"
    rf"(?:(?:{_H}:){{0,4}}{_H})?::{_LS32}|"
    rf"(?:(?:{_H}:){{0,5}}{_H})?::{_H}|"
    rf"(?:(?:{_H}:){{0,6}}{_H})?::"
    r")"
)
IP_RE = rf"^(?:{_IPV4}|{_IPV6})$"

_REQUIRED = (
    "schema_version",
    "request_id",
    "ts",
    "account_id",
    "model",
    "client_ip",
    "input_tokens",
    "output_tokens",
)
_MAX_LEN = {
    "request_id": 128,
    "account_id": 128,
    "org_id": 128,
    "api_key_id": 128,
    "model": 128,
    "endpoint": 256,
    "user_agent": 1024,
    "tls_fingerprint": 256,
    "sdk": 128,
    "payment_fingerprint": 256,
    "billing_country": 2,
    "reseller_id": 128,
    "system_prompt_hash": 128,
    "stop_reason": 64,
    "prompt_lang": 16,
}
_MIN_LEN_1 = ("request_id", "account_id", "model")
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "status": (100, 599),
    "latency_ms": (0, None),
    "input_tokens": (0, None),
    "output_tokens": (0, None),
    "reasoning_tokens": (0, None),
    "max_tokens": (0, None),
    "temperature": (0, None),
    "top_p": (0, 1),
    "n": (1, None),
    "top_logprobs": (0, None),
    "tools": (0, None),
    "prompt_turns": (0, None),
    "prompt_chars": (0, None),
}
TIERS = ("free", "standard", "enterprise", "education", "research", "startup", "reseller")


def _checks() -> list[tuple[str, str, pl.Expr]]:
    """(reason, flat column, failing condition) in report order: the first failing check wins.

    Timestamps are checked on ``_ts`` / ``_created``: the parsed values, computed once beforehand.
    """
    c = pl.col
    out: list[tuple[str, str, pl.Expr]] = [("missing_field", name, c(name).is_null()) for name in _REQUIRED]
    out.append(("schema_version", "schema_version", c("schema_version") != 1))
    out += [("invalid_value", name, c(name).str.len_chars() < 1) for name in _MIN_LEN_1]
    out += [("invalid_value", name, c(name).str.len_chars() > n) for name, n in _MAX_LEN.items()]
    out.append(("invalid_value", "ts", c("_ts").is_null()))
    out.append(
        (
            "invalid_value",
            "account_created_at",
            c("account_created_at").is_not_null() & c("_created").is_null(),
        )
    )
    out.append(("invalid_value", "client_ip", ~c("client_ip").str.contains(IP_RE)))
    for name, (lo, hi) in _RANGES.items():
        if lo is not None:
            out.append(("invalid_value", name, c(name) < lo))
        if hi is not None:
            out.append(("invalid_value", name, c(name) > hi))
    out.append(("invalid_value", "tier", c("tier").is_not_null() & ~c("tier").is_in(TIERS)))
    # the contract's pattern, as JSON Schema applies it (Python ``re.search``: ``$`` also before a final \n)
    out.append(("invalid_value", "prompt_simhash", ~c("prompt_simhash").str.contains(r"^[0-9a-f]{16}\n?$")))
    return out


@cache
def _failure() -> pl.Expr:
    """``_first_failure(_checks())``, built once: building its ~90 branches costs about 2 ms a batch."""
    return _first_failure(_checks())


def _first_failure(checks: list[tuple[str, str, pl.Expr]]) -> pl.Expr:
    """A String column: ``reason|field`` of the first failing check, null when the row is good."""
    return pl.coalesce(
        [pl.when(cond.fill_null(False)).then(pl.lit(f"{reason}|{col}")) for reason, col, cond in checks]
    ).alias("_fail")


def _describe(reason: str, col: str) -> str:
    path = FIELD_PATHS.get(col, col)
    return {
        "missing_field": f"{path}: required field is missing or null",
        "schema_version": f"{path}: unsupported schema version (expected 1)",
        "invalid_value": f"{path}: value out of range or malformed per the contract",
    }.get(reason, f"{path}: {reason}")


#: RFC 3339 ``date-time`` as the contract reads it: calendar fields in range, no leap second, no hour
#: 24, an offset ("Z" or +hh:mm under 24 h); lower-case "t" and "z" allowed. Year 0000 is refused apart.
RFC3339_RE = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)


def strict_ts(expr: pl.Expr) -> pl.Expr:
    """Parse an RFC 3339 string column to UTC microseconds; null unless it is a contract date-time."""
    ok = expr.str.contains(RFC3339_RE) & ~expr.str.starts_with("0000")
    return pl.when(ok).then(parse_ts(expr.str.to_uppercase()))


def validate_flat(
    flat: pl.DataFrame, position_of: Callable[[int], str], payload_of: Callable[[int], bytes]
) -> tuple[pl.DataFrame, list[Reject]]:
    """Column-wise validation of a flattened frame; returns good rows in ``EVENT_SCHEMA`` and rejects.

    ``flat`` must carry ``_pos`` (the record's index within the batch, for positions and payloads);
    ``payload_of(pos)`` gives a reject's dead-letter payload.
    """

    def utc(name: str) -> pl.Expr:
        if flat.schema[name] == pl.String:
            return strict_ts(pl.col(name))
        return pl.col(name).dt.convert_time_zone("UTC").dt.cast_time_unit("us")

    flagged = flat.with_columns(utc("ts").alias("_ts"), utc("account_created_at").alias("_created"))
    flagged = flagged.with_columns(_failure())
    bad = flagged.filter(pl.col("_fail").is_not_null()).select("_pos", "_fail")
    rejects: list[Reject] = []
    for pos, fail in bad.iter_rows():
        reason, col = fail.split("|", 1)
        rejects.append(
            Reject(
                reason,
                FIELD_PATHS.get(col, col),
                _describe(reason, col),
                position_of(pos),
                payload_of(pos),
                pos,
            )
        )
    good = (
        flagged.filter(pl.col("_fail").is_null())
        .with_columns(pl.col("_ts").alias("ts"), pl.col("_created").alias("account_created_at"))
        .select([*EVENT_SCHEMA.keys(), "_pos"])
    )
    return good, rejects
