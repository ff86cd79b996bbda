"""The one fixed column layout of a decoded event batch.

The gateway event contract (``contracts/gateway-event.schema.json``) is nested; the engine works on a
flat polars frame. ``RAW_SCHEMA`` is the nested shape given to the JSON and Parquet readers, and
``flatten`` turns it into ``EVENT_SCHEMA``: one column per leaf, named ``<parent>_<leaf>`` except for the
well-known top-level and ``client``/``account``/``usage``/``params`` leaves listed in ``_FLAT_NAMES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import polars as pl

UTC_US = pl.Datetime("us", "UTC")
#: The Unix epoch as an aware datetime (integer-microsecond conversions, a "before everything" default).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def make_schema(cols: Mapping[str, Any]) -> pl.Schema:
    """A polars Schema from a name -> dtype mapping (typed for mypy)."""
    return pl.Schema(dict(cols))


CLIENT = pl.Struct({"ip": pl.String, "user_agent": pl.String, "tls_fingerprint": pl.String, "sdk": pl.String})
ACCOUNT = pl.Struct(
    {
        "created_at": pl.String,
        "payment_fingerprint": pl.String,
        "billing_country": pl.String,
        "tier": pl.String,
        "verified": pl.Boolean,
        "reseller_id": pl.String,
    }
)
USAGE = pl.Struct({"input_tokens": pl.Int64, "output_tokens": pl.Int64, "reasoning_tokens": pl.Int64})
PARAMS = pl.Struct(
    {
        "max_tokens": pl.Int64,
        "temperature": pl.Float64,
        "top_p": pl.Float64,
        "n": pl.Int64,
        "stream": pl.Boolean,
        "logprobs": pl.Boolean,
        "top_logprobs": pl.Int64,
        "tools": pl.Int64,
        "thinking": pl.Boolean,
        "system_prompt_hash": pl.String,
    }
)
PROMPT = pl.Struct(
    {"text": pl.String, "turns": pl.Int64, "chars": pl.Int64, "simhash": pl.String, "lang": pl.String}
)
RESPONSE = pl.Struct({"stop_reason": pl.String, "refusal": pl.Boolean, "has_reasoning": pl.Boolean})

#: Nested schema handed to ``pl.read_ndjson`` / used to conform Parquet input.
RAW_SCHEMA = make_schema(
    {
        "schema_version": pl.Int64,
        "request_id": pl.String,
        "ts": pl.String,
        "account_id": pl.String,
        "org_id": pl.String,
        "api_key_id": pl.String,
        "model": pl.String,
        "endpoint": pl.String,
        "status": pl.Int64,
        "latency_ms": pl.Float64,
        "client": CLIENT,
        "account": ACCOUNT,
        "usage": USAGE,
        "params": PARAMS,
        "prompt": PROMPT,
        "response": RESPONSE,
    }
)

#: Flat name for each (struct, leaf). Leaves not listed here become ``<struct>_<leaf>``.
_FLAT_NAMES: dict[tuple[str, str], str] = {
    ("client", "ip"): "client_ip",
    ("client", "user_agent"): "user_agent",
    ("client", "tls_fingerprint"): "tls_fingerprint",
    ("client", "sdk"): "sdk",
    ("account", "created_at"): "account_created_at",
    ("account", "payment_fingerprint"): "payment_fingerprint",
    ("account", "billing_country"): "billing_country",
    ("account", "tier"): "tier",
    ("account", "verified"): "verified",
    ("account", "reseller_id"): "reseller_id",
    ("usage", "input_tokens"): "input_tokens",
    ("usage", "output_tokens"): "output_tokens",
    ("usage", "reasoning_tokens"): "reasoning_tokens",
    ("response", "stop_reason"): "stop_reason",
    ("response", "refusal"): "refusal",
    ("response", "has_reasoning"): "has_reasoning",
}


def _flat_name(parent: str, leaf: str) -> str:
    if (parent, leaf) in _FLAT_NAMES:
        return _FLAT_NAMES[(parent, leaf)]
    if parent == "params":
        return leaf
    return f"{parent}_{leaf}"


def _build_event_schema() -> pl.Schema:
    cols: dict[str, Any] = {}
    for name, dtype in RAW_SCHEMA.items():
        if isinstance(dtype, pl.Struct):
            for field in dtype.fields:
                cols[_flat_name(name, field.name)] = field.dtype
        else:
            cols[name] = dtype
    cols["ts"] = UTC_US
    cols["account_created_at"] = UTC_US
    return make_schema(cols)


#: The decoded batch's schema: every good event has exactly these columns, in this order.
EVENT_SCHEMA: pl.Schema = _build_event_schema()

#: (flat column, path in the nested record) for every leaf, used for reject reasons.
FIELD_PATHS: dict[str, str] = {}
for _name, _dtype in RAW_SCHEMA.items():
    if isinstance(_dtype, pl.Struct):
        for _f in _dtype.fields:
            FIELD_PATHS[_flat_name(_name, _f.name)] = f"{_name}.{_f.name}"
    else:
        FIELD_PATHS[_name] = _name


def flatten_exprs() -> list[pl.Expr]:
    """Expressions that turn a frame in ``RAW_SCHEMA`` into flat columns (timestamps still strings)."""
    exprs: list[pl.Expr] = []
    for name, dtype in RAW_SCHEMA.items():
        if isinstance(dtype, pl.Struct):
            for field in dtype.fields:
                exprs.append(pl.col(name).struct.field(field.name).alias(_flat_name(name, field.name)))
        else:
            exprs.append(pl.col(name))
    return exprs


#: RFC 3339 with a mandatory offset ("Z" or "+hh:mm"); a naive timestamp parses to null.
TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%#z"


def parse_ts(expr: pl.Expr) -> pl.Expr:
    """Parse an RFC 3339 string column to UTC microseconds; anything without an offset becomes null."""
    return expr.str.to_datetime(TS_FORMAT, strict=False, time_zone="UTC", time_unit="us")


def empty_events() -> pl.DataFrame:
    """A zero-row frame in the event schema."""
    return pl.DataFrame(schema=EVENT_SCHEMA)
