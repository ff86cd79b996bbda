"""The window state's row caps (``StateCaps``), on top of eviction by event time (``WindowState.evict``).

Over a cap a table keeps its most recent rows by event time; an account dropped by the accounts cap
takes its buckets, templates, sheet and opener rows and keys along.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

import polars as pl

from detector.settings import StateCaps
from detector.window.compact import codes_of
from detector.window.ids import ID_HASH


class Tables(Protocol):
    """The state's tables that ``cap_tables`` names (the rest it reaches by name: ``WindowState``)."""

    accounts: pl.DataFrame
    ids: pl.DataFrame
    seen: pl.DataFrame


def cap_tables(state: Tables, caps: StateCaps) -> Counter[str]:
    """Keep the newest ``caps.<table>`` rows of each table (by its event-time column); ``seen``
    counts request ids and drops whole ticks, oldest first."""
    out: Counter[str] = Counter()
    if state.accounts.height > caps.accounts:
        keep = state.accounts.top_k(caps.accounts, by="last_seen")
        gone = state.accounts.join(keep.select("account_id"), on="account_id", how="anti")["account_id"]
        state.accounts = keep.sort("account_id")
        out["accounts/cap"] += gone.len()
        gone_codes = codes_of(state.ids, gone)
        assert gone_codes is not None
        for t in ("buckets", "templates", "keys", "sheets", "openers"):
            frame = getattr(state, t)
            kept = frame.filter(~pl.col("account_code").is_in(gone_codes.implode()))
            out[f"{t}/cap"] += frame.height - kept.height
            setattr(state, t, kept)
    for t, column in (
        ("buckets", "bucket"),
        ("templates", "bucket"),
        ("sheets", "bucket"),
        ("openers", "bucket"),
        ("keys", "last_seen"),
        ("models", "last_seen"),
    ):
        frame, cap = getattr(state, t), getattr(caps, t)
        if frame.height > cap:
            out[f"{t}/cap"] += frame.height - cap
            setattr(state, t, frame.top_k(cap, by=column))
    ids = state.seen.get_column(ID_HASH).list.len().cast(pl.Int64)
    total = int(ids.sum())
    if total > caps.seen:
        newest_first = state.seen.with_columns(ids.alias("_n")).sort("tick", descending=True)
        kept = newest_first.filter(pl.col("_n").cum_sum() <= caps.seen)
        out["seen/cap"] += total - int(kept.get_column("_n").sum())
        state.seen = kept.drop("_n").sort("tick")
    return out
