"""The linkage key table as it stood at a tick, while one engine call closes many ticks at once.

``WindowState.add`` folds a whole batch of ticks into the key table in one go, so after it the table
holds uses from ticks later than the one being evaluated (a card first used at 10:40 would already link
an account at 10:15, a network key last used a week ago and again at 10:40 would still be live at
10:15). Every reader at tick T therefore reads a view from here, never ``WindowState.keys``: the table
before the batch, plus the batch's per-tick key log up to T, less the keys the link window had dropped
by T. A feature, a link or an allow-list match at T is then the same whether the batch closed one tick
or a hundred (tests/test_slicing.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

import polars as pl

from detector.window.keycodes import key_rows
from detector.window.state import WindowState, merge_keys

#: A key table (``KEY_SCHEMA``), or a function that gives it
Table = pl.DataFrame | Callable[[], pl.DataFrame]


def live(keys: pl.DataFrame, since: datetime | None) -> pl.DataFrame:
    """Keys used at or after ``since`` (None: all): what eviction by the link window keeps."""
    return keys if since is None else keys.filter(pl.col("last_seen") >= since)


class KeyTimeline:
    """The key table before a batch, its per-tick log, and the table after: views at any tick.

    ``before``: the table before ``WindowState.add``; ``log``: what ``add`` returned (one row per
    account, family, key and ``_tick``); ``after``: the table after it (the view at the batch's last
    tick, already merged). Each table is a frame (``KEY_SCHEMA``) or a function that gives it, called
    once, when a view first needs it (``stored``).
    """

    def __init__(self, before: Table, log: pl.DataFrame, after: Table, keep: timedelta | None = None) -> None:
        self._tables = {"before": before, "after": after}
        self.log = log
        last = log["_tick"].max() if log.height else None
        self._last_tick: datetime | None = last if isinstance(last, datetime) else None
        #: ``at`` merges the log forward as ticks advance: the table as of ``_at`` (None: ``before``)
        self._merged: pl.DataFrame | None = None
        self._at: datetime | None = None
        #: the ticks this walk will read (``keep``: its multiples), and the tables as of them that a walk
        #: ahead of it (``fresh``) merged on its way: this one takes them up instead of merging again
        self._keep = keep
        self._kept: dict[datetime, pl.DataFrame] = {}
        self._leads = False

    @classmethod
    def stored(
        cls,
        before: pl.DataFrame,
        log: pl.DataFrame,
        state: WindowState,
        keep: timedelta | None = None,
    ) -> KeyTimeline:
        """A batch's timeline from the state after ``add``: ``before``, its key table before the batch
        (``WindowState.keys``, stored as codes), each table read back (``key_rows``) when first needed
        (``keep``: this walk reads the ticks at its multiples, kept for it by the walks ``fresh`` starts)."""
        ids, names = state.ids, state.key_names  # only grow during a batch: they hold every code of both
        tables = partial(key_rows, before, ids, names), partial(key_rows, state.keys, ids, names)
        return cls(tables[0], log, tables[1], keep)

    def fresh(self) -> KeyTimeline:
        """A timeline of the same batch at its start (for a second walk over its ticks, ahead of this
        one), sharing the tables this one has read; the tables it merges as of the ticks this one will
        read are handed over (``at``)."""
        walk = KeyTimeline(lambda: self.before, self.log, lambda: self.after, self._keep)
        walk._kept, walk._leads = self._kept, True
        return walk

    def _table(self, name: str) -> pl.DataFrame:
        table = self._tables[name]
        if not isinstance(table, pl.DataFrame):
            table = self._tables[name] = table()
        return table

    @property
    def before(self) -> pl.DataFrame:
        """The key table before the batch (``KEY_SCHEMA``)."""
        return self._table("before")

    @property
    def after(self) -> pl.DataFrame:
        """The key table after the batch (``KEY_SCHEMA``)."""
        return self._table("after")

    def at(self, now: datetime, since: datetime | None) -> pl.DataFrame:
        """The table as it stood at tick ``now``, less keys unused since ``since`` (ticks in order)."""
        if self._last_tick is None or now >= self._last_tick:
            return live(self.after, since)
        if self._merged is None or self._at is None or now > self._at:
            kept = None if self._leads else self._kept.pop(now, None)
            if kept is None:
                after_at = pl.col("_tick") > self._at if self._at is not None else pl.lit(True)
                merged = self.before if self._merged is None else self._merged
                kept = merge_keys(merged, self.log.filter(after_at & (pl.col("_tick") <= now)))
                if self._leads and self._keep is not None and _on_step(now, self._keep):
                    self._kept[now] = kept
            self._merged, self._at = kept, now
        return live(self._merged, since)

    def at_points(self, points: pl.DataFrame) -> pl.DataFrame:
        """Each point's own keys as they stood at its tick.

        ``points``: (account_id, tick_end, since), ``since`` as in ``at`` (null: no limit). Returns
        (account_id, tick_end, family, key, last_seen, uses), one row per key a point's account held.
        """
        pts = points.select("account_id", "tick_end", "since")
        before = pts.join(self.before, on="account_id", how="inner")
        during = (
            pts.join(self.log, on="account_id", how="inner")
            .filter(pl.col("_tick") <= pl.col("tick_end"))
            .drop("_tick")
        )
        by = ["account_id", "tick_end", "family", "key"]
        return (
            pl.concat([before, during.select(before.columns)])
            .group_by(*by, "since")
            .agg(pl.col("last_seen").max(), pl.col("uses").sum())
            .filter(pl.col("since").is_null() | (pl.col("last_seen") >= pl.col("since")))
            .select(*by, "last_seen", "uses")
        )


def _on_step(ts: datetime, step: timedelta) -> bool:
    """Whether ``ts`` is a multiple of ``step`` from the epoch (as the engine counts its cluster ticks)."""
    return (ts - datetime(1970, 1, 1, tzinfo=ts.tzinfo)) % step == timedelta(0)


def lapse_ticks(due: pl.DataFrame, tables: dict[str, pl.DataFrame], idle: timedelta) -> list[datetime]:
    """Ticks of a batch (after its first) at which an account or a model unseen for ``idle`` comes back.

    Closed one tick at a time, eviction after the tick before would have forgotten it, and it would come
    back new (its first-seen time, ``observed_hours``, a cluster's name, a model's newness restart);
    closed with the ticks before it in one pass, it would keep its old row. The engine closes the batch
    in parts that start at these ticks, so eviction runs in between. ``due``: the batch with ``_tick``;
    ``tables``: key column -> table with ``last_seen`` (accounts, models). Rare: [] almost always.
    """
    ticks = due.get_column("_tick").unique().sort()
    if ticks.len() < 2:
        return []
    # eviction after the previous closed tick keeps what was seen since (the first tick's was done)
    since = pl.DataFrame({"_tick": ticks, "since": ticks.shift(1) - idle}).drop_nulls()
    out: set[datetime] = set()
    for col, table in tables.items():
        # each use's previous one: earlier in the batch, or the table's (before the batch)
        uses = (
            due.group_by(col, "_tick")
            .agg(pl.col("ts").max().alias("_last"))
            .join(table.select(col, "last_seen"), on=col, how="left")
            .sort(col, "_tick")
            .with_columns(
                pl.when(pl.col("_tick") == pl.col("_tick").min().over(col))
                .then(pl.col("last_seen"))
                .otherwise(pl.col("_last").shift(1).over(col))
                .alias("_prev")
            )
        )
        back = uses.join(since, on="_tick").filter(pl.col("_prev") < pl.col("since"))
        out.update(back.get_column("_tick").to_list())
    return sorted(out)


#: Account attributes the events carry (event column -> account table column), read at every tick.
ATTRIBUTES = {"account_created_at": "created_at", "tier": "tier", "org_id": "org_id", "verified": "verified"}


def change_ticks(due: pl.DataFrame, accounts: pl.DataFrame) -> list[datetime]:
    """Ticks of a batch (after its first) at which an account already seen changes its tier, org,
    verified flag or sign-up time (an upgrade, a verification). Readers take these from the account
    table, which holds the batch's last values: closed in parts that start at these ticks, each tick
    reads the values it would read one tick at a time. Rare: [] almost always."""
    ticks = due.get_column("_tick")
    if ticks.n_unique() < 2:
        return []
    was = accounts.select(
        "account_id",
        pl.lit(True).alias("_known"),
        *[pl.col(c).alias(f"_was_{c}") for c in ATTRIBUTES.values()],
    )
    per = (
        due.group_by("account_id", "_tick")
        .agg(pl.col(src).drop_nulls().last().alias(dst) for src, dst in ATTRIBUTES.items())
        .join(was, on="account_id", how="left")
        .sort("account_id", "_tick")
    )
    # seen before this tick: in an earlier tick of the batch, or in the table
    seen = (pl.col("_tick") > pl.col("_tick").min().over("account_id")) | pl.col("_known").fill_null(False)
    changed = [
        # against the value readers saw before this tick: the batch's latest earlier one, else the table's
        pl.col(c).is_not_null()
        & pl.col(c).ne_missing(
            pl.coalesce(pl.col(c).forward_fill().shift(1).over("account_id"), pl.col(f"_was_{c}"))
        )
        for c in ATTRIBUTES.values()
    ]
    hits = per.filter((pl.col("_tick") > ticks.min()) & seen & pl.any_horizontal(changed))
    return sorted(set(hits.get_column("_tick").to_list()))
