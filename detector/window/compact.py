"""How the window state stores its per-account rows narrowly, and how readers get them back as they were.

- **Account codes.** Buckets and templates hold the account as a 32-bit code, not its id (a 15-byte
  id costs 15 bytes a row and more: a polars string is a 16-byte view plus the bytes past 12); the ids
  table maps id -> code once per account. A code stays while any bucket, template or key row holds it;
  a returning account may get a new one. Codes are never read outside the state: ``decode`` turns them
  back into ids (``rows_of``).
- **16-bit counts, 32-bit token sums.** Every count of a row (requests, the signal counters, gaps) is
  at most 65,535 and every token sum at most 2**32 - 1: a busier (account, bucket) (over 73 requests a
  second for 15 minutes, or 4.8 million tokens a second) takes several rows (``fit_rows``), and every
  reader sums the rows of a bucket, so the sums are exact. Gap sums stay 64 and 128 bits.

Readers never see either: ``rows_of`` gives rows in ``BUCKET_SCHEMA`` / ``TEMPLATE_SCHEMA`` (32-bit counts,
the account id), the same values a reader summed before. Linkage keys are held as codes too
(``keycodes.py``).
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from detector.window.hashspace import SIMHASH
from detector.window.ids import ID_HASH, id_hashes
from detector.window.keycodes import code_keys, extend_codes
from detector.window.openers import OPENER_STORE
from detector.window.sheets import SHEET_STORE
from detector.window.tables import (
    BUCKET_SCHEMA,
    BUCKET_STORE,
    GAP_SUM,
    GAP_SUMSQ,
    IDS_SCHEMA,
    SEEN_SCHEMA,
    TEMPLATE_SCHEMA,
    TEMPLATE_STORE,
)


def owned(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with each string column copied into buffers of its own (the same values).

    A polars string past 12 bytes is a view into a buffer shared with the column it was filtered,
    grouped or joined out of, so one account id or key name kept from a decoded chunk keeps that
    chunk's whole column buffer alive: on a 6-copy tile, 12,000 key names held 72 MB of decoded input
    that the state's estimated 0.2 MB did not show (docs/benchmarks.md, Round 15). Appending an empty
    string builds every value anew.
    """
    strings = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(pl.col(strings) + "") if strings else frame


#: The largest value each narrow stored type holds.
_LIMITS: dict[pl.DataType, int] = {pl.UInt16(): 2**16 - 1, pl.UInt32(): 2**32 - 1}


