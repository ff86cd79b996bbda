"""Payment instruments shared across a cluster's orgs, per member (issue 17, round 8).

"Payment signals that linked seemingly independent accounts" (PRODUCT.md) are a farm's when its members
pay with cards that pay for other orgs too: a card per ten accounts puts every member on one. A few of a
popular tool's users on one company card (a startup's engineers, each on a personal account) are a few
per cent of the tool's cluster: one shared card among hundreds of members is no provisioning of them all.
"""

from __future__ import annotations

import polars as pl


def cross_org_cards(
    keys: pl.DataFrame, members: pl.DataFrame, accounts: pl.DataFrame, sub: pl.DataFrame
) -> pl.DataFrame:
    """Per cluster: ``cross_org_card_member_share``, the share of its members paying with an instrument
    that also pays for another of its orgs. A reseller tenant's sub-accounts (``sub``) pay through the
    tenant's card, which is the tenant's, not theirs: they never count."""
    size = members.group_by("cluster_id").agg(pl.len().alias("_members"))
    pay = (
        keys.filter(pl.col("family") == "payment")
        .join(members, on="account_id", how="inner")
        .filter(~pl.col("account_id").is_in(sub.get_column("account_id").implode()))
        .join(accounts.select("account_id", "org_id"), on="account_id", how="left")
    )
    across = (
        pay.group_by("cluster_id", "key")
        .agg(pl.col("org_id").n_unique().alias("_orgs"), pl.col("account_id").unique().alias("_holders"))
        .filter(pl.col("_orgs") >= 2)
        .explode("_holders")
        .group_by("cluster_id")
        .agg(pl.col("_holders").n_unique().alias("_on_shared"))
    )
    return size.join(across, on="cluster_id", how="left").select(
        "cluster_id",
        (pl.col("_on_shared").fill_null(0) / pl.col("_members")).alias("cross_org_card_member_share"),
    )
