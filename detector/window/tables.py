"""The window state's tables: their column layouts, the per-request signals and token sums the buckets
count, the linkage key each event contributes per family, and how key uses merge. Definitions and pure
functions only; ``state.py`` holds the tables and is the code that changes them (it re-exports these).
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from detector.contracts import LINK_FAMILIES, LinkFamily
from detector.intel.hashing import INTEL_FAMILY
from detector.schema import UTC_US, make_schema

#: (counter column, per-request boolean it counts)
SIGNAL_COUNTS: dict[str, str] = {
    "cot": "cot_elicit",
    "coercion": "reasoning_coercion",
    "rubric": "rubric_prompt",
    "identity": "identity_probe",
    "code": "code_agentic",
    "logprob": "is_logprob",
    "n_gt1": "is_n_gt1",
    "thinking": "is_thinking",
    "temp0": "is_temp0",
    "max_tokens_high": "is_max_tokens_high",
    "tools_heavy": "is_tools_heavy",
    "long_session": "is_long_session",
    "hosted_ip": "is_hosted_ip",
    "new_model": "is_new_model",
}
TOKEN_SUMS = ("input_tokens", "output_tokens", "reasoning_tokens")
#: Prompts shorter than this never contribute a template linkage key (short questions repeat by chance).
MIN_TEMPLATE_CHARS = 100
#: Gaps longer than this are idle periods, not inter-arrival times (a bot's cadence is minutes).
MAX_GAP_S = 6 * 3600.0
#: Inter-arrival gaps are kept as whole microseconds (event times are microseconds), summed as integers:
#: an integer sum is the same in any order, so window features do not depend on how the input was
#: sliced into batches (a float sum did, in its last bits). Squares need 128 bits (6 h is 2.2e10 us).
GAP_SUM, GAP_SUMSQ = "gap_sum_us", "gap_sumsq_us2"

BUCKET_SCHEMA = make_schema(
    {
        "account_id": pl.String,
        "bucket": UTC_US,
        "requests": pl.UInt32,
        **{c: pl.Int64 for c in TOKEN_SUMS},
        **{c: pl.UInt32 for c in SIGNAL_COUNTS},
        "gap_n": pl.UInt32,
        GAP_SUM: pl.Int64,
        GAP_SUMSQ: pl.Int128,
    }
)
TEMPLATE_SCHEMA = make_schema(
    {"account_id": pl.String, "bucket": UTC_US, "template_fp": pl.UInt64, "requests": pl.UInt32}
)
#: ``BUCKET_SCHEMA`` and ``TEMPLATE_SCHEMA`` are what readers get (``WindowState.bucket_rows``); the
#: state stores them narrower (``window/compact.py``): the account as a 32-bit code of ``IDS_SCHEMA``,
#: counts in 16 bits and token sums in 32, a busier (account, bucket) in several rows.
ROW_COUNTS = ("requests", *SIGNAL_COUNTS, "gap_n")
BUCKET_STORE = make_schema(
    {
        "account_code": pl.UInt32,
        **{c: d for c, d in BUCKET_SCHEMA.items() if c != "account_id"},
        **{c: pl.UInt16 for c in ROW_COUNTS},
        **{c: pl.UInt32 for c in TOKEN_SUMS},
    }
)
TEMPLATE_STORE = make_schema(
    {"account_code": pl.UInt32, "bucket": UTC_US, "template_fp": pl.UInt64, "requests": pl.UInt16}
)
#: account id -> code, for the accounts that buckets, templates or keys hold
IDS_SCHEMA = make_schema({"account_id": pl.String, "account_code": pl.UInt32})
ACCOUNT_SCHEMA = make_schema(
    {
        "account_id": pl.String,
        "first_seen": UTC_US,
        "last_seen": UTC_US,
        "created_at": UTC_US,
        "tier": pl.String,
        "org_id": pl.String,
        #: the gateway's account-service flag (a verified organisation): trust evidence
        "verified": pl.Boolean,
    }
)
#: An account's ``ACCOUNT_SCHEMA`` row from its events (grouped by account): when seen, and its newest
#: non-null attributes.
ACCOUNT_AGGS = (
    pl.col("ts").min().alias("first_seen"),
    pl.col("ts").max().alias("last_seen"),
    pl.col("account_created_at").drop_nulls().last().alias("created_at"),
    pl.col("tier").drop_nulls().last().alias("tier"),
    pl.col("org_id").drop_nulls().last().alias("org_id"),
    pl.col("verified").drop_nulls().last().alias("verified"),
)
KEY_SCHEMA = make_schema(
    {"account_id": pl.String, "family": pl.String, "key": pl.String, "last_seen": UTC_US, "uses": pl.UInt32}
)
#: Every linkage family a key table row may name (the events' families and a partner's ``shared_intel``).
FAMILY = pl.Enum([*LINK_FAMILIES, INTEL_FAMILY])
#: ``KEY_SCHEMA`` is what readers get (``WindowState.key_rows``); the state stores a key use as codes
#: (``window/compact.py``): the account's code of ``IDS_SCHEMA`` and the key's of ``KEY_NAMES_SCHEMA``,
#: which holds each (family, key) once however many accounts hold it.
KEY_STORE = make_schema(
    {"account_code": pl.UInt32, "key_code": pl.UInt32, "last_seen": UTC_US, "uses": pl.UInt32}
)
KEY_NAMES_SCHEMA = make_schema({"key_code": pl.UInt32, "family": FAMILY, "key": pl.String})
#: request ids as 64-bit hashes (``window/ids.py``: 8 bytes an id instead of the string), one list per
#: closed tick (``tick``: its end, after every event time in it), not a time per id
SEEN_SCHEMA = make_schema({"tick": UTC_US, "id_hash": pl.List(pl.UInt64)})
MODEL_SCHEMA = make_schema({"model": pl.String, "first_seen": UTC_US, "last_seen": UTC_US})
#: Every table, in checkpoint order.
TABLES = (
    "buckets",
    "templates",
    "accounts",
    "keys",
    "seen",
    "models",
    "ids",
    "key_names",
    "sheets",
    "openers",
)


#: Linkage families: name -> expression giving the key (null = no key). Values are hashed or
#: truncated so state never holds more than the signal needs.
def link_key_exprs(signup_burst: timedelta) -> dict[LinkFamily, pl.Expr]:
    """The key each event contributes per linkage family."""
    c = pl.col
    burst_us = int(signup_burst.total_seconds() * 1_000_000)
    return {
        "payment": c("payment_fingerprint"),
        "reseller": c("reseller_id"),
        "ip": pl.when(c("is_hosted_ip").fill_null(False)).then(c("client_ip")).otherwise(c("ip_prefix")),
        "client": pl.when(c("tls_fingerprint").is_not_null())
        .then(
            pl.concat_str(
                [c("tls_fingerprint"), c("sdk").fill_null(c("user_agent")).fill_null("")], separator="|"
            )
        )
        .otherwise(None),
        "sysprompt": c("system_prompt_hash"),
        # a short common question ("hi", "tips for sleep?") is not a template: only longer prompts link
        "template": pl.when(c("prompt_len").fill_null(0) >= MIN_TEMPLATE_CHARS)
        .then(c("template_fp").cast(pl.String))
        .otherwise(None),
        "signup": (c("account_created_at").dt.epoch("us") // burst_us).cast(pl.String),
    }


def merge_keys(keys: pl.DataFrame, more: pl.DataFrame) -> pl.DataFrame:
    """Key table plus more key uses: one row per (account, family, key), latest use and total uses.

    Only the rows of accounts in ``more`` are re-aggregated; the rest of the table is kept as it is
    (row order carries no meaning: every reader groups, joins or sorts).
    """
    more = more.select(KEY_SCHEMA.keys())
    if more.height == 0:
        return keys
    touched = keys.get_column("account_id").is_in(more.get_column("account_id").unique().implode())
    merged = (
        pl.concat([keys.filter(touched), more])
        .group_by("account_id", "family", "key")
        .agg(pl.col("last_seen").max(), pl.col("uses").sum())
    )
    return pl.concat([keys.filter(~touched), merged])
