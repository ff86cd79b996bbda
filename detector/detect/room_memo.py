"""The room test's memo along one walk over a pass's ticks (issue 13, round 13).

``room.room_templates`` asks, at every tick with accused points, which templates a room explains. A
farm's template behind a proxy pool fails the venue test at every tick, and testing it again reads all
its holders' network rows each time. The memo keeps the templates that failed the test's network part
and says which of them must fail again at a later tick of the same walk (``RoomMemo``).
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from detector.evidence_settings import EvidenceSettings
from detector.schema import UTC_US

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

    def __init__(self, log: pl.DataFrame) -> None:
        self._log = log.filter(pl.col("family").cast(pl.String).is_in(NETWORK_INPUTS)).select(
            "account_id", pl.col("family").cast(pl.String), "key", "_tick"
        )
        self._now: datetime | None = None
        self._since: datetime | None = None
        #: the memo's tick, its key table (held, not copied), its sub-accounts, and its failed templates
        self._tick: datetime | None = None
        self._keys = pl.DataFrame(schema={**dict.fromkeys(_KEY, pl.String), "last_seen": UTC_US})
        self._sub = pl.DataFrame(schema={"account_id": pl.String})
        self._failed = pl.DataFrame(schema=_FAILED)
        #: templates skipped, of them those with changed holders (on a bound), and templates tested
        self.skipped = 0
        self.bounded = 0
        self.computed = 0

    def walk(self, now: datetime, since: datetime | None) -> None:
        """The tick the next ``room_templates`` call reads, and its link window's start (ticks in order)."""
        self._now, self._since = now, since

    def known(
        self, keys: pl.DataFrame, sub: pl.DataFrame, s: EvidenceSettings
    ) -> tuple[pl.Series, pl.Series]:
        """The memo's failed templates that must fail at the tick walked (``keys``: the table as of it;
        ``sub``: its tenants' sub-accounts), their bounds moved to it; and those it can no longer tell
        (to be tested again in full)."""
        none = self._failed["cluster_id"].clear()
        if self._tick is None or self._failed.height == 0:
            return none, none
        t, c, ids = pl.col("_tick"), pl.col, "account_id"
        tmpl, inputs = c("family") == "template", c("family").is_in(NETWORK_INPUTS)
        # rows gained since (new, or back in the window): the log's rows not in the memo's table
        log = self._log.filter((t > self._tick) & (t <= self._now))
        was = self._keys.filter(c(ids).is_in(log[ids].unique().implode()) & inputs).select(_KEY)
        moved = [log.select(_KEY).join(was, on=_KEY, how="anti")]
        if self._since is not None:  # and rows the window dropped since
            moved.append(self._keys.filter((c("last_seen") < self._since) & inputs).select(_KEY))
        rows = pl.concat(moved)
        # accounts whose network rows moved, or that entered or left the sub-accounts
        who = pl.concat(
            [
                rows.filter(~tmpl).select(ids),
                self._sub.join(sub, on=ids, how="anti"),
                sub.select(ids).join(self._sub, on=ids, how="anti"),
            ]
        )[ids].unique()
        mine = tmpl & c(ids).is_in(who.implode())
        changed = (
            pl.concat(
                [
                    rows.filter(tmpl).select(ids, "key"),  # gained or lost the template's row
                    self._keys.filter(mine).select(ids, "key"),
                    keys.filter(mine).select(ids, "key"),
                ]
            )
            .unique()
            .group_by(c("key").alias("cluster_id"))
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
        self._failed = marked.select(
            "cluster_id", c("_lo2") - a, c("_hi1") + a, c("_lo_w") - a, c("_hi_w") + a
        )
        return self._failed["cluster_id"], again

    def keep(
        self,
        keys: pl.DataFrame,
        sub: pl.DataFrame,
        failed: pl.DataFrame,
        sampled: pl.DataFrame,
        counts: pl.DataFrame,
    ) -> None:
        """The tick walked becomes the memo's: its table, its sub-accounts, and the templates failing
        there: ``known``'s (skipped) and ``failed``'s (tested): those ``room.sample_test`` ruled out
        (``sampled``: the sample's second largest count over the members) and those ``venues`` failed
        (``counts``: its counts with ``counts=True``)."""
        self._tick, self._keys = self._now, keys
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
