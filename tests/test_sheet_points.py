"""The account sheet test reads only the points' texts (round 13, issue 13): the same features as the
test that read every account's texts of the window and paired every holder of a popular text.

The reference below is the test as it stood before the cut (a18751e), kept here to compare against.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.window.sheets import SHEET_SCHEMA, _share, account_sheets, reasoning_rows

T0 = datetime(2026, 3, 2, tzinfo=UTC)
LONG = timedelta(hours=2)


def _reference(
    rows: pl.DataFrame, points: pl.DataFrame, long: timedelta, min_accounts: int, member_share: float
) -> pl.DataFrame:
    end = pl.col("tick_end")
    w = points.select("tick_end").unique().join(reasoning_rows(rows), how="cross")
    w = w.filter((pl.col("bucket") >= end - long) & (pl.col("bucket") < end))
    held = w.group_by("tick_end", "text_fp").agg(pl.col("account_id").n_unique().alias("_holders"))
    w = w.join(held, on=["tick_end", "text_fp"])
    wide = w.filter(pl.col("_holders") >= min_accounts).select("tick_end", "account_id", "text_fp").unique()
    co = (
        wide.join(wide.rename({"account_id": "_other"}), on=["tick_end", "text_fp"])
        .group_by("tick_end", "account_id")
        .agg(pl.col("_other").n_unique().alias("_co"))
    )
    bar = pl.col("_co").fill_null(0).cast(pl.Float64) * member_share
    w = w.join(co, on=["tick_end", "account_id"], how="left").with_columns(
        ((pl.col("_holders") >= min_accounts) & (pl.col("_holders") >= bar)).alias("_sheet")
    )
    w = w.join(points.select("account_id", "tick_end"), on=["account_id", "tick_end"], how="semi")
    return w.group_by("account_id", "tick_end").agg(_share())


def _frames(seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Dense random rows (8 accounts, 4 texts, 12 buckets: texts shared, co-holders outside the points)
    and up to 12 points."""
    r = random.Random(seed)
    q = timedelta(minutes=15)
    raw = [
        (r.randint(0, 7), r.randint(0, 11), r.random() < 0.5, r.randint(0, 3), r.randint(1, 4))
        for _ in range(r.randint(0, 80))
    ]
    rows = pl.DataFrame(
        {
            "account_id": [f"a{a}" for a, *_ in raw],
            "bucket": [T0 + b * q for _, b, *_ in raw],
            "plain": [p for _, _, p, *_ in raw],
            "text_fp": [t for *_, t, _ in raw],
            "requests": [n for *_, n in raw],
            "sends": [r.randint(1, n) for *_, n in raw],
            "simhash": [False] * len(raw),
        },
        schema=SHEET_SCHEMA,
    )
    pts = [(r.randint(0, 7), r.randint(1, 13)) for _ in range(r.randint(0, 12))]
    points = pl.DataFrame(
        {"account_id": [f"a{a}" for a, _ in pts], "tick_end": [T0 + t * q for _, t in pts]},
        schema={"account_id": pl.String, "tick_end": SHEET_SCHEMA["bucket"]},
    ).unique()
    return rows, points


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(1, 4), st.sampled_from([0.0, 1 / 3, 0.5, 1.0]))
def test_the_points_texts_give_what_every_accounts_texts_gave(
    seed: int, min_accounts: int, share: float
) -> None:
    rows, points = _frames(seed)
    key = ["account_id", "tick_end"]
    got = account_sheets(rows, points, LONG, min_accounts, share).sort(key)
    want = _reference(rows, points, LONG, min_accounts, share).sort(key)
    assert got.equals(want), (got, want)


def test_co_holders_outside_the_points_count() -> None:
    """A point's co-holders include accounts that are no point: a0 holds text 7 (3 holders) and text 9
    (5 holders), so its co-holders are 7 accounts, and at a half share text 7 is no sheet text; a point
    without reasoning rows in its window gets no row."""
    holders = {7: ["a0", "a1", "a2"], 9: ["a0", "a3", "a4", "a5", "a6"]}
    pairs = [(a, t) for t, accounts in holders.items() for a in accounts]
    rows = pl.DataFrame(
        {
            "account_id": [a for a, _ in pairs],
            "bucket": [T0] * len(pairs),
            "plain": [False] * len(pairs),
            "text_fp": [t for _, t in pairs],
            "requests": [1] * len(pairs),
            "sends": [1] * len(pairs),
            "simhash": [False] * len(pairs),
        },
        schema=SHEET_SCHEMA,
    )
    tick = T0 + timedelta(minutes=30)
    points = pl.DataFrame(
        {"account_id": ["a0", "a9"], "tick_end": [tick] * 2},
        schema={"account_id": pl.String, "tick_end": SHEET_SCHEMA["bucket"]},
    )
    got = account_sheets(rows, points, LONG, 3, 0.5)
    assert got["account_id"].to_list() == ["a0"]
    assert got["sheet_share_24h"].to_list() == [0.5]  # text 9 only: 5 >= 7 x 0.5, 3 < 3.5
    assert got.equals(_reference(rows, points, LONG, 3, 0.5))
