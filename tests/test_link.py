"""Linkage: two families or a strong one link; common keys and single weak families do not."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from detector.settings import LinkSettings
from detector.window.link import build_clusters, cluster_id_for
from detector.window.state import ACCOUNT_SCHEMA, KEY_SCHEMA

T0 = datetime(2026, 2, 10, tzinfo=UTC)


def _keys(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame([(a, f, k, T0, 1) for a, f, k in rows], schema=KEY_SCHEMA, orient="row")


def _accounts(names: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        [(a, T0.replace(minute=i % 60), T0, None, None, None, None) for i, a in enumerate(names)],
        schema=ACCOUNT_SCHEMA,
        orient="row",
    )


def _background(n: int) -> list[tuple[str, str, str]]:
    return [(f"bg{i}", "client", f"tls{i}") for i in range(n)]


def test_one_shared_nat_address_links_nobody() -> None:
    rows = [(f"stu{i}", "ip", "198.51.100.7") for i in range(30)] + _background(300)
    acc = _accounts([r[0] for r in rows])
    cl = build_clusters(_keys(rows), acc, LinkSettings())
    assert cl.members.height == 0


def test_two_families_link_and_evidence_names_them() -> None:
    rows = []
    for i in range(8):
        rows += [(f"h{i}", "client", "tlsX|sdk1"), (f"h{i}", "template", "123")]
    rows += _background(300)
    cl = build_clusters(_keys(rows), _accounts([r[0] for r in rows]), LinkSettings())
    assert sorted(cl.members["account_id"].to_list()) == [f"h{i}" for i in range(8)]
    ev = cl.evidence.row(0, named=True)
    assert ev["link_families"] == 2 and ev["shares_client"] and ev["shares_template"]
    assert not ev["shares_payment"]
    # the link that holds them: its type, how many hold it, its weight and when it was last held
    assert cl.links.select("link", "accounts", "weight", "last_seen").rows() == [
        ("client+template", 8, 1.0, T0)
    ]


def test_link_weight_is_the_share_of_holders_holding_both() -> None:
    """Six of ten card holders also share a template held by only those six: weight 0.6."""
    rows = [(f"c{i}", "payment", "pf1") for i in range(10)]
    rows += [(f"c{i}", "template", "77") for i in range(6)]
    rows += _background(300)
    cl = build_clusters(_keys(rows), _accounts([r[0] for r in rows]), LinkSettings())
    links = dict(zip(cl.links["link"], cl.links["weight"], strict=True))
    assert links == {"payment": 1.0, "payment+template": 0.6}


def test_payment_links_alone_and_chains_components() -> None:
    rows = [
        ("a", "payment", "pf1"),
        ("b", "payment", "pf1"),
        ("b", "payment", "pf2"),
        ("c", "payment", "pf2"),
    ]
    rows += _background(10)
    cl = build_clusters(_keys(rows), _accounts([r[0] for r in rows]), LinkSettings())
    assert set(cl.members["account_id"]) == {"a", "b", "c"}
    assert cl.members["cluster_id"].n_unique() == 1


def test_common_key_is_ignored() -> None:
    # 60% of 400 accounts share one SDK fingerprint and a popular template: that links nobody.
    rows = [(f"u{i}", "client", "python-sdk") for i in range(240)]
    rows += [(f"u{i}", "template", "popular") for i in range(240)]
    rows += _background(160)
    cl = build_clusters(_keys(rows), _accounts([r[0] for r in rows]), LinkSettings())
    assert cl.members.height == 0


def test_cluster_id_is_stable_and_follows_earliest_member() -> None:
    rows = []
    for i in range(5):
        rows += [(f"h{i}", "client", "c"), (f"h{i}", "reseller", "r")]
    acc = _accounts([f"h{i}" for i in range(5)])
    first = build_clusters(_keys(rows), acc, LinkSettings())
    again = build_clusters(_keys(list(reversed(rows))), acc, LinkSettings())
    assert first.members.equals(again.members)
    assert first.members["cluster_id"][0] == cluster_id_for("h0")


def test_twenty_thousand_account_cluster() -> None:
    """A 20,000-account proxy network among 400,000 other accounts: one reseller, 37 cards, 200 prefixes."""
    n = 20_000
    rows = []
    for i in range(n):
        rows += [
            (f"h{i}", "reseller", "rs1"),
            (f"h{i}", "payment", f"pf{i % 37}"),
            (f"h{i}", "ip", f"10.0.{i % 200}.0/24"),
        ]
    rows += _background(400_000)
    acc = _accounts([f"h{i}" for i in range(n)] + [f"bg{i}" for i in range(400_000)])
    cl = build_clusters(_keys(rows), acc, LinkSettings())
    assert cl.members.height == n
    assert cl.members["cluster_id"].n_unique() == 1


def test_popular_prompt_and_a_shared_prefix_do_not_link_neighbours() -> None:
    """Two households on one /24 who both sent a prompt that a fifth of all accounts send: no link."""
    rows = [(f"c{i}", "template", "popular") for i in range(200)]
    rows += [("c0", "ip", "73.15.233.0/24"), ("c1", "ip", "73.15.233.0/24")]
    rows += _background(800)
    acc = _accounts([f"c{i}" for i in range(200)] + [f"bg{i}" for i in range(800)])
    cl = build_clusters(_keys(rows), acc, LinkSettings())
    assert cl.members.height == 0


def test_neighbours_sharing_a_moderately_common_prompt_do_not_nest() -> None:
    """A /24 held by two accounts inside a template held by 100 of 3,000 (3%): a prompt is no reseller."""
    rows = [(f"t{i}", "template", "tpl") for i in range(100)]
    rows += [("t0", "ip", "24.6.92.0/24"), ("t1", "ip", "24.6.92.0/24")]
    rows += _background(2900)
    acc = _accounts([f"t{i}" for i in range(100)] + [f"bg{i}" for i in range(2900)])
    assert build_clusters(_keys(rows), acc, LinkSettings()).members.height == 0
    # the same shape with a reseller instead of a template is a proxy network's exit prefix: it links
    rows = [(f"t{i}", "reseller", "rs1") for i in range(100)]
    rows += [("t0", "ip", "24.6.92.0/24"), ("t1", "ip", "24.6.92.0/24")]
    rows += _background(2900)
    members = build_clusters(_keys(rows), acc, LinkSettings()).members
    assert sorted(members["account_id"].to_list()) == ["t0", "t1"]


def _with_orgs(names: list[str], org: dict[str, str]) -> pl.DataFrame:
    return _accounts(names).with_columns(
        pl.col("account_id").replace_strict(org, default=None).alias("org_id")
    )


def _router(customers: int, campaign: int) -> list[tuple[str, str, str]]:
    """A router's sub-accounts: its reseller id, card, egress and client build on every one; the
    campaign's members also share a private system prompt and a template."""
    rows = []
    for i in range(customers + campaign):
        a = f"rc{i}" if i < customers else f"x{i}"
        rows += [(a, "reseller", "rs1"), (a, "payment", "pfR"), (a, "ip", f"10.0.0.{i % 4}")]
        rows += [(a, "client", "relay|1.8")]
        if i >= customers:
            rows += [(a, "sysprompt", "spX"), (a, "template", "99")]
    return rows


