"""Batch decoding: raw bytes (JSON Lines, Kafka values) or Parquet frames -> good events + rejects.

Validation is column-wise: polars parses the whole batch against ``RAW_SCHEMA`` in one call, then one
``select`` computes the first failing check of every row. Python touches single records only when the
batch's parse fails: the batch is bisected until the unparseable lines are isolated, and each of those is
explained (with a field-named reason) by the pydantic contract model. A bad record never takes down its
batch. Rejects carry a reason code (a small fixed set, safe as a metric label), the field, a detail
message, the record's position (``file:line`` or ``topic/partition@offset``) and the raw bytes with
``prompt.text`` redacted.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from pydantic import ValidationError

from detector.contracts import GatewayEvent
from detector.schema import EVENT_SCHEMA, FIELD_PATHS, RAW_SCHEMA, flatten_exprs, parse_ts

#: Reject reason codes (bounded: used as a metric label).
REASONS = (
    "not_json",
    "not_object",
    "missing_field",
    "type_error",
    "invalid_value",
    "schema_version",
    "oversized",
)

#: Largest accepted record. Gateways truncate prompts; a multi-megabyte record is a bug or an attack.
MAX_RECORD_BYTES = 1 << 20

REDACTED = "[redacted]"


@dataclass(frozen=True)
class Reject:
    """One record that failed decoding or validation."""

    reason: str
    field: str | None
    detail: str
    position: str
    raw: bytes
    #: The record's index within its batch (orders rejects; not written out).
    index: int = -1

    def to_json_dict(self) -> dict[str, object]:
        """JSON-ready form for the dead-letter sink (raw bytes as text, already redacted)."""
        return {
            "reason": self.reason,
            "field": self.field,
            "detail": self.detail,
            "position": self.position,
            "raw": self.raw.decode("utf-8", "replace"),
        }


@dataclass
class DecodedBatch:
    """Good events in ``EVENT_SCHEMA`` (plus ``_pos``: the record's index in its batch) and rejects."""

    events: pl.DataFrame
    rejects: list[Reject] = field(default_factory=list)
    duplicates: int = 0
    records: int = 0


# --------------------------------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------------------------------
#: A ``"text"`` (or off-contract string ``"prompt"``) value, closed or cut off, even right after a backslash.
_TEXT_RE = re.compile(rb'("(?:text|prompt)"\s*:\s*)"(?:[^"\\]|\\.)*(?:"|\\?$)', re.DOTALL)


def redact(raw: bytes) -> bytes:
    """The raw record with ``prompt.text`` replaced, whether or not the record parses."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _TEXT_RE.sub(rb'\1"' + REDACTED.encode() + rb'"', raw)
    if isinstance(obj, dict | list):
        # at any depth, like the regex below: an envelope ({"payload": {...}}) or a batch array keeps
        # the event's prompt one level down; iterative, as orjson allows deeper nesting than the stack
        stack: list[Any] = [obj]
        while stack:
            node = stack.pop()
            if isinstance(node, list):
                stack.extend(v for v in node if isinstance(v, dict | list))
                continue
            for key, value in node.items():
                if (key == "text" and value is not None) or (
                    key == "prompt" and value is not None and not isinstance(value, dict)
                ):  # "prompt": "<text>" is the off-contract completions style
                    node[key] = REDACTED
                elif isinstance(value, dict | list):
                    stack.append(value)
        try:
            return orjson.dumps(obj)
        except orjson.JSONEncodeError:  # nested deeper than orjson writes (254): redact the bytes instead
            pass
    return _TEXT_RE.sub(rb'\1"' + REDACTED.encode() + rb'"', raw)


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
    out.append(("invalid_value", "prompt_simhash", ~c("prompt_simhash").str.contains(r"^[0-9a-f]{16}$")))
    return out


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


def validate_flat(
    flat: pl.DataFrame, position_of: Callable[[int], str], raw_of: Callable[[int], bytes]
) -> tuple[pl.DataFrame, list[Reject]]:
    """Column-wise validation of a flattened frame; returns good rows in ``EVENT_SCHEMA`` and rejects.

    ``flat`` must carry ``_pos`` (the record's index within the batch, for positions and raw bytes).
    """

    def utc(name: str) -> pl.Expr:
        if flat.schema[name] == pl.String:
            return parse_ts(pl.col(name))
        return pl.col(name).dt.convert_time_zone("UTC").dt.cast_time_unit("us")

    flagged = flat.with_columns(utc("ts").alias("_ts"), utc("account_created_at").alias("_created"))
    flagged = flagged.with_columns(_first_failure(_checks()))
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
                redact(raw_of(pos)),
                pos,
            )
        )
    good = (
        flagged.filter(pl.col("_fail").is_null())
        .with_columns(pl.col("_ts").alias("ts"), pl.col("_created").alias("account_created_at"))
        .select([*EVENT_SCHEMA.keys(), "_pos"])
    )
    return good, rejects


# --------------------------------------------------------------------------------------------------
# JSON Lines / Kafka values
# --------------------------------------------------------------------------------------------------
def _explain(line: bytes, polars_error: str) -> tuple[str, str | None, str]:
    """Field-named reason for one line polars could not parse (slow path, single record)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return "not_json", None, f"not valid JSON: {exc}"
    if not isinstance(obj, dict):
        return "not_object", None, f"expected a JSON object, got {type(obj).__name__}"
    try:
        GatewayEvent.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        etype = str(err["type"])
        if etype == "missing":
            kind = "missing_field"
        elif etype.endswith("_type") or "parsing" in etype:
            kind = "type_error"
        else:  # out of range, too long, bad pattern: the same code the column-wise checks give
            kind = "invalid_value"
        if err["type"] in ("literal_error",) and loc == "schema_version":
            kind = "schema_version"
        return kind, loc or None, f"{loc}: {err['msg']}"
    # the reader's own message (``polars_error``) can quote record content, prompt text included: it
    # never goes into a reject; the record is named by its position and kept (redacted) as raw bytes
    del polars_error
    return "type_error", None, "record does not fit the event schema (the JSON reader rejected it)"


def _parse(data: bytes | Path) -> pl.DataFrame:
    return pl.read_ndjson(data if isinstance(data, Path) else io.BytesIO(data), schema=RAW_SCHEMA)


def decode_lines(
    lines: Sequence[bytes] | bytes | Path,
    position_of: Callable[[int], str],
    *,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> DecodedBatch:
    """Decode a batch of JSON records.

    ``lines`` is one buffer of newline-separated records (a JSON Lines chunk: no per-line Python work
    unless something fails), a path to a plain JSON Lines file (fastest: polars reads it directly; the
    bytes are only loaded if a record must be explained), or a sequence of record values (Kafka).
    ``position_of(i)`` names a record's position for rejects: for a buffer ``i`` is the 0-based line
    index (blank lines count), for a sequence it is the value's index.
    """
    records: list[bytes] | None = None
    orig: list[int] | None = None
    path: Path | None = None
    data = b""
    if isinstance(lines, Path):
        path = lines
    elif isinstance(lines, bytes | bytearray | memoryview):
        data = bytes(lines)
    else:
        records = [v.replace(b"\n", b" ") if b"\n" in v else v for v in lines]
        orig = list(range(len(records)))
        data = b"\n".join(records)

    def split() -> tuple[list[bytes], list[int]]:
        nonlocal records, orig, data
        if records is None or orig is None:
            if path is not None and not data:
                data = path.read_bytes()
            keep = [(i, ln) for i, ln in enumerate(data.split(b"\n")) if ln.strip()]
            records, orig = [ln for _, ln in keep], [i for i, _ in keep]
        return records, orig

    def record(i: int) -> bytes:
        return split()[0][i]

    def position(i: int) -> str:
        return position_of(split()[1][i])

    rejects: list[Reject] = []
    oversized: set[int] = set()
    if records is not None:  # Kafka values: sizes are known without scanning
        for i, r in enumerate(records):
            if len(r) > max_record_bytes:
                oversized.add(i)
                rejects.append(
                    Reject(
                        "oversized",
                        None,
                        f"record of {len(r)} bytes exceeds {max_record_bytes}",
                        position(i),
                        redact(r[:4096]),
                        i,
                    )
                )

    frames: list[pl.DataFrame] = []
    n = 0
    raw: pl.DataFrame | None = None
    nonempty = path is not None or bool(data.strip())
    if nonempty and not oversized:
        try:
            raw = _parse(path if path is not None else data)
            if records is not None and raw.height != len(records):
                raise pl.exceptions.ComputeError("record count mismatch")
        except pl.exceptions.PolarsError:
            raw = None
    if raw is not None:
        frames = [raw.with_row_index("_pos")]
        n = raw.height
    elif nonempty:
        recs, _ = split()
        n = len(recs)
        frames, more = _bisect(recs, position, oversized)
        rejects += more

    raw_frame = pl.concat(frames) if frames else pl.DataFrame(schema={"_pos": pl.UInt32, **RAW_SCHEMA})
    flat = raw_frame.select(pl.col("_pos"), *flatten_exprs())
    good, more = validate_flat(flat, position, record)
    rejects += more
    rejects.sort(key=lambda r: r.index)
    deduped, dups = _dedupe(good)
    return DecodedBatch(deduped, rejects, duplicates=dups, records=n)


def _dedupe(good: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Keep the first event of each request id (a redelivered request is counted once)."""
    first = good.select(pl.col("request_id").is_first_distinct()).to_series()
    if first.all():
        return good, 0
    kept = good.filter(first)
    return kept, good.height - kept.height


def _bisect(
    records: list[bytes], position_of: Callable[[int], str], skip: set[int]
) -> tuple[list[pl.DataFrame], list[Reject]]:
    """Parse ``records``, isolating the lines polars cannot parse (O(bad * log n) parses)."""
    frames: list[pl.DataFrame] = []
    rejects: list[Reject] = []
    stack = [(0, len(records))]
    while stack:
        lo, hi = stack.pop()
        idx = [i for i in range(lo, hi) if i not in skip]
        if not idx:
            continue
        try:
            raw = _parse(b"\n".join(records[i] for i in idx))
            if raw.height != len(idx):
                raise pl.exceptions.ComputeError("record count mismatch (blank or multi-line record)")
            frames.append(
                raw.with_columns(pl.Series("_pos", idx, dtype=pl.UInt32)).select("_pos", *RAW_SCHEMA.keys())
            )
        except pl.exceptions.PolarsError as exc:
            if hi - lo == 1:
                reason, fld, detail = _explain(records[lo], str(exc))
                rejects.append(Reject(reason, fld, detail, position_of(lo), redact(records[lo]), lo))
            else:
                mid = (lo + hi) // 2
                stack.append((mid, hi))
                stack.append((lo, mid))
    frames.sort(key=lambda f: int(f["_pos"][0]) if f.height else 0)
    return frames, rejects


# --------------------------------------------------------------------------------------------------
# Parquet / already-structured frames
# --------------------------------------------------------------------------------------------------
class SchemaMismatchError(ValueError):
    """A structured input's column has a type the event schema cannot take (a whole-file problem)."""


def conform(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """Bring a nested frame (e.g. from Parquet) to ``RAW_SCHEMA``'s columns; missing ones become null.

    ``ts`` and ``account.created_at`` may be text (RFC 3339) or timezone-aware datetimes.
    """
    exprs: list[pl.Expr] = []
    for name, dtype in RAW_SCHEMA.items():
        if name not in frame.columns:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
            continue
        have = frame.schema[name]
        if isinstance(dtype, pl.Struct):
            if not isinstance(have, pl.Struct):
                raise SchemaMismatchError(f"{source}: column {name!r} is {have}, expected a struct")
            present = {f.name: f.dtype for f in have.fields}
            fields = []
            for f in dtype.fields:
                if f.name not in present:
                    fields.append(pl.lit(None, dtype=f.dtype).alias(f.name))
                elif (
                    name == "account" and f.name == "created_at" and isinstance(present[f.name], pl.Datetime)
                ):
                    if getattr(present[f.name], "time_zone", None) is None:
                        raise SchemaMismatchError(
                            f"{source}: field 'account.created_at' is a naive datetime; UTC offsets required"
                        )
                    fields.append(pl.col(name).struct.field(f.name))
                else:
                    fields.append(pl.col(name).struct.field(f.name).cast(f.dtype, strict=True))
            exprs.append(pl.when(pl.col(name).is_not_null()).then(pl.struct(fields)).alias(name))
        elif name == "ts" and isinstance(have, pl.Datetime):
            if have.time_zone is None:
                raise SchemaMismatchError(f"{source}: column 'ts' is a naive datetime; UTC offsets required")
            exprs.append(pl.col(name))
        else:
            exprs.append(pl.col(name).cast(dtype, strict=True))
    try:
        return frame.select(exprs)
    except pl.exceptions.PolarsError as exc:
        raise SchemaMismatchError(f"{source}: {exc}") from exc


def decode_frame(frame: pl.DataFrame, position_of: Callable[[int], str]) -> DecodedBatch:
    """Validate a structured batch (Parquet rows) column-wise, like ``decode_lines`` does for JSON."""
    source = position_of(0).rsplit(":", 1)[0] if frame.height else "frame"
    raw = conform(frame, source).with_row_index("_pos")
    flat = raw.select(pl.col("_pos"), *flatten_exprs())

    def raw_of(i: int) -> bytes:
        return orjson.dumps(frame.slice(i, 1).to_dicts()[0], default=str)

    good, rejects = validate_flat(flat, position_of, raw_of)
    deduped, dups = _dedupe(good)
    return DecodedBatch(deduped, rejects, duplicates=dups, records=frame.height)
