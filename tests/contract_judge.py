"""The contract as a judge, independent of the decoder: strict JSON + ``gateway-event.schema.json``.

Used by the property and fuzz tests. A record is accepted when orjson (strict RFC 8259) parses it, no
contract key is written twice in its object, and the JSON Schema (with the strict RFC 3339 ``date-time``
of ``test_contracts``) accepts the parsed object. Two decisions the contract leaves open are applied here
as the decoder documents them: a leading UTF-8 byte order mark is ignored, and an integer must fit in 64
signed bits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from test_contracts import format_checker

from detector.schema import RAW_SCHEMA

SHARED = Path(__file__).resolve().parents[2] / "shared"
_INT_FIELDS = {
    ("usage", "input_tokens"),
    ("usage", "output_tokens"),
    ("usage", "reasoning_tokens"),
    ("params", "max_tokens"),
    ("params", "n"),
    ("params", "top_logprobs"),
    ("params", "tools"),
    ("prompt", "turns"),
    ("prompt", "chars"),
    (None, "status"),
    (None, "schema_version"),
}


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SHARED / "contracts" / "gateway-event.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=format_checker())


def _dup_in_contract_position(raw: bytes) -> bool:
    top = json.loads(raw, object_pairs_hook=lambda pairs: pairs)
    if not isinstance(top, list):
        return False
    keys = [k for k, _ in top]
    if any(keys.count(k) > 1 for k in set(keys) & set(RAW_SCHEMA)):
        return True
    for name, dtype in RAW_SCHEMA.items():
        values = [v for k, v in top if k == name]
        if values and isinstance(values[-1], list) and hasattr(dtype, "fields"):
            sub = (
                [k for k, _ in values[-1] if isinstance(k, str)]
                if all(isinstance(p, tuple) for p in values[-1])
                else []
            )
            names = {f.name for f in dtype.fields}
            if any(sub.count(k) > 1 for k in set(sub) & names):
                return True
    return False


def _int_out_of_range(obj: dict[str, Any]) -> bool:
    """An integer field holding an integer (or integral float) outside 64 signed bits."""
    for parent, leaf in _INT_FIELDS:
        holder = obj if parent is None else obj.get(parent)
        value = holder.get(leaf) if isinstance(holder, dict) else None
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            return True
        if isinstance(value, float) and value.is_integer() and abs(value) >= 2**63:
            return True
    return False


def accepts(raw: bytes, v: jsonschema.Draft202012Validator) -> bool:
    """Whether the contract accepts one record."""
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(obj, dict) or _dup_in_contract_position(raw) or _int_out_of_range(obj):
        return False
    return bool(v.is_valid(obj))