def test_a_routers_infrastructure_links_none_of_its_sub_accounts() -> None:
    """Sub-accounts under one reseller tenant's org link only by what they share beyond the router: the
    campaign's private artefacts; the router's honest customers stay unlinked; each is a sub-account."""
    rows = _router(40, 6) + _background(300)
    names = list(dict.fromkeys(r[0] for r in rows))
    acc = _with_orgs(names, {a: "orgR" for a in names if not a.startswith("bg")})
    cl = build_clusters(_keys(rows), acc, LinkSettings())
    assert sorted(cl.members["account_id"].to_list()) == sorted(f"x{i}" for i in range(40, 46))
    ev = cl.evidence.row(0, named=True)
    assert not ev["shares_payment"] and not ev["shares_reseller"] and not ev["shares_client"]
    assert ev["shares_sysprompt"] and ev["shares_template"]
    assert cl.subaccounts.height == 46


def test_a_reseller_whose_customers_keep_their_own_orgs_is_no_tenant() -> None:
    """A hydra's shell reseller (each account its own org) keeps its card linking its accounts."""
    rows = _router(0, 6) + _background(300)
    names = list(dict.fromkeys(r[0] for r in rows))
    acc = _with_orgs(names, {a: f"org-{a}" for a in names if not a.startswith("bg")})
    cl = build_clusters(_keys(rows), acc, LinkSettings())
    assert cl.subaccounts.height == 0
    ev = cl.evidence.row(0, named=True)
    assert ev["shares_payment"] and ev["shares_reseller"] and ev["shares_client"]


def test_a_private_system_prompt_alone_links_a_group_inside_a_tenant() -> None:
    """Round 7 (issue 17): a group of a router's sub-accounts that holds a private system prompt the
    router's other customers do not hold is linked through the tenant, even with nothing else in common
    (sign-ups spread, no template), however big the router (here over 5% of all accounts); the router's
    reseller id is its infrastructure, never a shared family of the group."""
    rows = [r for r in _router(200, 8) if r[1] != "template"] + _background(300)
    names = list(dict.fromkeys(r[0] for r in rows))
    acc = _with_orgs(names, {a: "orgR" for a in names if not a.startswith("bg")})
    cl = build_clusters(_keys(rows), acc, LinkSettings())
    assert sorted(cl.members["account_id"].to_list()) == sorted(f"x{i}" for i in range(200, 208))
    ev = cl.evidence.row(0, named=True)
    assert ev["shares_sysprompt"] and not ev["shares_reseller"] and not ev["shares_payment"]
    assert ev["link_families"] == 1


def test_a_template_or_sign_up_window_alone_links_no_router_customers() -> None:
    """Among a router's many customers a popular template or a shared sign-up window is a coincidence:
    neither links sub-accounts through the tenant on its own."""
    rows = _router(60, 0)
    rows += [(f"rc{i}", "template", "tpl-popular") for i in range(5)]
    rows += [(f"rc{i}", "signup", "w-0900") for i in range(10, 14)]
    rows += _background(300)
    names = list(dict.fromkeys(r[0] for r in rows))
    acc = _with_orgs(names, {a: "orgR" for a in names if not a.startswith("bg")})
    cl = build_clusters(_keys(rows), acc, LinkSettings())
    assert cl.members.height == 0
