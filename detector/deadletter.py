"""Dead-letter payloads that keep a rejected record's structure, never its content.

A reject's payload is built from an allow-list: the contract's metadata fields (ids, time, model,
endpoint, status) when they have the contract's type and length; for every other contract field present,
its path, JSON type and length; the number of fields outside the contract (their names are not copied:
a key can carry text as well as a value can); and the record's size and SHA-256. Nothing else of the
record is written, so prompt text cannot leak whichever key, nesting or escape carries it. The work is
linear in the record's size (one JSON parse, one hash), and a record over ``max_parse`` bytes is not
parsed at all.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import polars as pl

from detector.schema import RAW_SCHEMA

#: Contract fields copied by value (when a string of at most 128 characters, or an integer).
METADATA = (
    "schema_version",
    "request_id",
    "ts",
    "account_id",
    "org_id",
    "api_key_id",
    "model",
    "endpoint",
    "status",
)
_MAX_VALUE_CHARS = 128
#: Records above this size are described by size and hash only (the contract's own record limit).
MAX_PARSE_BYTES = 1 << 20


def _shape(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"type": "string", "len": len(value)}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int | float):
        return {"type": "number"}
    if isinstance(value, list):
        return {"type": "array", "len": len(value)}
    if isinstance(value, dict):
        return {"type": "object", "len": len(value)}
    return {"type": "null"}


def describe(obj: Any) -> dict[str, Any]:
    """The allow-listed structure of a decoded record (any JSON value)."""
    if not isinstance(obj, dict):
        return {"json": _shape(obj)["type"]}
    meta: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    unknown = 0
    for key, value in obj.items():
        if key not in RAW_SCHEMA:
            unknown += 1
            continue
        ok_value = (isinstance(value, str) and len(value) <= _MAX_VALUE_CHARS and value.isprintable()) or (
            isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1 << 63
        )
        if key in METADATA and ok_value:
            meta[key] = value
            continue
        fields[key] = _shape(value)
        dtype = RAW_SCHEMA[key]
        if isinstance(dtype, pl.Struct) and isinstance(value, dict):
            names = {f.name for f in dtype.fields}
            for sub, sub_value in value.items():
                if sub in names:
                    fields[f"{key}.{sub}"] = _shape(sub_value)
                else:
                    unknown += 1
    return {"metadata": meta, "fields": fields, "unknown_fields": unknown}


def summarize(raw: bytes, obj: Any = None, *, parsed: bool = False) -> bytes:
    """The dead-letter payload (JSON bytes) for one rejected record.

    ``obj``/``parsed``: the record already decoded (a Parquet row), to skip the JSON parse.
    """
    out: dict[str, Any] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    if not parsed and len(raw) <= MAX_PARSE_BYTES:
        try:
            obj, parsed = orjson.loads(raw), True
        except orjson.JSONDecodeError:
            parsed = False
    if parsed:
        out.update(describe(obj))
    else:
        out["json"] = "unparsable" if len(raw) <= MAX_PARSE_BYTES else "not parsed (too large)"
    return orjson.dumps(out)
