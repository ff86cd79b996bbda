"""The room test's memo along one walk over a pass's ticks (issue 13, round 13).

``room.room_templates`` asks, at every tick with accused points, which templates a room explains. A
farm's template behind a proxy pool fails the venue test at every tick, and testing it again reads all
its holders' network rows each time. The memo keeps the templates that failed the test's network part
and says which of them must fail again at a later tick of the same walk (``RoomMemo``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import polars as pl

from detector.evidence_settings import EvidenceSettings

#: The key families the network part of the venue test reads: who holds a template, and their networks.
NETWORK_INPUTS = ("template", "ip")

_KEY = ["account_id", "family", "key"]
#: a failed template and bounds on its counts as of the memo's tick (null: unknown): the second largest
#: prefix count at least ``_lo2``, the largest at most ``_hi1``, the holders with a network key from
#: ``_lo_w`` to ``_hi_w``
_FAILED = {
    "cluster_id": pl.String,
    "_lo2": pl.Float64,
    "_hi1": pl.Float64,
    "_lo_w": pl.Float64,
    "_hi_w": pl.Float64,
}


class RoomMemo:
    """The templates failing the network part of ``colocated`` (``venues``' shares) along one walk.

    A template's network verdict reads only its holders, which of them are tenants' sub-accounts
    (left out), and their network rows. An account is **changed** for a template between the memo's
    tick and the tick walked when it gained or lost the template's row, or (holding it at either tick)
    gained or lost a network row, or entered or left the sub-accounts. With ``a`` changed accounts,
    every prefix's count of holders and the count of holders with a network key move by at most ``a``.
    A failed template fails again when:

    - ``a`` is 0: its inputs are the same (any failure, e.g. no network key at all);
    - its second largest prefix count, at least ``lo2 - a``, is above ``colocated_second_share`` of the
      holders with a network key, at most ``hi_w + a`` (``room.sample_test``'s bound: from a sample,
      ``lo2`` its second largest count and ``hi_w`` the members; from ``venues``, the counts);
    - or its largest count, at most ``hi1 + a``, is below ``colocated_member_share`` of at least
      ``lo_w - a`` holders (from ``venues``' counts).

    Kept, its bounds move by ``a`` to the tick walked; a template the memo can no longer tell is tested
    again in full (``venues``), whose counts give bounds with a wide margin (a proxy pool's second
    prefix is held by most of its accounts, a sample's only by a few more than the line).

    The table at the tick walked is the memo's table plus the batch's key log since (``log``), less the
    rows the link window dropped (``last_seen`` before ``since``, which never goes back). Built per pass
    from the batch's log: no state, so a pass after a restored checkpoint walks the same.
    """

    def __init__(self, log: pl.DataFrame, before: Callable[[], pl.DataFrame]) -> None:
        self._log = log.filter(pl.col("family").cast(pl.String).is_in(NETWORK_INPUTS)).select(
            "account_id", pl.col("family").cast(pl.String), "key", "_tick", "last_seen"
        )
        self._before = before
        self._index: tuple[pl.DataFrame, pl.DataFrame] | None = None
        self._now: datetime | None = None
        self._since: datetime | None = None
        #: the memo's tick and its link window's start, its sub-accounts, its failed templates and
        #: their holders (at the memo's tick, and any since: never fewer)
        self._tick: datetime | None = None
        self._tick_since: datetime | None = None
        self._sub = pl.DataFrame(schema={"account_id": pl.String})
        self._failed = pl.DataFrame(schema=_FAILED)
        self._held = pl.DataFrame(schema={"account_id": pl.String, "cluster_id": pl.String})
        #: templates skipped, of them those with changed holders (on a bound), and templates tested
        self.skipped = 0
        self.bounded = 0
        self.computed = 0

    def walk(self, now: datetime, since: datetime | None) -> None:
        """The tick the next ``room_templates`` call reads, and its link window's start (ticks in order)."""
        self._now, self._since = now, since

    def _rows(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Once per pass: each template or network row of the log with its first tick in the batch
        (``_t1``) and its last use before the batch (``_b``, null: none); and the table's template and
        network rows before the batch, by last use (``last_seen``), to find those the window drops."""
        if self._index is None:
            c = pl.col
            before = self._before().filter(c("family").is_in(NETWORK_INPUTS)).select(*_KEY, "last_seen")
            first = (
                self._log.group_by(_KEY)
                .agg(c("_tick").min().alias("_t1"))
                .join(before.rename({"last_seen": "_b"}), on=_KEY, how="left")
            )
            self._index = first, before.sort("last_seen")
        return self._index

    def known(
        self, keys: pl.DataFrame, sub: pl.DataFrame, s: EvidenceSettings
    ) -> tuple[pl.Series, pl.Series]:
        """The memo's failed templates that must fail at the tick walked (``keys``: the table as of it;
        ``sub``: its tenants' sub-accounts), their bounds moved to it; and those it can no longer tell
        (to be tested again in full)."""
        none = self._failed["cluster_id"].clear()
        if self._tick is None or self._failed.height == 0:
            return none, none
        c, ids = pl.col, "account_id"
        oldest = self._log["last_seen"].min()
        if self._since is not None and isinstance(oldest, datetime) and self._since > oldest:
            # a pass longer than the link window: the batch's own rows may leave it; test everything
            self._failed = self._failed.clear()
            return none, none
        first, before = self._rows()
        # rows gained since: first used in the batch since the memo's tick, and not live before it
        live = (
            (c("_b") >= self._tick_since).fill_null(False)
            if self._tick_since is not None
            else c("_b").is_not_null()
        )
        moved = [first.filter((c("_t1") > self._tick) & (c("_t1") <= self._now) & ~live).select(_KEY)]
        if self._since is not None:  # rows from before the batch the window dropped since (or may have)
            seen = before["last_seen"]
            lo = 0 if self._tick_since is None else int(seen.search_sorted(self._tick_since, "left"))
            hi = int(seen.search_sorted(self._since, "left"))
            moved.append(before.slice(lo, max(hi - lo, 0)).select(_KEY))
        rows = pl.concat(moved)
        tmpl = c("family") == "template"
        # accounts whose network rows moved, or that entered or left the sub-accounts
        who = pl.concat(
            [
                rows.filter(~tmpl).select(ids),
                self._sub.join(sub, on=ids, how="anti"),
                sub.select(ids).join(self._sub, on=ids, how="anti"),
            ]
        )[ids].unique()
        changed = (
            pl.concat(
                [
                    # gained or lost the template's row
                    rows.filter(tmpl).select(ids, c("key").alias("cluster_id")),
                    # held it at the memo's tick (or gained it since: above)
                    self._held.filter(c(ids).is_in(who.implode())),
                ]
            )
            .unique()
            .group_by("cluster_id")
            .agg(pl.len().cast(pl.Float64).alias("_a"))
        )
        a = c("_a")
        margin = 1e-9  # as ``room.sample_test``: a bound decides only clear of rounding
        second = c("_lo2") - a > s.colocated_second_share * (1 + margin) * (c("_hi_w") + a)
        top = (c("_hi1") + a < s.colocated_member_share * (1 - margin) * (c("_lo_w") - a)) & (c("_lo_w") > a)
        still = (a == 0) | second.fill_null(False) | top.fill_null(False)
        marked = self._failed.join(changed, on="cluster_id", how="left").with_columns(a.fill_null(0.0))
        again = marked.filter(~still)["cluster_id"]
        marked = marked.filter(still)
        self.bounded += int((marked["_a"] > 0).sum())
        bounds = [c("_lo2") - a, c("_hi1") + a, c("_lo_w") - a, c("_hi_w") + a]
        self._failed = marked.select("cluster_id", *bounds)
        # holders now: those at the memo's tick and those that gained the row since
        gained = rows.filter(tmpl).select(ids, c("key").alias("cluster_id"))
        self._held = pl.concat([self._held, gained]).join(self._failed, on="cluster_id", how="semi")
        return self._failed["cluster_id"], again

    def keep(
        self,
        sub: pl.DataFrame,
        failed: pl.DataFrame,
        members: pl.DataFrame,
        sampled: pl.DataFrame,
        counts: pl.DataFrame,
    ) -> None:
        """The tick walked becomes the memo's: its sub-accounts, and the templates failing there:
        ``known``'s (skipped) and ``failed``'s (tested; ``members``: their holders, account_id and
        cluster_id): those ``room.sample_test`` ruled out (``sampled``: the sample's second largest count
        over the members) and those ``venues`` failed (``counts``: its counts with ``counts=True``)."""
        self._tick, self._tick_since = self._now, self._since
        self._sub = sub.select("account_id").unique()
        c = pl.col
        by_sample = sampled.select("cluster_id", c("_h2").alias("_lo2"), c("_n").alias("_hi_w"))
        in_full = counts.select(
            "cluster_id",
            c("_h2").alias("_lo2"),
            c("_h1").alias("_hi1"),
            c("_with_ip").alias("_lo_w"),
            c("_with_ip").alias("_hi_w"),
        )
        bounds = pl.concat([by_sample, in_full], how="diagonal")
        new = failed.select("cluster_id").join(bounds, on="cluster_id", how="left")
        self._failed = pl.concat([self._failed, new.select(c(k).cast(t) for k, t in _FAILED.items())])
        held = members.join(failed, on="cluster_id", how="semi").select("account_id", "cluster_id")
        self._held = pl.concat([self._held, held])
