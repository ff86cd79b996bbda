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

- **Key codes.** A linkage key use is (account code, key code, last seen, uses): the key names table
  holds each (family, key) once, the family as an enumeration, however many accounts hold it (a proxy
  prefix, a client build, a shared card). Like account codes, a key code stays while any key row holds
  it; the account codes of key rows keep their ids too (keys stay for the 7-day link window, buckets
  for 24 hours).

Readers never see any of it: ``rows_of`` gives rows in ``BUCKET_SCHEMA`` / ``TEMPLATE_SCHEMA`` (32-bit counts,
the account id), ``key_rows`` in ``KEY_SCHEMA``, the same values a reader read before.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from detector.window.ids import ID_HASH, id_hashes
from detector.window.tables import (
    BUCKET_SCHEMA,
    BUCKET_STORE,
    FAMILY,
    GAP_SUM,
    GAP_SUMSQ,
    IDS_SCHEMA,
    KEY_SCHEMA,
    KEY_STORE,
    SEEN_SCHEMA,
    TEMPLATE_SCHEMA,
    TEMPLATE_STORE,
)

#: The largest value each narrow stored type holds.
_LIMITS: dict[pl.DataType, int] = {pl.UInt16(): 2**16 - 1, pl.UInt32(): 2**32 - 1}
#: Codes are 32-bit and only grow while any account stays in state: at 1M new accounts a day they
#: last 11,000 years (they start again from 0 whenever the state holds no account).
_CODE_LIMIT = 2**32 - 1


def _extend(table: pl.DataFrame, wanted: pl.DataFrame, code: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Codes for the distinct, sorted rows of ``wanted`` (the table's value columns): (the table with new
    rows added, ``wanted`` with its codes). New rows get the next codes, in ``wanted``'s order."""
    known = wanted.join(table, on=wanted.columns, how="left")
    new = known.filter(pl.col(code).is_null()).drop(code)
    if new.height == 0:
        return table, known
    start = int(table[code].max()) + 1 if table.height else 0  # type: ignore[arg-type]
    if start + new.height > _CODE_LIMIT:
        raise OverflowError(f"{code}s exhausted (4.3 billion since the state last held none)")
    added = new.with_columns((pl.int_range(new.height, dtype=pl.UInt32) + start).alias(code))
    table = pl.concat([table, added.select(table.columns).cast(table.schema)])
    return table, known.filter(pl.col(code).is_not_null()).vstack(added.cast(known.schema))


def assign(ids: pl.DataFrame, accounts: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Codes for ``accounts`` (any order, repeats allowed): (the ids table with new accounts added, the
    (account_id, code) rows of the distinct ``accounts``). New accounts get the next codes, in id order."""
    return _extend(ids, accounts.unique().sort().to_frame("account_id"), "account_code")


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


def code_keys(
    ids: pl.DataFrame, names: pl.DataFrame, rows: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Key uses (account_id, family, key, more columns) as the state stores them: (ids, key names, the
    rows with ``account_code`` and ``key_code`` in place of the account, family and key). New keys get
    the next codes, in (family, key) order."""
    rows = rows.with_columns(pl.col("family").cast(FAMILY))
    ids, accounts = assign(ids, rows.get_column("account_id"))
    names, keys = _extend(names, rows.select("family", "key").unique().sort("family", "key"), "key_code")
    coded = rows.join(accounts, on="account_id").join(keys, on=["family", "key"])
    rest = [c for c in rows.columns if c not in ("account_id", "family", "key")]
    return ids, names, coded.select("account_code", "key_code", *rest)


def key_rows(keys: pl.DataFrame, ids: pl.DataFrame, names: pl.DataFrame) -> pl.DataFrame:
    """Stored key rows (``KEY_STORE``) as readers get them (``KEY_SCHEMA``): the account id, family and
    key back in place of their codes."""
    return (
        keys.join(ids, on="account_code", how="inner")
        .join(names, on="key_code", how="inner")
        .select(KEY_SCHEMA.keys())
        .cast(KEY_SCHEMA)
    )


def merge_key_uses(keys: pl.DataFrame, more: pl.DataFrame) -> pl.DataFrame:
    """``KEY_STORE`` rows plus more coded key uses: one row per (account, key), latest use and total uses.
    Only the rows of accounts in ``more`` are re-aggregated (row order carries no meaning)."""
    if more.height == 0:
        return keys
    touched = keys.get_column("account_code").is_in(more.get_column("account_code").unique().implode())
    merged = (
        pl.concat([keys.filter(touched), more.select(KEY_STORE.keys()).cast(KEY_STORE)])
        .group_by("account_code", "key_code")
        .agg(pl.col("last_seen").max(), pl.col("uses").sum())
    )
    return pl.concat([keys.filter(~touched), merged.cast(KEY_STORE)])


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
    if "account_id" in t["keys"].columns:  # written before keys were held as codes
        t["ids"], t["key_names"], t["keys"] = code_keys(t["ids"], t["key_names"], t["keys"])
    if "verified" not in t["accounts"].columns:  # a checkpoint from before the trust flag was kept
        t["accounts"] = t["accounts"].with_columns(pl.lit(None, pl.Boolean).alias("verified"))
    if "last_seen" not in t["models"].columns:  # written before models were evicted
        t["models"] = t["models"].with_columns(pl.col("first_seen").alias("last_seen"))
    return t
