"""Account and cluster features: sums over window buckets, turned into named shares and rates.

Names end in their window (``cot_share_24h``); ``ACCOUNT_FEATURES``, ``CLUSTER_FEATURES`` give dtypes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from detector.window.axes import CLUSTER_AXIS_FEATURES
from detector.window.cards import cross_org_cards
from detector.window.dilution import harvest_excess, typical_mix
from detector.window.members import is_subaccount, new_account_share, signup_iqr_hours
from detector.window.population import client_population, main_client_build
from detector.window.samples import SAMPLE_FEATURES
from detector.window.sheets import SHEET_FEATURES
from detector.window.state import GAP_SUM, GAP_SUMSQ, SIGNAL_COUNTS, WindowState

_SHARES = list(SIGNAL_COUNTS)


def _window_sums(buckets: pl.DataFrame, since: datetime, until: datetime, by: str) -> pl.DataFrame:
    sum_cols = [c for c in buckets.columns if c not in ("account_id", "bucket", by)]
    return (
        buckets.filter((pl.col("bucket") >= since) & (pl.col("bucket") < until))
        .group_by(by)
        .agg(
            *[pl.col(c).sum() for c in sum_cols],
            pl.col("bucket").dt.hour().n_unique().alias("active_hours"),
        )
    )


def _ratios(suffix: str) -> list[pl.Expr]:
    req = pl.col("requests").cast(pl.Float64)
    # exact integer sums (microseconds), turned into floats only here: the same in any summation order
    mean_gap = pl.col(GAP_SUM).cast(pl.Float64) / pl.col("gap_n")
    var_gap = (pl.col(GAP_SUMSQ).cast(pl.Float64) / pl.col("gap_n") - mean_gap**2).clip(lower_bound=0)
    out = [pl.col("requests").cast(pl.Int64).alias(f"requests_{suffix}")]
    out += [(pl.col(c) / req).alias(f"{c}_share_{suffix}") for c in _SHARES]
    out += [
        pl.col("output_tokens").cast(pl.Int64).alias(f"output_tokens_{suffix}"),
        (pl.col("output_tokens") / (pl.col("input_tokens") + 1)).alias(f"out_in_ratio_{suffix}"),
        pl.col("active_hours").cast(pl.Int64).alias(f"active_hours_{suffix}"),
        pl.when(pl.col("gap_n") >= 5).then(var_gap.sqrt() / mean_gap).alias(f"interarrival_cv_{suffix}"),
    ]
    return out


def _template_stats(per: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """``per``: requests per (by..., template_fp) -> top template share and distinct templates."""
    return per.group_by(by).agg(
        (pl.col("requests").max() / pl.col("requests").sum()).alias("template_top_share_24h"),
        pl.col("template_fp").n_unique().cast(pl.Int64).alias("templates_24h"),
    )


#: Link families that are artefacts of one operator's software (not a neighbourhood, a card or a
#: reseller): a private system prompt, a template skeleton, a client build + TLS fingerprint. A linked
#: key is rare across the population by construction (common keys link nobody: ``window.link``).
ARTEFACT_FAMILIES = ("sysprompt", "template", "client")


def _payers(keys: pl.DataFrame, members: pl.DataFrame, sub: pl.DataFrame) -> pl.DataFrame:
    """Per cluster: members with a payment instrument on record (``_paid``), distinct instruments, and
    distinct network keys (hosted addresses, or residential prefixes) per member. A reseller tenant's
    sub-account (``sub``) pays through the tenant's card: it counts as its own payer."""
    k = keys.filter(pl.col("family").is_in(["payment", "ip"])).join(members, on="account_id", how="inner")
    pay = pl.col("family") == "payment"
    tenant = pl.col("account_id").is_in(sub.get_column("account_id").implode())
    k = k.with_columns(pl.when(pay & tenant).then(pl.col("account_id")).otherwise(pl.col("key")).alias("key"))
    return k.group_by("cluster_id").agg(
        pl.col("account_id").filter(pay).n_unique().cast(pl.Int64).alias("_paid"),
        pl.col("key").filter(pay).n_unique().cast(pl.Int64).alias("_instruments"),
        (
            pl.col("key").filter(~pay).n_unique()
            / pl.col("account_id").filter(~pay).n_unique().clip(lower_bound=1)
        ).alias("network_keys_per_account"),
    )


