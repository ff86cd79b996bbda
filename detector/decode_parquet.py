"""Parquet rows (already-structured frames) -> good events + rejects, row by row where types differ.

A Parquet column can have any type. ``conform`` brings a frame to ``RAW_SCHEMA`` and tags, per row, a
value the contract cannot take (a fractional token count, a naive timestamp, a string where a struct
belongs) instead of failing the file; ``decode_frame`` rejects those rows and validates the rest with
the same column-wise checks as JSON (``detector.validate.validate_flat``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import polars as pl

from detector.deadletter import summarize
from detector.decode import DecodedBatch, Reject, dedupe, empty_events_with_pos
from detector.schema import RAW_SCHEMA, flatten_exprs
from detector.validate import validate_flat


def _is_text(dtype: Any) -> bool:
    return dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum | pl.Categorical)


def _leaf(col: pl.Expr, have: Any, want: Any, path: str) -> tuple[pl.Expr, pl.Expr]:
    """(value in ``want``'s type, failure tag per row: ``reason|path`` or null) for one Parquet leaf.

    The types a JSON record could carry are accepted, like ``strict_json`` reads JSON: integers and
    integral floats for an integer, any number for a float, text for a string, a timezone-aware datetime
    (or text) for ``ts`` and ``account.created_at``. Anything else is the row's ``type_error``.
    """
    present = col.is_not_null()
    bad = pl.lit(False)
    if path in ("ts", "account.created_at") and isinstance(have, pl.Datetime):
        if have.time_zone is None:  # a naive datetime: the offset the contract requires is missing
            return pl.lit(None, pl.String), pl.when(present).then(pl.lit(f"invalid_value|{path}|naive"))
        value = col.dt.convert_time_zone("UTC").dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ")
    elif want == pl.String:
        value, bad = (col.cast(pl.String), bad) if _is_text(have) else (pl.lit(None, pl.String), present)
    elif want == pl.Boolean:
        value, bad = (col, bad) if have == pl.Boolean else (pl.lit(None, pl.Boolean), present)
    elif want == pl.Float64 and (have.is_integer() or have.is_float()):
        value = col.cast(pl.Float64)
        bad = present & ~value.is_finite()
    elif want == pl.Int64 and have.is_integer():
        value = col.cast(pl.Int64, strict=False)
        return value, pl.when(present & value.is_null()).then(pl.lit(f"invalid_value|{path}|range"))
    elif want == pl.Int64 and have.is_float():
        f = col.cast(pl.Float64)
        integral = f.is_finite() & (f == f.floor()) & (f.abs() < 2.0**63)
        value, bad = pl.when(integral).then(f.cast(pl.Int64, strict=False)), present & ~integral
    else:
        value, bad = pl.lit(None, want), present
    return value, pl.when(bad).then(pl.lit(f"type_error|{path}|type"))


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Bring a nested frame (e.g. from Parquet) to ``RAW_SCHEMA``'s columns plus ``_fail`` (a row's
    first type problem, ``reason|path|kind``, or null); missing columns become null. Never raises on a
    column's type: a row whose value the contract cannot take gets a ``_fail`` tag instead.
    """
    exprs: list[pl.Expr] = []
    fails: list[pl.Expr] = []
    for name, want in RAW_SCHEMA.items():
        if name not in frame.columns:
            exprs.append(pl.lit(None, dtype=want).alias(name))
            continue
        have = frame.schema[name]
        col = pl.col(name)
        if not isinstance(want, pl.Struct):
            value, fail = _leaf(col, have, want, name)
            exprs.append(value.alias(name))
            fails.append(fail)
        elif not isinstance(have, pl.Struct):
            exprs.append(pl.lit(None, dtype=want).alias(name))
            fails.append(pl.when(col.is_not_null()).then(pl.lit(f"type_error|{name}|type")))
        else:
            present = {f.name: f.dtype for f in have.fields}
            fields = []
            for f in want.fields:
                if f.name not in present:
                    fields.append(pl.lit(None, dtype=f.dtype).alias(f.name))
                    continue
                value, fail = _leaf(col.struct.field(f.name), present[f.name], f.dtype, f"{name}.{f.name}")
                fields.append(value.alias(f.name))
                fails.append(pl.when(col.is_not_null()).then(fail))
            exprs.append(pl.when(col.is_not_null()).then(pl.struct(fields)).alias(name))
    return frame.select(*exprs, pl.coalesce([*fails, pl.lit(None, pl.String)]).alias("_fail"))


_TYPE_DETAIL = {
    "naive": "{}: a naive datetime; the contract requires a UTC offset",
    "range": "{}: integer outside the signed 64-bit range",
    "type": "{}: column type the contract cannot take",
}


def decode_frame(frame: pl.DataFrame, position_of: Callable[[int], str]) -> DecodedBatch:
    """Validate a structured batch (Parquet rows) column-wise, like ``decode_lines`` does for JSON.

    A row the event schema cannot take (a wrong column type, a naive timestamp, a fractional token count)
    is rejected on its own, never the whole batch.
    """

    def payload_of(i: int) -> bytes:
        row = frame.slice(i, 1).to_dicts()[0]
        return summarize(orjson.dumps(row, default=str), row, parsed=True)

    rejects: list[Reject] = []
    try:
        raw = conform(frame).with_row_index("_pos")
    except Exception:  # a type polars cannot even compare (nested lists, objects): every row is rejected
        detail = "a column has a type the event schema cannot take"
        rejects = [
            Reject("type_error", None, detail, position_of(i), payload_of(i), i) for i in range(frame.height)
        ]
        return DecodedBatch(empty_events_with_pos(), rejects, records=frame.height)
    for pos, fail in raw.filter(pl.col("_fail").is_not_null()).select("_pos", "_fail").iter_rows():
        reason, path, kind = fail.split("|")
        rejects.append(
            Reject(reason, path, _TYPE_DETAIL[kind].format(path), position_of(pos), payload_of(pos), pos)
        )
    raw = raw.filter(pl.col("_fail").is_null())
    flat = raw.select(pl.col("_pos"), *flatten_exprs())
    good, more = validate_flat(flat, position_of, payload_of)
    rejects = sorted(rejects + more, key=lambda r: r.index)
    deduped, dups = dedupe(good)
    return DecodedBatch(deduped, rejects, duplicates=dups, records=frame.height)
