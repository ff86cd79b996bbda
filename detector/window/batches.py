"""Account features and the sheet test in parts: the points of a pass split by account
(``account_batches``), so the join of points with their buckets, templates and sheet texts stays bounded
however many accounts a pass has active (``EngineSettings.feature_batch_points``; docs/benchmarks.md,
Scale and Round 19). Every account feature is per account, so the rows are the same, in the same order,
as in one part; the sheet test (``detect/context.population_sheets``) reads a point's own rows and its
texts' holders among every account's rows (whole in every part), so a part's points get the rows one
pass gives them.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from detector.window.features import account_features
from detector.window.state import WindowState


def account_batches(points: pl.DataFrame, batch: int) -> list[pl.DataFrame]:
    """``points`` split by account into parts of about ``batch`` points: a part takes the accounts (in id
    order) whose first point falls in one run of ``batch`` points, so it holds fewer than ``batch`` plus
    its last account's points (an account's points are never split). One part if they all fit.

    No part is a single point: polars divides a one-row frame by a literal exactly but a longer one by
    multiplying with the reciprocal (``account_age_days`` would differ in its last bit), so a lone point
    joins the part before it (with ``batch`` >= 2 that part is never a lone point itself).
    """
    batch = max(batch, 2)
    if points.height <= batch:
        return [points]
    part = (pl.col("len").cum_sum() - pl.col("len")) // batch
    lone = (pl.col("len") == 1) & (pl.len().over("_part") == 1)
    per = (
        points.group_by("account_id")
        .len()
        .sort("account_id")
        .with_columns(part.alias("_part"))
        .with_columns(pl.when(lone).then(pl.col("_part").shift(1)).otherwise(pl.col("_part")).alias("_part"))
        .with_columns(pl.col("_part").forward_fill().backward_fill())
    )
    parts = points.join(per.select("account_id", "_part"), on="account_id", how="left")
    return [p.drop("_part") for p in parts.partition_by("_part", maintain_order=True)]


def account_features_in_parts(
    state: WindowState, points: pl.DataFrame, short: timedelta, long: timedelta, batch: int
) -> pl.DataFrame:
    """``window.features.account_features`` over ``account_batches(points, batch)``, concatenated."""
    parts = account_batches(points, batch)
    if len(parts) == 1:
        return account_features(state, parts[0], short, long)
    feats = [account_features(state, p, short, long) for p in parts]
    return pl.concat(feats, how="vertical").sort("tick_end", "account_id")


def with_points(feats: pl.DataFrame) -> pl.DataFrame:
    """Account features keyed by point: ``_point`` is the tick's epoch microseconds and the account id."""
    tick = pl.col("tick_end").dt.epoch("us").cast(pl.String)
    return feats.with_columns(pl.concat_str([tick, pl.col("account_id")], separator="|").alias("_point"))
