"""A cluster against the population of its client build: does its traffic stand out from the tool's?

A popular tool's users are linked by its artefacts (its client build, its system prompt), and a
cluster of them is the tool's population, or a slice of it (the few active in one night hour): its
traffic mix is the tool's. A farm that sends through a tool other people use too (a router's client
build, a popular SDK) is a slice whose mix is not the tool's: a reasoning-harvest share far above what
the build's other holders send. An aged, verified farm of many orgs that signed up over days has no
sign-up batch to show; this is the evidence an analyst reads instead (issue 17, round 7).

Holders are read from the linkage key table as it stood at the tick (the link window, seven days,
checkpointed with the state); their traffic from the 24 h buckets. A private build (every holder a
member) has no outside population to compare with: ``client_outside_holders`` is 0 and the lift null.
"""

from __future__ import annotations

import polars as pl

#: Per-request counters (``window.tables.SIGNAL_COUNTS``) that make the traffic mix compared: reasoning
#: elicited, coerced, rubric grading, logprob harvesting, a thinking budget. Tool-heavy agentic turns
#: and a new model are a product's own mix (a coding agent), not a harvest a slice of its users adds.
MIX_SIGNALS = ("cot", "coercion", "rubric", "logprob", "thinking")


def main_client_build(keys: pl.DataFrame, members: pl.DataFrame) -> pl.DataFrame:
    """Per cluster: its members' most held client build (TLS fingerprint + SDK string; ties to the
    smallest key) as ``key``, the members holding it (``_m``) and its holders anywhere (``_n``)."""
    cl = keys.filter(pl.col("family") == "client")
    holders = cl.group_by("key").agg(pl.col("account_id").n_unique().alias("_n"))
    return (
        cl.join(members, on="account_id", how="inner")
        .group_by("cluster_id", "key")
        .agg(pl.col("account_id").n_unique().alias("_m"))
        .join(holders, on="key", how="inner")
        .sort("cluster_id", "_m", "key", descending=[False, True, False])
        .group_by("cluster_id", maintain_order=True)
        .agg(pl.col("key", "_m", "_n").first())
    )


def build_holders(keys: pl.DataFrame, main: pl.DataFrame) -> pl.DataFrame:
    """(account, key) of every holder of a build in ``main`` (``main_client_build``'s rows)."""
    return (
        keys.filter(pl.col("family") == "client")
        .select("account_id", "key")
        .unique()
        .join(main.select("key").unique(), on="key", how="semi")
    )


def client_population(
    keys: pl.DataFrame, members: pl.DataFrame, buckets: pl.DataFrame, main: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Per cluster: accounts outside it holding its members' most held client build
    (``client_outside_holders``), and how far the cluster's share of requests carrying each
    ``MIX_SIGNALS`` counter exceeds that of those outside holders over ``buckets`` (the 24 h window),
    the largest such gap (``extraction_lift_over_client``; null when the outside holders sent nothing).

    Cost is linear in the holders of the builds and the members: only those holders' buckets are
    summed, each build's totals once, and a cluster's outside is its build's totals less its own
    holders' (a popular SDK held by thousands is not paired with every cluster that holds it).
    ``main``: ``main_client_build(keys, members)`` when the caller has it already.
    """
    counted = ("requests", *MIX_SIGNALS)
    main = main_client_build(keys, members) if main is None else main
    held = build_holders(keys, main)
    per_account = (
        buckets.join(held.select("account_id").unique(), on="account_id", how="semi")
        .group_by("account_id")
        .agg(pl.col(c).sum().cast(pl.Float64) for c in counted)
    )
    sums = [pl.col(c).sum() for c in counted]
    totals = held.join(per_account, on="account_id", how="left").group_by("key").agg(sums)
    inside = (
        held.join(members, on="account_id", how="inner")
        .join(main.select("cluster_id", "key"), on=["cluster_id", "key"], how="semi")
        .join(per_account, on="account_id", how="left")
        .group_by("cluster_id")
        .agg(sums)
    )
    both = main.join(inside, on="cluster_id", how="left").join(totals, on="key", how="left", suffix="_all")
    out = {c: pl.col(f"{c}_all") - pl.col(c) for c in counted}
    lift = pl.max_horizontal([pl.col(c) / pl.col("requests") - out[c] / out["requests"] for c in MIX_SIGNALS])
    return both.select(
        "cluster_id",
        (pl.col("_n") - pl.col("_m")).cast(pl.Int64).alias("client_outside_holders"),
        pl.when(out["requests"] > 0).then(lift).alias("extraction_lift_over_client"),
    )
