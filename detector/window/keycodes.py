"""The linkage key table, held as codes: what the state stores for the 7-day link window, and how
readers get the rows back as they were.

A key row is (account code, key code, last use, uses), 20 bytes: the account as its 32-bit code of the
``ids`` table (the one buckets and templates use, ``compact.py``), the key as a 32-bit code of the
``key_names`` table, which holds each (family, key) once, the family as an enumeration, however many
accounts hold it (a proxy prefix, a client build, a shared card). A code stays while any row holds it:
an id goes with the last bucket, template or key row holding its code, a name with the last key row
(``held_only``). Codes are never read outside the state: ``key_rows`` gives readers ``KEY_SCHEMA``.
"""

from __future__ import annotations

import polars as pl

from detector.window.tables import FAMILY, KEY_SCHEMA, KEY_STORE

#: Codes are 32-bit and only grow while any row holds one: at 1M new accounts or keys a day they last
#: 11,000 years (they start again from 0 whenever the state holds none).
_CODE_LIMIT = 2**32 - 1


def extend_codes(table: pl.DataFrame, wanted: pl.DataFrame, code: str) -> tuple[pl.DataFrame, pl.DataFrame]:
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


def code_keys(
    ids: pl.DataFrame, names: pl.DataFrame, rows: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Key uses (account_id, family, key, more columns) as the state stores them: (ids, key names, the
    rows with ``account_code`` and ``key_code`` in place of the account, family and key). New keys get
    the next codes, in (family, key) order."""
    rows = rows.with_columns(pl.col("family").cast(FAMILY))
    ids, accounts = extend_codes(ids, rows.select("account_id").unique().sort("account_id"), "account_code")
    names, keys = extend_codes(names, rows.select("family", "key").unique().sort("family", "key"), "key_code")
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


def add_key_uses(
    ids: pl.DataFrame, names: pl.DataFrame, keys: pl.DataFrame, uses: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(ids, key names, key table) with key ``uses`` (``KEY_SCHEMA`` columns) merged in."""
    ids, names, coded = code_keys(ids, names, uses.select(KEY_SCHEMA.keys()))
    return ids, names, merge_key_uses(keys, coded)


def held_only(
    ids: pl.DataFrame, names: pl.DataFrame, keys: pl.DataFrame, *coded: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ids that rows of ``keys`` or of ``coded`` (buckets, templates) hold, and the key names that
    ``keys`` holds."""
    held = pl.concat([frame.get_column("account_code") for frame in (keys, *coded)]).unique()
    return (
        ids.filter(pl.col("account_code").is_in(held.implode())),
        names.filter(pl.col("key_code").is_in(keys.get_column("key_code").implode())),
    )
