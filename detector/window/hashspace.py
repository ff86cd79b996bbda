"""Two hash spaces in one text sample (issue 17, round 22).

``enrich.prompt_features`` makes ``text_fp`` the text's hash, or, for a request whose gateway ships
only the SimHash, the SimHash: two hash spaces. A member whose gateway ships no text holds its sheet's
tasks under values no texted member holds, so on ``main`` its samples were unshared by construction and
weighed on the cluster's shares and on the holder bars (round 21: an honest course's opener share read
0.491 against the 0.5 bar because 9 of its 53 participants were text-free, 0.606 among the rest; how
many are text-free is the gateway's choice, not the course's).

So each sample row keeps which space its sampled ``text_fp`` lies in (``SIMHASH``: true for a
SimHash, recognised by the template fingerprint enrichment derives from a SimHash under
``SIMHASH_FP_TAG``; false for a text's hash or no sample), and a group's shares are read **within one
space** (``in_one_space``): its texted samples when it has any, its SimHash samples among themselves
when it has no other (a bank of distinct tasks stays unshared there too, so a farm gains nothing by
shipping SimHashes only). The samples of the other space leave the share and the holders the bar
counts; the group's volumes (requests, turns) still count every member. A table stored before the
column existed is read as texts (``compact.upgrade``), as ``main`` read it.
"""

from __future__ import annotations

import polars as pl

from detector.enrich.prompt.exprs import simhash_template

#: The sample rows' column: their sampled ``text_fp`` is the gateway's SimHash (the request had no text).
SIMHASH = "simhash"
#: Added by ``in_one_space``: the row's sample is in its group's space, and the accounts read there.
COMPARABLE, PEERS = "_comparable", "_peers"


def simhash_request(columns: list[str]) -> pl.Expr:
    """Per enriched event (with ``columns``): its ``text_fp`` is the SimHash, not a text's hash (its
    template fingerprint is the one enrichment derives from the SimHash; a frame without these columns:
    none is)."""
    if not {"template_fp", "prompt_simhash64"} <= set(columns):
        return pl.lit(False)
    tpl, h64 = pl.col("template_fp"), pl.col("prompt_simhash64")
    return (tpl == simhash_template(h64)).fill_null(False)


def sampled_space(sample: pl.Expr, space: pl.Expr) -> pl.Expr:
    """The space (``SIMHASH``) of a group's sampled value: ``space`` of its rows that carry ``sample``
    (the smallest value), false where nothing is sampled; the same in any order (a value in both spaces,
    2**-64 by chance, reads as a SimHash)."""
    return space.filter(sample).max().fill_null(False)


def in_one_space(w: pl.DataFrame, group: str, sampled: pl.Expr) -> pl.DataFrame:
    """``w`` (sample rows: ``account_id``, ``group``, ``SIMHASH``) with ``COMPARABLE``: the row's sample
    (``sampled``: it has one) lies in its group's space, texts when any row of the group samples a text,
    else SimHashes; and ``PEERS``: the group's accounts less those whose samples all lie outside it (an
    account with no sample stays, as it counted before)."""
    c = pl.col
    texted = (sampled & ~c(SIMHASH)).any().over(group)
    w = w.with_columns((sampled & (c(SIMHASH) != texted)).alias(COMPARABLE))
    apart = (sampled.any() & ~c(COMPARABLE).any()).over(group, "account_id")
    w = w.with_columns(apart.alias("_apart"))
    peers = c("account_id").filter(~c("_apart")).n_unique().over(group)
    return w.with_columns(peers.alias(PEERS)).drop("_apart")


def held_in_space(w: pl.DataFrame, group: str, share: float, floor: float, name: str) -> pl.DataFrame:
    """``w`` (sample rows: ``account_id``, ``group``, ``text_fp``, ``SIMHASH``) read in one space
    (``in_one_space``), with ``name``: the row's sample is held by at least ``share`` of the group's
    ``PEERS`` and by at least ``floor`` accounts, in its space (the opener and sheet bars)."""
    c = pl.col
    w = in_one_space(w, group, c("text_fp").is_not_null())
    held = (
        w.filter(c(COMPARABLE)).group_by(group, "text_fp").agg(c("account_id").n_unique().alias("_holders"))
    )
    bar = pl.max_horizontal(c(PEERS).cast(pl.Float64) * share, pl.lit(float(floor)))
    w = w.join(held, on=[group, "text_fp"], how="left")
    return w.with_columns((c(COMPARABLE) & (c("_holders").fill_null(0).cast(pl.Float64) >= bar)).alias(name))


def spaced(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` with ``SIMHASH``; a frame built without it (before round 22) reads as texts."""
    return rows if SIMHASH in rows.columns else rows.with_columns(pl.lit(False).alias(SIMHASH))
