"""Per-member expressions of a group's size row (``features.cluster_features``), shared with the team-seat
test's pre-check (``detect/seat.py``), which reads them before any feature is built: the two must agree
to the bit, so both read them from here."""

from __future__ import annotations

from datetime import datetime

import polars as pl

#: An account opened within this many seconds of the tick is new (a month).
NEW_ACCOUNT_SECONDS = 30 * 86400


def is_subaccount(sub: pl.DataFrame) -> pl.Expr:
    """Whether the row's account is a reseller tenant's sub-account (``sub``: ``tenant_subaccounts``)."""
    return pl.col("account_id").is_in(sub.get_column("account_id").implode())


def new_account_share(now: datetime) -> pl.Expr:
    """Aggregation: the share of the group's accounts opened within a month of ``now``."""
    return ((pl.lit(now) - pl.col("created_at")).dt.total_seconds() < NEW_ACCOUNT_SECONDS).mean()


def signup_iqr_hours() -> pl.Expr:
    """Aggregation: the middle half of the group's sign-ups in hours, first to third quartile."""
    q = [pl.col("created_at").quantile(p) for p in (0.25, 0.75)]
    return (q[1] - q[0]).dt.total_seconds() / 3600.0
