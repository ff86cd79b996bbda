"""Which account verdict rows change the alert book, decided for a whole batch in one vectorised pass.

Most account verdicts repeat what the book already holds. Only rows that open an episode or raise its
severity change it (an account alert's membership never grows), so only those become ``Verdict``
objects; the rest only keep their episodes open (``AlertBook.touch``).
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from detector.alert.verdict import AlertBook


def book_changes(rows: pl.DataFrame, book: AlertBook) -> tuple[pl.DataFrame, dict[datetime, list[str]]]:
    """Split combined account rows (``account_id``, ``tick_end``, ``_rank``; sorted by tick) into the
    rows that change ``book`` and, per tick, the accounts whose verdict changes nothing.

    A row opens an episode when the account has none or its last verdict is older than the idle span;
    it escalates when its rank beats every earlier row of its episode (and the book's, if open).
    """
    ranks = book.ranks("account")
    prev_hit = pl.col("tick_end").shift(1).over("account_id").fill_null(pl.col("_book_last"))
    rows = (
        rows.join(ranks, left_on="account_id", right_on="subject", how="left", maintain_order="left")
        .with_columns(
            (prev_hit.is_null() | (pl.col("tick_end") - prev_hit > pl.lit(book.idle))).alias("_opens")
        )
        .with_columns(pl.col("_opens").cast(pl.Int32).cum_sum().over("account_id").alias("_episode"))
        .with_columns(
            (
                pl.col("_opens")
                | (
                    pl.col("_rank")
                    > pl.max_horizontal(
                        pl.col("_rank").cum_max().shift(1).over("account_id", "_episode"),
                        pl.when(pl.col("_episode") == 0).then(pl.col("_book_rank")),
                    ).fill_null(0)
                )
            ).alias("_changes")
        )
    )
    quiet = rows.filter(~pl.col("_changes")).group_by("tick_end").agg("account_id")
    touches = dict(zip(quiet["tick_end"].to_list(), quiet["account_id"].to_list(), strict=True))
    return rows.filter(pl.col("_changes")), touches
