"""Cross-account linkage: shared keys -> composite evidence -> connected components (clusters).

Two accounts are linked when they share keys in two independent signal families at once (e.g. the
same TLS+SDK client fingerprint *and* the same template skeleton), or one key of a strong family (a
payment instrument). Keys used by a large share of all accounts (a popular SDK, a big NAT) are common
and link nobody. So a university behind one NAT, or a company's forty accounts on one card, form at
most a cluster with one or two families and ordinary behaviour: the rules, not the linkage, decide
whether a cluster is accused.

Scale: only keys shared by at least two accounts take part, so cost grows with the linked population,
not the whole one; a component is found with scipy's sparse connected components (no pairwise edges:
each composite group links its members in a star).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from detector.contracts import LINK_FAMILIES
from detector.schema import UTC_US, make_schema
from detector.settings import LinkSettings
from detector.window.cohorts import cohort_accounts, cohort_groups, cohort_links

FAMILIES = LINK_FAMILIES
#: Keys a partner's indicators give (``detector intel import``): evidence on a cluster, never a link
#: (a key derived from a value would otherwise corroborate that same value's link by itself).
INTEL_FAMILY = "shared_intel"
LINK_SCHEMA = make_schema(
    {
        "cluster_id": pl.String,
        "link": pl.String,
        "accounts": pl.Int64,
        "weight": pl.Float64,
        "last_seen": UTC_US,
    }
)


@dataclass(frozen=True)
class Clusters:
    """Cluster membership and per-cluster linkage evidence."""

    members: pl.DataFrame  # account_id, cluster_id
    evidence: pl.DataFrame  # cluster_id, link_families, shares_<family>..., shared_<family> (key counts)
    #: One row per link (a composite key, or one strong-family key) that holds the cluster together:
    #: cluster_id, link ("client+template", "payment"), accounts, weight (share of each key's holders
    #: holding both), last_seen (latest time a member used the two keys together). Links expire with
    #: their keys (the link window).
    links: pl.DataFrame
    #: Sub-accounts of a reseller tenant (account_id, reseller): their tenant's org and card are the
    #: tenant's, not theirs (``window.features`` counts each as its own customer).
    subaccounts: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema={"account_id": pl.String, "reseller": pl.String})
    )


def reseller_orgs(keys: pl.DataFrame, accounts: pl.DataFrame) -> pl.DataFrame:
    """(account_id, reseller, org_id) of the accounts of ``keys`` under a reseller key: the least, for
    an account under two, in any row order (a tenant's sub-accounts are read so)."""
    return (
        keys.filter(pl.col("family") == "reseller")
        .group_by("account_id")
        .agg(pl.col("key").min().alias("reseller"))
        .join(accounts.select("account_id", "org_id"), on="account_id", how="inner")
    )


def tenant_subaccounts(keys: pl.DataFrame, accounts: pl.DataFrame, min_share: float) -> pl.DataFrame:
    """Sub-accounts of reseller tenants: (account_id, reseller).

    A reseller is a tenant (a router) when at least ``min_share`` of the accounts holding its reseller
    key sit under one org, the tenant's own; its sub-accounts are the accounts under that org. A
    reseller whose customers each keep their own org (a hydra's shell reseller, a reseller that
    provisions customers' own orgs and cards) has no tenant and is unchanged.
    """
    if "org_id" not in accounts.columns:
        return _empty().subaccounts
    res = reseller_orgs(keys, accounts)
    size = res.group_by("reseller").agg(pl.len().alias("n"))
    tenants = (
        res.group_by("reseller", "org_id")
        .agg(pl.len().alias("k"))
        .join(size, on="reseller")
        .filter((pl.col("n") >= 2) & (pl.col("k") >= min_share * pl.col("n")))
        .select("reseller", "org_id")
    )
    return res.join(tenants, on=["reseller", "org_id"], how="inner").select("account_id", "reseller")


def _drop_tenant_keys(keys: pl.DataFrame, sub: pl.DataFrame, cfg: LinkSettings) -> pl.DataFrame:
    """Keys a tenant sets for all its sub-accounts (its reseller id, card, egress, client build) are its
    infrastructure, not evidence that its sub-accounts are one actor: a key of a tenant family most of
    whose holders are one tenant's sub-accounts links none of them (they link by what they share beyond
    the tenant: a private system prompt, a template, a sign-up burst). The tenant's reseller id is kept:
    a key held mostly by some of its sub-accounts nests in it (``build_clusters``), and it never counts
    as a shared family of theirs."""
    if sub.height == 0:
        return keys
    holders = keys.group_by("family", "key").agg(pl.len().alias("n"))
    k_sub = keys.filter(pl.col("family").is_in(list(cfg.tenant_families))).join(sub, on="account_id")
    infra = (
        k_sub.group_by("reseller", "family", "key")
        .agg(pl.len().alias("m"))
        .join(holders, on=["family", "key"])
        .filter(pl.col("m") >= cfg.min_overlap * pl.col("n"))
        .select("reseller", "family", "key")
    )
    drop = k_sub.join(infra, on=["reseller", "family", "key"]).select("account_id", "family", "key")
    # the tenant's reseller id stays, as the parent a private key nests in (``build_clusters``)
    drop = drop.join(
        sub.select("account_id", pl.col("reseller").alias("key")), on=["account_id", "key"], how="anti"
    )
    return keys.join(drop, on=["account_id", "family", "key"], how="anti")


def cluster_id_for(account_id: str) -> str:
    """Stable cluster id: named after the cluster's earliest-seen member."""
    return "cl-" + hashlib.blake2b(account_id.encode(), digest_size=6).hexdigest()


def _empty() -> Clusters:
    ev_schema: dict[str, pl.DataType] = {"cluster_id": pl.String(), "link_families": pl.Int64()}
    ev_schema |= {f"shares_{f}": pl.Boolean() for f in FAMILIES}
    ev_schema |= {f"shared_keys_{f}": pl.Int64() for f in FAMILIES}
    ev_schema |= {f"shares_{INTEL_FAMILY}": pl.Boolean(), f"shared_keys_{INTEL_FAMILY}": pl.Int64()}
    ev_schema["signup_cohort_accounts"] = pl.Int64()
    return Clusters(
        pl.DataFrame(schema={"account_id": pl.String, "cluster_id": pl.String}),
        pl.DataFrame(schema=ev_schema),
        pl.DataFrame(schema=LINK_SCHEMA),
    )


def build_clusters(keys: pl.DataFrame, accounts: pl.DataFrame, cfg: LinkSettings) -> Clusters:
    """Clusters over the live linkage keys.

    ``keys``: (account_id, family, key, last_seen, uses), already limited to the link window.
    ``accounts``: (account_id, first_seen, ...) for stable ids.
    """
    total = max(accounts.height, 1)
    intel = keys.filter(pl.col("family") == INTEL_FAMILY).select("account_id", "key")
    keys = keys.filter(pl.col("family") != INTEL_FAMILY)
    sub = tenant_subaccounts(keys, accounts, cfg.min_overlap)
    keys = _drop_tenant_keys(keys, sub, cfg)
    fam_code = {f: i for i, f in enumerate(FAMILIES)}
    # keys are unique per (account, family, key), so a key's holders are its rows
    per_key = keys.group_by("family", "key").agg(pl.len().alias("n"))
    # a tenant's reseller id: the sub-account relation a tenant's private keys nest in, whatever its size
    tenant = (pl.col("family") == "reseller") & pl.col("key").is_in(
        sub.get_column("reseller").unique().implode()
    )
    useful = (
        per_key.with_columns(tenant.alias("tenant"))
        .filter(
            (pl.col("n") >= 2)
            & (
                ~((pl.col("n") > cfg.common_min_accounts) & (pl.col("n") / total > cfg.common_share))
                | pl.col("tenant")
            )
        )
        .select("family", "key", "n", "tenant")
        .sort("family", "key")
        .with_row_index("kid")
    )
    k = keys.join(useful, on=["family", "key"], how="inner")
    if k.height == 0:
        return replace(_empty(), subaccounts=sub)
    # accounts become dense integers (their position in id order) so the self-join and graph are cheap
    names = k.get_column("account_id").unique().sort()
    ids = pl.DataFrame({"account_id": names, "a": np.arange(names.len(), dtype=np.int64)})
    k = k.join(ids, on="account_id", how="left").select(
        "a",
        pl.col("family").replace_strict(fam_code, return_dtype=pl.UInt8).alias("fam"),
        pl.col("kid").cast(pl.UInt64),
        "uses",
        "last_seen",
    )
    k = _top_keys(k, cfg.keys_per_family)

    # a group is one composite key (two families' keys held together) or one strong-family key;
    # integer ids keep the self-join cheap: kid_a * 2^32 + kid_b names a pair
    pairs = (
        k.join(k, on="a", suffix="_b")
        .filter(pl.col("fam") < pl.col("fam_b"))
        .select(
            "a",
            "fam",
            "fam_b",
            "kid",
            "kid_b",
            (pl.col("kid") * (1 << 32) + pl.col("kid_b")).alias("group"),
            pl.min_horizontal("last_seen", "last_seen_b").alias("held"),
        )
    )
    strong_codes = [fam_code[f] for f in cfg.strong_families]
    nest_codes = [fam_code[f] for f in cfg.nest_families]
    tenant_nest_codes = [fam_code[f] for f in cfg.tenant_nested_families]
    public_nest_codes = [fam_code[f] for f in cfg.public_nest_families]
    strong = k.filter(pl.col("fam").is_in(strong_codes)).select(
        "a",
        "fam",
        pl.col("fam").alias("fam_b"),
        "kid",
        pl.col("kid").alias("kid_b"),
        (pl.col("kid") * (1 << 32) + pl.col("kid")).alias("group"),
        pl.col("last_seen").alias("held"),
    )
    holders = useful.select(pl.col("kid").cast(pl.UInt64), "n", "tenant")
    # the family of a pair's bigger key: the one a nested pair sits inside
    bigger_fam = pl.when(pl.col("n") >= pl.col("n_b")).then(pl.col("fam")).otherwise(pl.col("fam_b"))
    held_by = pl.concat([pairs, strong])
    # count a group's holders first and gather members only for the few groups that link
    grouped = (
        held_by.group_by("group")
        .agg(
            pl.len().alias("m"),
            pl.col("a").min().alias("a"),
            pl.col("held").max().alias("last_seen"),
            pl.col("fam").first(),
            pl.col("fam_b").first(),
            pl.col("kid").first(),
            pl.col("kid_b").first(),
        )
        .join(holders, on="kid")
        .join(holders.rename({"kid": "kid_b", "n": "n_b", "tenant": "tenant_b"}), on="kid_b")
        # a composite key links only when the accounts holding both keys are most of the holders of
        # each: a hydra holds its client build *and* its template skeleton together; two households
        # on one residential /24 who both once sent a popular prompt are a sliver of that prompt's
        # holders, and a popular browser plus a popular prompt is a coincidence
        # -- unless the bigger key is rare in the whole population, names a commercial or software
        # relationship (a reseller, a card, a client build, a system prompt: not a popular prompt or
        # a neighbourhood), and the smaller one nests inside it (a proxy network's exit prefix)
        .filter(
            (pl.col("m") >= 2)
            & (
                (pl.col("m") >= cfg.min_overlap * pl.max_horizontal("n", "n_b"))
                | (
                    (pl.col("m") >= cfg.min_overlap * pl.min_horizontal("n", "n_b"))
                    & (
                        (pl.max_horizontal("n", "n_b") <= cfg.nested_max_share * total)
                        # a tenant's private group: most holders of a private system prompt are some
                        # of its sub-accounts (not a template or a sign-up window: popular prompts and
                        # coincidences among its many customers)
                        | (
                            pl.when(pl.col("n") >= pl.col("n_b")).then("tenant").otherwise("tenant_b")
                            & pl.when(pl.col("n") >= pl.col("n_b"))
                            .then(pl.col("fam_b"))
                            .otherwise(pl.col("fam"))
                            .is_in(tenant_nest_codes)
                        )
                    )
                    & bigger_fam.is_in(nest_codes)
                    # a pair nested in a key that strangers hold (curl) is a coincidence, not a group:
                    # a thin bridge that joined two honest clusters into one "farm" (round 10)
                    & ((pl.col("m") >= cfg.nested_min_accounts) | ~bigger_fam.is_in(public_nest_codes))
                )
            )
            # two keys that name no relationship (an address prefix, a prompt skeleton, a sign-up half
            # hour) link a group, not a pair of strangers: a phone on a carrier's /24 that also sent a
            # coding tool's popular opener joined a hackathon to the tool's users (round 15, draw 216)
            & (
                (pl.col("m") >= cfg.nested_min_accounts)
                | pl.col("fam").is_in(nest_codes)
                | pl.col("fam_b").is_in(nest_codes)
            )
        )
        # the link's weight: the share of each key's holders that hold both (1.0: the same accounts)
        .with_columns(
            (pl.col("m") / pl.max_horizontal("n", "n_b")).alias("weight"),
            pl.concat_str(
                pl.col("fam").replace_strict(dict(enumerate(FAMILIES)), return_dtype=pl.String),
                pl.when(pl.col("fam") != pl.col("fam_b"))
                .then(
                    pl.lit("+")
                    + pl.col("fam_b").replace_strict(dict(enumerate(FAMILIES)), return_dtype=pl.String)
                )
                .otherwise(pl.lit("")),
            ).alias("link"),
            pl.col("a").alias("first"),
            (pl.col("tenant") | pl.col("tenant_b")).alias("in_tenant"),
        )
        .drop("kid", "kid_b", "n", "n_b", "a", "tenant", "tenant_b")
    )
    # a client build most of whose holders opened their accounts together links them (round 9)
    cohort = cohort_groups(k, ids, accounts, holders, fam_code, cfg)
    if cohort.height:
        held_by = pl.concat([held_by, cohort.select(held_by.columns)], how="vertical_relaxed")
        grouped = pl.concat([grouped, cohort_links(cohort, holders).cast(grouped.schema)])
    if grouped.height == 0:
        return replace(_empty(), subaccounts=sub)

    # each linking group joins its members in a star around its first member (lowest id)
    e = held_by.select("group", "a").join(grouped.select("group", "first"), on="group", how="inner")
    n = names.len()
    graph = coo_matrix(
        (np.ones(e.height, dtype=np.int8), (e["first"].to_numpy(), e["a"].to_numpy())), shape=(n, n)
    )
    _, labels = connected_components(graph, directed=False)
    linked = np.unique(e["a"].to_numpy())
    comp = pl.DataFrame(
        {"account_id": names.gather(linked), "a": linked, "comp": labels[linked].astype(np.int64)}
    )

    firsts = comp.join(accounts.select("account_id", "first_seen"), on="account_id", how="left")
    reps = (
        firsts.sort(["comp", "first_seen", "account_id"], nulls_last=True)
        .group_by("comp", maintain_order=True)
        .agg(pl.col("account_id").first().alias("rep"))
    )
    reps = reps.with_columns(
        pl.col("rep").map_elements(cluster_id_for, return_dtype=pl.String).alias("cluster_id")
    )
    index = comp.join(reps, on="comp").select("a", "account_id", "cluster_id")
    members = index.select("account_id", "cluster_id").sort("cluster_id", "account_id")

    # one row per group: its families (one for a strong key, two for a composite) and its cluster
    fam_hits = (
        grouped.select(pl.col("first").alias("a"), "group", "fam", "fam_b", "in_tenant")
        .join(index, on="a")
        .select("cluster_id", "group", "in_tenant", pl.concat_list("fam", "fam_b").list.unique().alias("fam"))
        .explode("fam")
        # the tenant's reseller id is its infrastructure: never a family its sub-accounts share
        .filter(~(pl.col("in_tenant") & (pl.col("fam") == fam_code["reseller"])))
        .with_columns(
            pl.col("fam").replace_strict(dict(enumerate(FAMILIES)), return_dtype=pl.String).alias("family")
        )
        .group_by("cluster_id", "family")
        .agg(pl.col("group").n_unique().alias("groups"))
    )
    wide = fam_hits.pivot(on="family", index="cluster_id", values="groups")
    ev = reps.select("cluster_id")
    ev = ev.join(wide, on="cluster_id", how="left")
    ev = ev.with_columns(
        [
            (pl.col(f).fill_null(0) if f in ev.columns else pl.lit(0))
            .cast(pl.Int64)
            .alias(f"shared_keys_{f}")
            for f in FAMILIES
        ]
    ).with_columns([(pl.col(f"shared_keys_{f}") > 0).alias(f"shares_{f}") for f in FAMILIES])
    ev = ev.with_columns(
        pl.sum_horizontal([pl.col(f"shares_{f}").cast(pl.Int64) for f in FAMILIES]).alias("link_families")
    )
    # partner indicators held by the cluster's members (distinct indicators)
    held = (
        intel.join(members, on="account_id", how="inner")
        .group_by("cluster_id")
        .agg(pl.col("key").n_unique().cast(pl.Int64).alias(f"shared_keys_{INTEL_FAMILY}"))
    )
    ev = (
        ev.join(held, on="cluster_id", how="left")
        .with_columns(pl.col(f"shared_keys_{INTEL_FAMILY}").fill_null(0))
        .with_columns((pl.col(f"shared_keys_{INTEL_FAMILY}") > 0).alias(f"shares_{INTEL_FAMILY}"))
        .join(cohort_accounts(grouped, index), on="cluster_id", how="left")
        .with_columns(pl.col("signup_cohort_accounts").fill_null(0))
        .select(_empty().evidence.columns)
    )
    links = (
        grouped.select(
            pl.col("first").alias("a"),
            "link",
            pl.col("m").cast(pl.Int64).alias("accounts"),
            "weight",
            "last_seen",
        )
        .join(index, on="a")
        # ties (two cards of 25 accounts each) ordered by recency, then by first holder: deterministic
        .sort(
            ["cluster_id", "accounts", "weight", "link", "last_seen", "a"],
            descending=[False, True, True, False, True, False],
        )
        .select(LINK_SCHEMA.keys())
    )
    return Clusters(members, ev.sort("cluster_id"), links, sub)


def _top_keys(k: pl.DataFrame, top: int) -> pl.DataFrame:
    """Each account's ``top`` most-used keys per family (ties: lowest key id); most hold fewer."""
    over = pl.len().over("a", "fam") > top
    few = k.filter(~over)
    many = (
        k.filter(over)
        .sort(["a", "fam", "uses", "kid"], descending=[False, False, True, False])
        .group_by("a", "fam", maintain_order=True)
        .head(top)
    )
    return pl.concat([few, many]).drop("uses")
