"""Sign-up cohorts: a client build most of whose holders opened their accounts within one window.

A campaign whose accounts share only their operator's client build (a rare TLS fingerprint + SDK
string) and a sign-up period linked through no composite key when its sign-ups were spread over days:
two of its accounts land in the same sign-up burst window (``windows.signup_burst``, 30 minutes) only
by chance, so linkage made groups of 2-5 and every cluster rule wants five (issue 17, round 9). The
build is one family, and one family never links alone: a popular SDK's holders are strangers. What a
build's holders do not do by coincidence is open their accounts within one week, most of them: an
honest build's users (a tool's, an SDK's) arrive over months and years, its adoption waves a minority
of them. People who open accounts in one sitting (most of the cohort within ``signup_sitting``: an
event's registration desk, a team's afternoon) share the window because of the sitting: no cohort
(a small world's first hours can make a hackathon most of a popular SDK's holders seen so far).
A cohort is the largest set of a build's holders opened within ``LinkSettings.signup_cohort`` of
each other, when it is most (``min_overlap``) of the build's holders and at least
``cohort_min_accounts``. It links its members (``window.link``: link ``client+signup_window``);
whether it is one customer's team (one org, one card) or a farm is for the evidence model and rules.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from detector.contracts import LinkFamily
from detector.settings import LinkSettings

#: The link name of a cohort (``Clusters.links``), and its group slot (a pair group is
#: ``kid * 2^32 + kid_b`` with ``kid_b`` a key id; this slot is no key's).
COHORT_LINK = "client+signup_window"
COHORT_SLOT = (1 << 32) - 1


def signup_cohorts(
    held: pl.DataFrame, created: pl.DataFrame, holders: pl.DataFrame, cfg: LinkSettings
) -> pl.DataFrame:
    """Members of each client build's sign-up cohort: (a, kid, last_seen).

    ``held``: the client keys each account holds (a, kid, last_seen); ``created``: (a, created_at) per
    account; ``holders``: (kid, n), each key's holders in the whole key table.
    """
    h = (
        held.join(created, on="a", how="inner")
        .join(holders, on="kid", how="inner")
        .filter(pl.col("n") >= cfg.cohort_min_accounts)
        .sort("kid", "created_at", "a")
    )
    if h.height == 0:
        return h.select("a", "kid", "last_seen")
    period_us = int(cfg.signup_cohort.total_seconds() * 1_000_000)
    period = f"{period_us}us"
    # each holder's window ends at its sign-up: the build's holders opened within the period before it
    counted = h.with_columns(
        pl.len().rolling(index_column="created_at", period=period).over("kid").alias("c")
    )
    best = (
        counted.sort(["kid", "c", "created_at"], descending=[False, True, False])
        .group_by("kid", maintain_order=True)
        .first()
        .filter((pl.col("c") >= cfg.cohort_min_accounts) & (pl.col("c") >= cfg.min_overlap * pl.col("n")))
        .select("kid", pl.col("created_at").alias("_end"))
    )
    start = pl.col("_end") - pl.duration(microseconds=period_us)
    members = h.join(best, on="kid", how="inner").filter(
        (pl.col("created_at") > start) & (pl.col("created_at") <= pl.col("_end"))
    )
    # one sitting: most of the cohort opened within a few hours of each other (an event's registration
    # desk, a team's afternoon); the sitting explains the shared window, and a farm opened in one sitting
    # shares its sign-up bursts (the ``signup`` key) instead
    sitting = f"{int(cfg.signup_sitting.total_seconds() * 1_000_000)}us"
    one_sitting = (
        members.with_columns(
            pl.len().rolling(index_column="created_at", period=sitting).over("kid").alias("s"),
            pl.len().over("kid").alias("size"),
        )
        .group_by("kid")
        .agg((pl.col("s").max() >= cfg.min_overlap * pl.col("size").first()).alias("sat"))
        .filter("sat")
        .select("kid")
    )
    return members.join(one_sitting, on="kid", how="anti").select("a", "kid", "last_seen")


def cohort_groups(
    k: pl.DataFrame,
    ids: pl.DataFrame,
    accounts: pl.DataFrame,
    holders: pl.DataFrame,
    fam_code: Mapping[LinkFamily, int],
    cfg: LinkSettings,
) -> pl.DataFrame:
    """Each client build's sign-up cohort (``window.cohorts``) as a group, in ``held_by``'s columns."""
    if "created_at" not in accounts.columns:
        return pl.DataFrame()
    created = accounts.join(ids, on="account_id", how="inner").select("a", "created_at").drop_nulls()
    held = k.filter(pl.col("fam") == fam_code["client"]).select("a", "kid", "last_seen")
    members = signup_cohorts(held, created, holders.select("kid", "n"), cfg)
    return members.select(
        "a",
        pl.lit(fam_code["client"], pl.UInt8).alias("fam"),
        # the build is the family the cohort shares; its window is the link, not a ``signup`` key the
        # members hold (``shares_signup`` stays a half hour's burst: the cohort is its own signal)
        pl.lit(fam_code["client"], pl.UInt8).alias("fam_b"),
        "kid",
        pl.lit(COHORT_SLOT, pl.UInt64).alias("kid_b"),
        (pl.col("kid") * (1 << 32) + COHORT_SLOT).alias("group"),
        pl.col("last_seen").alias("held"),
    )


def cohort_links(cohort: pl.DataFrame, holders: pl.DataFrame) -> pl.DataFrame:
    """The cohorts' rows of ``grouped``: weight is the share of the build's holders in the cohort."""
    return (
        cohort.group_by("group")
        .agg(
            pl.len().alias("m"),
            pl.col("held").max().alias("last_seen"),
            pl.col("fam").first(),
            pl.col("fam_b").first(),
            pl.col("kid").first(),
            pl.col("a").min().alias("first"),
        )
        .join(holders.select("kid", "n"), on="kid")
        .select(
            "group",
            "m",
            "last_seen",
            "fam",
            "fam_b",
            (pl.col("m") / pl.col("n")).alias("weight"),
            pl.lit(COHORT_LINK).alias("link"),
            "first",
            pl.lit(False).alias("in_tenant"),
        )
    )


def cohort_accounts(grouped: pl.DataFrame, index: pl.DataFrame) -> pl.DataFrame:
    """Per cluster, its largest sign-up cohort's accounts: (cluster_id, signup_cohort_accounts)."""
    return (
        grouped.filter(pl.col("link") == COHORT_LINK)
        .join(index.select(pl.col("a").alias("first"), "cluster_id"), on="first")
        .group_by("cluster_id")
        .agg(pl.col("m").max().cast(pl.Int64).alias("signup_cohort_accounts"))
    )
