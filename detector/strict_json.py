"""Where polars' JSON reader is laxer than the contract, and the exact per-record check behind it.

``pl.read_ndjson`` with a schema turns any JSON value in a String column into text (``5`` -> "5",
``{"a": 1}`` -> '{"a": 1}'), keeps the first of two duplicate keys (JSON parsers keep the last), and
decodes a lone surrogate escape to U+0000. Integer columns are strict (``1.0`` fails, though the
contract's "integer" takes it), as are Boolean and Struct columns. So the fast path parses a whole batch
with polars, and ``suspects`` names the records it may have read wrong: a string-typed contract key
whose value is not a string or null, a contract key written twice, a key spelled with escapes, a
surrogate escape. Those records, and every record polars refuses, are re-read here one by one with
orjson (strict RFC 8259) and checked for duplicate keys and exact JSON types; a record that passes is
re-serialised with exact types (``1.0`` -> ``1``) and validated column-wise with the rest, so the
value checks exist once. The regular expressions run in polars (Rust regex: linear time).

Decisions where JSON leaves a choice: a contract key written twice in its object (top level, or inside
``client``, ``usage``, ...) rejects the record (``duplicate_key``); duplicates among keys the contract
does not define are ignored like those keys; integers must fit
in 64 signed bits (the contract sets no maximum; a count beyond 2^63 is not a count); a UTF-8 byte order
mark is stripped from the start of a record.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import polars as pl

from detector.errors import DetectorError
from detector.schema import RAW_SCHEMA

_WS = r"[ \t\r\n]*"
_STRING_KEYS = sorted(
    {name for name, dtype in RAW_SCHEMA.items() if dtype == pl.String}
    | {
        f.name
        for dtype in RAW_SCHEMA.values()
        if isinstance(dtype, pl.Struct)
        for f in dtype.fields
        if f.dtype == pl.String
    }
)
_ALL_KEYS = sorted(
    set(RAW_SCHEMA.keys())
    | {f.name for dtype in RAW_SCHEMA.values() if isinstance(dtype, pl.Struct) for f in dtype.fields}
)
#: A string-typed contract key whose value starts with anything but a quote or ``n`` (null); a key with
#: white space before its colon (the duplicate check lists ``"key":``). Each may also match inside an
#: unknown field or a string: that only costs a slow path.
SUSPECT_RE = rf'"(?:{"|".join(_STRING_KEYS)})"{_WS}:{_WS}[^"n \t\r\n]|"[ \t\r\n]+:'
#: Only in lines with a backslash (the other half of the regex above, run on those lines alone: it costs
#: as much as that half on every line): a key written with an escape (after ``{`` or ``,`` a quote then
#: a backslash before the next quote); a surrogate escape.
ESCAPE_RE = rf'[{{,]{_WS}"[^"\\]*\\|\\u[dD][89a-fA-F]'
_KEY_LITERALS = [f'"{k}":' for k in _ALL_KEYS]


def _keys_of(*types: Any) -> list[str]:
    top = [name for name, dtype in RAW_SCHEMA.items() if dtype in types or type(dtype) in types]
    return sorted(
        {*top}
        | {
            f.name
            for dtype in RAW_SCHEMA.values()
            if isinstance(dtype, pl.Struct)
            for f in dtype.fields
            if f.dtype in types
        }
    )


#: A number, boolean or object key of the contract whose value starts as another JSON type (a string, an
#: array, ...), or an integer key holding a fraction, an exponent or 19 digits or more (``1.0``, ``1e2``,
#: 2^64): polars refuses the whole batch for one such record (its typed columns are strict), so once a
#: batch is refused these go to the strict reading at once instead of being bisected out. Anything else
#: polars refuses (a float out of range) is still found by bisection.
REFUSAL_RE = (
    rf'"(?:{"|".join(_keys_of(pl.Int64))})"{_WS}:{_WS}(?:[^-0-9n \t\r\n]|-?[0-9]+[.eE]|-?[0-9]{{19}})'
    rf'|"(?:{"|".join(_keys_of(pl.Float64))})"{_WS}:{_WS}[^-0-9n \t\r\n]'
    rf'|"(?:{"|".join(_keys_of(pl.Boolean))})"{_WS}:{_WS}[^tfn \t\r\n]'
    rf'|"(?:{"|".join(_keys_of(pl.Struct))})"{_WS}:{_WS}[^{{n \t\r\n]'
)

_KEY_BYTES_RE = re.compile(rf'"({"|".join(_ALL_KEYS)})"{_WS}:'.encode())
BOM = b"\xef\xbb\xbf"
_I64 = (-(1 << 63), (1 << 63) - 1)


def suspects(lines: pl.Series) -> pl.Series:
    """Boolean per line: polars' parse of it may differ from a strict JSON parser's (see module doc).

    A contract key written twice is found by listing every ``"<contract key>":`` (Aho-Corasick); a key
    with white space before its colon is a suspect in itself.
    """
    keys = lines.str.extract_many(_KEY_LITERALS)
    flag = (
        lines.str.contains(SUSPECT_RE).fill_null(True)
        | (keys.list.n_unique() != keys.list.len()).fill_null(True)
    ).alias("suspect")
    escaped = lines.str.contains("\\", literal=True).fill_null(False).arg_true()
    if escaped.len():
        hit = lines.gather(escaped).str.contains(ESCAPE_RE).fill_null(True)
        flag = flag.scatter(escaped.filter(hit), True)
    return flag


def refusals(lines: pl.Series) -> pl.Series:
    """Boolean per line: polars would refuse it for a typed key's value of another JSON type."""
    return lines.str.contains(REFUSAL_RE).fill_null(True).alias("refusal")


