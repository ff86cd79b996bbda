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


def client_population(keys: pl.DataFrame, members: pl.DataFrame, buckets: pl.DataFrame) -> pl.DataFrame:
    """Per cluster: accounts outside it holding its members' most held client build
    (``client_outside_holders``), and how far the cluster's share of requests carrying each
    ``MIX_SIGNALS`` counter exceeds that of those outside holders over ``buckets`` (the 24 h window),
    the largest such gap (``extraction_lift_over_client``; null when the outside holders sent nothing).

    Cost is linear in the holders of the builds and the members: each build's totals are summed once,
    and a cluster's outside is its build's totals less its own holders' (a popular SDK held by
    thousands is not paired with every cluster that holds it).
    """
    counted = ("requests", *MIX_SIGNALS)
    cl = keys.filter(pl.col("family") == "client").select("account_id", "key").unique()
    mine = cl.join(members, on="account_id", how="inner")
    main = (
        mine.group_by("cluster_id", "key")
        .agg(pl.col("account_id").n_unique().alias("_m"))
        .sort("cluster_id", "_m", "key", descending=[False, True, False])
        .group_by("cluster_id", maintain_order=True)
        .agg(pl.col("key").first())
    )
    per_account = buckets.group_by("account_id").agg(pl.col(c).sum().cast(pl.Float64) for c in counted)
    totals = (
        cl.join(main.select("key").unique(), on="key", how="semi")
        .join(per_account, on="account_id", how="left")
        .group_by("key")
        .agg(pl.len().alias("_n"), *[pl.col(c).sum() for c in counted])
    )
    inside = (
        mine.join(main, on=["cluster_id", "key"], how="semi")
        .join(per_account, on="account_id", how="left")
        .group_by("cluster_id")
        .agg(pl.len().alias("_m"), *[pl.col(c).sum() for c in counted])
    )
    both = main.join(inside, on="cluster_id", how="left").join(totals, on="key", how="left", suffix="_all")
    out = {c: pl.col(f"{c}_all") - pl.col(c) for c in counted}
    lift = pl.max_horizontal([pl.col(c) / pl.col("requests") - out[c] / out["requests"] for c in MIX_SIGNALS])
    return both.select(
        "cluster_id",
        (pl.col("_n") - pl.col("_m")).cast(pl.Int64).alias("client_outside_holders"),
        pl.when(out["requests"] > 0).then(lift).alias("extraction_lift_over_client"),
    )