def venues(keys: pl.DataFrame, members: pl.DataFrame, sub: pl.DataFrame) -> pl.DataFrame:
    """Per cluster: the shares of its members (those with a network key) behind its most and its
    second most held residential, campus or office prefix, and that most held prefix (``venue_key``;
    ties to the smallest key). A hosted address (IP intelligence's datacenter, VPN or proxy flag) is
    keyed by the full address, not a prefix, and is no venue; a reseller tenant's sub-accounts send
    from the tenant's egress, not from a room. The room test on the account axis (``detect/room.py``)
    reads it with template holders as the clusters."""
    ip = keys.filter(pl.col("family") == "ip").join(members, on="account_id", how="inner")
    ip = ip.filter(~pl.col("account_id").is_in(sub.get_column("account_id").implode()))
    seen = ip.group_by("cluster_id").agg(pl.col("account_id").n_unique().alias("_with_ip"))
    held = (
        ip.filter(pl.col("key").str.contains("/", literal=True))  # a prefix: not a hosted address
        .group_by("cluster_id", "key")
        .agg(pl.col("account_id").n_unique().alias("_h"))
        .sort("cluster_id", "_h", "key", descending=[False, True, False])
        .group_by("cluster_id", maintain_order=True)
        .agg(pl.col("key").first().alias("venue_key"), pl.col("_h").head(2).alias("_top"))
    )
    share = [pl.col("_top").list.get(i, null_on_oob=True).fill_null(0) / pl.col("_with_ip") for i in (0, 1)]
    return seen.join(held, on="cluster_id", how="left").select(
        "cluster_id",
        share[0].alias("top_network_key_share"),
        share[1].alias("second_network_key_share"),
        "venue_key",
    )