class StrictError(DetectorError, ValueError):
    """A record a strict JSON reading of the contract refuses: ``reason``, ``field`` and a detail."""

    def __init__(self, reason: str, field: str | None, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.field, self.detail = reason, field, detail


class _Object(dict[str, Any]):
    """A JSON object that remembers the keys it saw twice (JSON parsers keep the last value)."""

    dups: tuple[str, ...] = ()


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    out = _Object()
    for key, value in pairs:
        if key in out:
            out.dups += (key,)
        out[key] = value
    return out


def _check_dup(obj: Any, where: str | None, names: Any) -> None:
    """Refuse a contract key written twice in ``obj`` (``names``: the contract's keys there)."""
    for key in obj.dups if isinstance(obj, _Object) else ():
        if key in names:
            path = f"{where}.{key}" if where else key
            raise StrictError("duplicate_key", path, f"{path}: the key appears twice in one object")


def _leaf(path: str, dtype: Any, value: Any) -> Any:
    """``value`` with exact JSON types for ``dtype``, integral floats as ints; raises ``StrictError``."""
    if value is None:
        return None
    ok: bool
    if dtype == pl.String:
        ok = isinstance(value, str)
    elif dtype == pl.Boolean:
        ok = isinstance(value, bool)
    elif dtype == pl.Float64:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            try:
                value = float(value)
            except OverflowError:
                raise StrictError("invalid_value", path, f"{path}: number out of range") from None
    elif dtype == pl.Int64:
        if isinstance(value, float) and value.is_integer() and abs(value) < 2.0**63:
            value = int(value)
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and not _I64[0] <= value <= _I64[1]:
            raise StrictError("invalid_value", path, f"{path}: integer outside the signed 64-bit range")
    else:  # pragma: no cover - RAW_SCHEMA has no other leaf types
        ok = False
    if not ok:
        raise StrictError("type_error", path, f"{path}: wrong JSON type ({type(value).__name__})")
    return value


def exact(record: bytes) -> bytes:
    """The record re-serialised with exact contract types and only contract fields; or ``StrictError``.

    Value checks (ranges, lengths, formats) are left to the column-wise validation.
    """
    if record.startswith(BOM):
        record = record[len(BOM) :]
    try:
        obj = orjson.loads(record)  # strict RFC 8259: UTF-8, surrogates, no NaN, nesting depth
        keys = _KEY_BYTES_RE.findall(record)
        if len(keys) != len(set(keys)) or b"\\" in record:  # a key twice (or escaped): find out where
            obj = json.loads(record, object_pairs_hook=_pairs)
    except (ValueError, RecursionError) as exc:
        raise StrictError("not_json", None, "not valid JSON") from exc
    if not isinstance(obj, dict):
        raise StrictError("not_object", None, f"expected a JSON object, got {type(obj).__name__}")
    _check_dup(obj, None, RAW_SCHEMA)
    out: dict[str, Any] = {}
    for name, dtype in RAW_SCHEMA.items():
        value = obj.get(name)
        if isinstance(dtype, pl.Struct):
            _check_dup(value, name, {f.name for f in dtype.fields})
            if value is None:
                out[name] = None
                continue
            if not isinstance(value, dict):
                raise StrictError("type_error", name, f"{name}: expected an object ({type(value).__name__})")
            out[name] = {f.name: _leaf(f"{name}.{f.name}", f.dtype, value.get(f.name)) for f in dtype.fields}
        else:
            out[name] = _leaf(name, dtype, value)
    return orjson.dumps(out)