def assign(ids: pl.DataFrame, accounts: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Codes for ``accounts`` (any order, repeats allowed): (the ids table with new accounts added, the
    (account_id, code) rows of the distinct ``accounts``). New accounts get the next codes, in id order."""
    return extend_codes(ids, accounts.unique().sort().to_frame("account_id"), "account_code")


def codes_of(ids: pl.DataFrame, accounts: pl.Series) -> pl.Series:
    """The codes of ``accounts`` that the ids table holds."""
    return ids.filter(pl.col("account_id").is_in(accounts.implode())).get_column("account_code")


def rows_of(
    rows: pl.DataFrame,
    ids: pl.DataFrame,
    schema: pl.Schema,
    accounts: pl.Series | None,
    since: datetime | None,
    until: datetime | None,
) -> pl.DataFrame:
    """Stored rows of ``accounts`` (None: all) with a bucket in [since, until) as readers get them
    (``schema``): the account id in place of its code, counts in 32 bits."""
    keep = pl.lit(True)
    if accounts is not None:
        codes = ids.filter(pl.col("account_id").is_in(accounts.implode())).get_column("account_code")
        keep &= pl.col("account_code").is_in(codes.implode())
    if since is not None:
        keep &= pl.col("bucket") >= since
    if until is not None:
        keep &= pl.col("bucket") < until
    return rows.filter(keep).join(ids, on="account_code", how="inner").select(schema.keys()).cast(schema)


def fit_rows(rows: pl.DataFrame, store: pl.Schema) -> pl.DataFrame:
    """Rows with sums of any width as ``store`` rows: a row with a count past 16 bits or a token sum past
    32 bits becomes ``k`` rows whose sums add up to its own (each split as evenly as it goes: part
    ``i`` of ``x`` is ``x // k``, plus one for ``i < x % k``), its gap sums on the first of them."""
    narrow = {c: _LIMITS[d] for c, d in store.items() if d in _LIMITS and c != "account_code"}
    k = pl.max_horizontal((pl.col(c).cast(pl.Int64) + (limit - 1)) // limit for c, limit in narrow.items())
    over = pl.any_horizontal(pl.col(c) > limit for c, limit in narrow.items())
    big = rows.filter(over)
    if big.height == 0:
        return rows.select(store.keys()).cast(store)
    parts = big.with_columns(k.alias("_k")).with_columns(pl.int_ranges(0, pl.col("_k")).alias("_i"))
    parts = parts.explode("_i")
    wide = [c for c in store if c not in narrow and c not in ("account_code", "bucket", "template_fp")]
    x = {c: pl.col(c).cast(pl.Int64) for c in narrow}
    parts = parts.with_columns(
        *[(x[c] // pl.col("_k") + (pl.col("_i") < x[c] % pl.col("_k"))).alias(c) for c in narrow],
        *[pl.when(pl.col("_i") == 0).then(pl.col(c)).otherwise(0).alias(c) for c in wide],
    )
    return pl.concat(
        [rows.filter(~over).select(store.keys()).cast(store), parts.select(store.keys()).cast(store)]
    )


def merge_rows(rows: pl.DataFrame, store: pl.Schema) -> pl.DataFrame:
    """One row per key (code, bucket[, template]) where the counts fit, summed exactly; sorted."""
    keys = [c for c in ("account_code", "bucket", "template_fp") if c in store]
    # summed in 64 bits (128 for the squared gaps): a 16- or 32-bit sum would wrap before it is split
    wide = {c: pl.Int128 if d == pl.Int128 else pl.Int64 for c, d in store.items() if c not in keys}
    summed = rows.group_by(keys).agg([pl.col(c).cast(d).sum() for c, d in wide.items()])
    return fit_rows(summed, store).sort(keys)


def coded_rows(
    buckets: pl.DataFrame, templates: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Buckets and templates as a checkpoint before account codes held them (the account id, 32-bit
    counts): (ids, buckets, templates) as the state stores them now."""
    if "account_id" not in templates.columns:  # none in the checkpoint
        templates = pl.DataFrame(schema=TEMPLATE_SCHEMA)
    ids, codes = assign(
        pl.DataFrame(schema=IDS_SCHEMA),
        pl.concat([buckets.get_column("account_id"), templates.get_column("account_id")]),
    )
    return (
        ids,
        fit_rows(buckets.join(codes, on="account_id"), BUCKET_STORE),
        fit_rows(templates.join(codes, on="account_id"), TEMPLATE_STORE),
    )


def seen_per_tick(seen: pl.DataFrame) -> pl.DataFrame:
    """A de-duplication table with a time per id (id_hash, ts) as lists per tick: each id under the end
    of its 15-minute bucket, a bound after its time (only that is asked of a tick: ``WindowState``)."""
    return (
        seen.group_by((pl.col("ts").dt.truncate("15m") + pl.duration(minutes=15)).alias("tick"))
        .agg(ID_HASH)
        .sort("tick")
        .cast(SEEN_SCHEMA)
    )


def upgrade(t: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The tables of a checkpoint (name -> frame), as this build keeps them: a checkpoint written by an
    older build is converted."""
    t = dict(t)
    if "gap_sum" in t["buckets"].columns:  # written when gap sums were float seconds
        t["buckets"] = (
            t["buckets"]
            .with_columns(
                (pl.col("gap_sum") * 1e6).round().cast(pl.Int64).alias(GAP_SUM),
                (pl.col("gap_sumsq") * 1e12).round().cast(pl.Int128).alias(GAP_SUMSQ),
            )
            .select(BUCKET_SCHEMA.keys())
        )
    if "request_id" in t["seen"].columns:  # written when request ids were kept as strings
        t["seen"] = t["seen"].select(id_hashes(t["seen"].get_column("request_id")), "ts")
    if "ts" in t["seen"].columns:  # written with a time per id
        t["seen"] = seen_per_tick(t["seen"])
    if "account_id" in t["buckets"].columns:  # written before account codes and 16-bit counts
        t["ids"], t["buckets"], t["templates"] = coded_rows(t["buckets"], t["templates"])
        t["sheets"] = t["sheets"].clear()  # none then; codes of another ids table would misattribute
    if "sends" not in t["sheets"].columns:  # round 10's first sheet table kept no sends: each row's
        # sampled text was sent at least once (the figure is a lower bound anyway; it expires in a day)
        t["sheets"] = t["sheets"].with_columns(pl.lit(1, pl.UInt32).alias("sends"))
    if "plain" not in t["sheets"].columns:  # before round 12 the table sampled reasoning requests only
        t["sheets"] = t["sheets"].with_columns(pl.lit(False).alias("plain"))
    for name, store in (("sheets", SHEET_STORE), ("openers", OPENER_STORE)):
        if SIMHASH not in t[name].columns:  # before round 22 no sample said its space: read as texts
            t[name] = t[name].with_columns(pl.lit(False).alias(SIMHASH))
        t[name] = t[name].select(store.keys())
    if "account_id" in t["keys"].columns:  # written before keys were held as codes
        t["ids"], t["key_names"], t["keys"] = code_keys(t["ids"], t["key_names"], t["keys"])
    if "verified" not in t["accounts"].columns:  # a checkpoint from before the trust flag was kept
        t["accounts"] = t["accounts"].with_columns(pl.lit(None, pl.Boolean).alias("verified"))
    if "last_seen" not in t["models"].columns:  # written before models were evicted
        t["models"] = t["models"].with_columns(pl.col("first_seen").alias("last_seen"))
    return t