def client_inside(
    keys: pl.DataFrame, members: pl.DataFrame, main: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Per cluster: of the accounts anywhere holding its members' most held client build (TLS fingerprint
    + SDK string), the share that are its members. An operator's own build is held by its farm alone
    (1.0); a popular SDK that a cohort's laptops happen to share is held by many others (a few per cent).
    """
    main = main_client_build(keys, members) if main is None else main
    return main.select("cluster_id", (pl.col("_m") / pl.col("_n")).alias("client_key_inside_share"))


def _signup_bursts(keys: pl.DataFrame, members: pl.DataFrame) -> pl.DataFrame:
    """Per cluster: the largest share of its members opened within one sign-up window (their shared
    ``signup`` key). A farm opened in bulk puts a large share of its accounts in one window; among a
    hundred accounts opened over years, two pairs landing in the same half hour are a coincidence."""
    k = keys.filter(pl.col("family") == "signup").join(members, on="account_id", how="inner")
    return (
        k.group_by("cluster_id", "key")
        .agg(pl.col("account_id").n_unique().alias("_n"))
        .group_by("cluster_id")
        .agg(pl.col("_n").max().alias("_top_signup"))
    )


def _in_window(start: pl.Expr, end: pl.Expr) -> pl.Expr:
    return (pl.col("bucket") >= start) & (pl.col("bucket") < end)


def account_features(
    state: WindowState, points: pl.DataFrame, short: timedelta, long: timedelta
) -> pl.DataFrame:
    """Window features for every evaluation point (account_id, tick_end) at once.

    A point's windows are the buckets in [tick_end - window, tick_end): the same numbers whether the
    engine closes one tick or a hundred in one call. Columns: account_id, tick_end, every account
    feature, and ``first_bucket`` (start of the earliest bucket in the long window: the first evidence).
    """
    if points.height == 0:
        return points.select("account_id", "tick_end")
    accts = points["account_id"].unique()
    first = points["tick_end"].min()
    assert isinstance(first, datetime)
    since = first - long
    end = pl.col("tick_end")
    b = state.bucket_rows(accts, since)
    j = points.join(b, on="account_id", how="inner").filter(_in_window(end - long, end))
    sum_cols = [c for c in b.columns if c not in ("account_id", "bucket")]
    in_short = pl.col("bucket") >= end - short
    sums = j.group_by("account_id", "tick_end").agg(
        *[pl.col(c).sum() for c in sum_cols],
        pl.col("bucket").dt.hour().n_unique().alias("active_hours"),
        pl.col("requests").filter(in_short).sum().alias("_req_short"),
        pl.col("cot").filter(in_short).sum().alias("_cot_short"),
        pl.col("bucket").min().alias("first_bucket"),
    )
    long_f = sums.select(
        "account_id",
        "tick_end",
        *_ratios("24h"),
        pl.col("_req_short").cast(pl.Int64).alias("requests_1h"),
        pl.when(pl.col("_req_short") > 0)
        .then(pl.col("_cot_short") / pl.col("_req_short"))
        .otherwise(0.0)
        .alias("cot_share_1h"),
        "first_bucket",
    )
    t = state.template_rows(accts, since)
    tj = (
        points.join(t, on="account_id", how="inner")
        .filter(_in_window(end - long, end))
        .group_by("account_id", "tick_end", "template_fp")
        .agg(pl.col("requests").sum())
    )
    acc = points.join(state.accounts, on="account_id", how="left").select(
        "account_id",
        "tick_end",
        ((end - pl.col("created_at")).dt.total_seconds() / 86400.0).alias("account_age_days"),
        ((end - pl.col("first_seen")).dt.total_seconds() / 3600.0).alias("observed_hours"),
        pl.col("tier"),
        pl.col("verified").fill_null(False),
    )
    keys = ["account_id", "tick_end"]
    return (
        long_f.join(_template_stats(tj, keys), on=keys, how="left")
        .join(acc, on=keys, how="left")
        .sort("tick_end", "account_id")
    )


def cluster_features(
    state: WindowState,
    members: pl.DataFrame,
    evidence: pl.DataFrame,
    accounts: pl.DataFrame,
    now: datetime,
    long: timedelta,
    subaccounts: pl.DataFrame | None = None,
    *,
    keys: pl.DataFrame,
) -> pl.DataFrame:
    """One row per cluster: member counts, linkage strength and pooled behaviour over [now - long, now).

    ``members``: (account_id, cluster_id); ``evidence``: one row per cluster with linkage columns;
    ``accounts``: the account table as of ``now``; ``keys``: the linkage keys as they stood at ``now``
    (``window.asof``: never the state's table, which may already hold later ticks); ``subaccounts``:
    reseller tenants' sub-accounts (``Clusters.subaccounts``), each counted as its own org and payer (a
    router is many customers).
    """
    sub = subaccounts if subaccounts is not None else pl.DataFrame(schema={"account_id": pl.String})
    is_sub = is_subaccount(sub)
    since = now - long
    accts = members.get_column("account_id").unique()
    # every account's buckets of the window, read once per pass for the members, their builds' holders
    # (``client_population`` keeps only those) and the typical mix; readers sum integer counts
    window = state.bucket_rows(None, since, now)
    b = window.join(members, on="account_id", how="inner")
    # each cluster's main client build, once per pass (``client_inside``, ``client_population``)
    main = main_client_build(keys, members)
    active = b.group_by("cluster_id").agg(
        pl.col("account_id").n_unique().cast(pl.Int64).alias("active_accounts_24h")
    )
    # timing synchrony: members active in the same 15-minute buckets (a scheduler driving many accounts)
    # versus people who each keep their own hours; 1.0 = every active member in every active bucket
    together = (
        b.group_by("cluster_id", "bucket")
        .agg(pl.col("account_id").n_unique().alias("_k"))
        .group_by("cluster_id")
        .agg(pl.col("_k").mean().alias("_mean_k"))
    )
    pooled = _window_sums(b.drop("account_id"), since, now, "cluster_id")
    pooled = pooled.select("cluster_id", *_ratios("24h"))
    t = (
        state.template_rows(accts, since, now)
        .join(members, on="account_id", how="inner")
        .group_by("cluster_id", "template_fp")
        .agg(pl.col("requests").sum())
    )
    acc = accounts.join(members, on="account_id", how="inner")
    size = acc.group_by("cluster_id").agg(
        pl.len().cast(pl.Int64).alias("accounts"),
        ((pl.col("created_at").max() - pl.col("created_at").min()).dt.total_seconds() / 3600.0).alias(
            "signup_spread_hours"
        ),
        signup_iqr_hours().alias("signup_iqr_hours"),
        new_account_share(now).alias("new_account_share"),
        pl.when(is_sub)
        .then(pl.col("account_id"))
        .otherwise(pl.col("org_id"))
        .n_unique()
        .cast(pl.Int64)
        .alias("orgs"),
        # a tenant's sub-account carries the tenant's verification, not its own: no trust for a group
        (pl.col("verified").fill_null(False) & ~is_sub).mean().alias("verified_share"),
        is_sub.mean().alias("tenant_share"),
        (pl.col("tier") == "enterprise").fill_null(False).mean().alias("enterprise_share"),
        ((pl.lit(now) - pl.col("created_at")).dt.total_seconds() / 86400.0)
        .median()
        .alias("median_account_age_days"),
    )
    return (
        size.join(pooled, on="cluster_id", how="left")
        .join(_template_stats(t, ["cluster_id"]), on="cluster_id", how="left")
        .join(active, on="cluster_id", how="left")
        .join(together, on="cluster_id", how="left")
        .join(evidence, on="cluster_id", how="left")
        .join(_payers(keys, members, sub), on="cluster_id", how="left")
        .join(cross_org_cards(keys, members, accounts, sub), on="cluster_id", how="left")
        .join(_signup_bursts(keys, members), on="cluster_id", how="left")
        .join(venues(keys, members, sub).drop("venue_key"), on="cluster_id", how="left")
        .join(client_inside(keys, members, main), on="cluster_id", how="left")
        .join(client_population(keys, members, window, main), on="cluster_id", how="left")
        .with_columns(
            (pl.col("requests_24h") / pl.col("active_accounts_24h")).alias("requests_per_account_24h"),
            (pl.col("_mean_k") / pl.col("active_accounts_24h")).alias("synchrony_24h"),
            # accounts paying with no instrument on record count as paying on their own
            (pl.col("accounts") - pl.col("_paid").fill_null(0) + pl.col("_instruments").fill_null(0)).alias(
                "payers"
            ),
            pl.sum_horizontal(
                [
                    pl.col(c).fill_null(False).cast(pl.Int64)
                    for f in ARTEFACT_FAMILIES
                    if (c := f"shares_{f}") in evidence.columns
                ]
                or [pl.lit(0, pl.Int64)]
            ).alias("rare_artefact_families"),
        )
        .with_columns(
            (pl.col("payers") / pl.col("accounts")).alias("payer_share"),
            (pl.col("_top_signup").fill_null(0) / pl.col("accounts")).alias("signup_burst_share"),
            # a blend divides the shares, not the harvest: its excess over the typical account's mix (every
            # account's window, read once per linkage pass)
            *harvest_excess(typical_mix(window)),
        )
        .drop("_mean_k", "_paid", "_instruments", "_top_signup")
        .sort("cluster_id")
    )


_WINDOW_FEATURES: dict[str, pl.DataType] = {
    "requests_24h": pl.Int64(),
    **{f"{c}_share_24h": pl.Float64() for c in _SHARES},
    "output_tokens_24h": pl.Int64(),
    "out_in_ratio_24h": pl.Float64(),
    "active_hours_24h": pl.Int64(),
    "interarrival_cv_24h": pl.Float64(),
    "template_top_share_24h": pl.Float64(),
    "templates_24h": pl.Int64(),
}

#: Every account feature and its dtype (rules are checked against this).
ACCOUNT_FEATURES: dict[str, pl.DataType] = {
    **_WINDOW_FEATURES,
    "requests_1h": pl.Int64(),
    "cot_share_1h": pl.Float64(),
    "account_age_days": pl.Float64(),
    "observed_hours": pl.Float64(),
    "tier": pl.String(),
    "verified": pl.Boolean(),
    **SHEET_FEATURES,
    **{
        # evidence axes: added by detector/detect/evidence.py before rules run
        "extraction_signals": pl.Int64(),
        "trusted_customer": pl.Boolean(),
        "volume_outside_tier": pl.Boolean(),
    },
}

#: Every cluster feature and its dtype.
CLUSTER_FEATURES: dict[str, pl.DataType] = {
    **_WINDOW_FEATURES,
    "accounts": pl.Int64(),
    "active_accounts_24h": pl.Int64(),
    "requests_per_account_24h": pl.Float64(),
    "synchrony_24h": pl.Float64(),
    "signup_spread_hours": pl.Float64(),
    #: the middle half of the members' sign-ups, first to third quartile (a churn seat moves it little)
    "signup_iqr_hours": pl.Float64(),
    "new_account_share": pl.Float64(),
    "orgs": pl.Int64(),
    "payers": pl.Int64(),
    "payer_share": pl.Float64(),
    #: members paying with a card that pays for another of the cluster's orgs too (``window.cards``)
    "cross_org_card_member_share": pl.Float64(),
    "signup_burst_share": pl.Float64(),
    "verified_share": pl.Float64(),
    #: members that are sub-accounts of a reseller tenant (a router): its org, card, egress are theirs
    "tenant_share": pl.Float64(),
    "enterprise_share": pl.Float64(),
    "median_account_age_days": pl.Float64(),
    "rare_artefact_families": pl.Int64(),
    "network_keys_per_account": pl.Float64(),
    "top_network_key_share": pl.Float64(),
    "second_network_key_share": pl.Float64(),
    "client_key_inside_share": pl.Float64(),
    #: the cluster against its client build's other holders (``window.population``)
    "client_outside_holders": pl.Int64(),
    "extraction_lift_over_client": pl.Float64(),
    #: harvest beyond the typical account's mix, which a blend of ordinary traffic cannot dilute
    #: (``window.dilution``)
    "harvest_excess_share_24h": pl.Float64(),
    "harvest_excess_requests_24h": pl.Float64(),
    "harvest_beyond_tool_excess_share_24h": pl.Float64(),
    "link_families": pl.Int64(),
    "shares_payment": pl.Boolean(),
    "shares_reseller": pl.Boolean(),
    "shares_ip": pl.Boolean(),
    "shares_client": pl.Boolean(),
    "shares_sysprompt": pl.Boolean(),
    "shares_template": pl.Boolean(),
    "shares_signup": pl.Boolean(),
    #: the largest sign-up cohort in the cluster: holders of one client build, most of its holders,
    #: opened within ``link.signup_cohort`` (``window.cohorts``; 0: none)
    "signup_cohort_accounts": pl.Int64(),
    #: a partner provider's indicator (``detector intel import``) names values these accounts share
    "shares_shared_intel": pl.Boolean(),
    **SAMPLE_FEATURES,
    **CLUSTER_AXIS_FEATURES,  # evidence axes: added by detector/detect/evidence.py before rules run
}

#: Feature catalogues by rule target.
CATALOGUES: dict[str, dict[str, pl.DataType]] = {"account": ACCOUNT_FEATURES, "cluster": CLUSTER_FEATURES}
