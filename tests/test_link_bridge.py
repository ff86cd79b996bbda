"""A thin bridge: two of a public tool's holders who share a casual template join no clusters (round 10).

A hackathon (behind its campus prefix, on its tutorial's system prompt) and a company's accounts on one
card each form their own cluster. One participant and one employee both use curl (held by a hundred
strangers) and both once sent a template four accounts hold: a composite key nested in the client
build, two accounts strong. Before round 10 it joined the two groups into one 'farm' that neither
explanation (one venue, one payer) covered.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from detector.settings import LinkSettings
from detector.window.link import build_clusters
from detector.window.state import ACCOUNT_SCHEMA, KEY_SCHEMA

T0 = datetime(2026, 2, 10, tzinfo=UTC)


def _keys(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame([(a, f, k, T0, 1) for a, f, k in rows], schema=KEY_SCHEMA, orient="row")


def _accounts(names: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        [(a, T0, T0, None, None, None, None) for a in names], schema=ACCOUNT_SCHEMA, orient="row"
    )


CURL = "t13d3112h2|curl/8.5.0"


def _world(nested: int = 1) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for i in range(10):
        rows += [(f"hk{i}", "ip", "128.32.186.0/24"), (f"hk{i}", "sysprompt", "sp_tutorial")]
        rows += [(f"cc{i}", "payment", "pf_company")]
    # curl: a public tool, a hundred holders who are strangers (3.3% of all accounts: 'rare' by share)
    rows += [(f"bg{i}", "client", CURL) for i in range(98)]
    rows += [(f"bg{i}", "client", f"tls{i}") for i in range(98, 3000)]
    # the bridge: `nested` of each group on curl and a casual template four to ten accounts hold
    members = [f"hk{i}" for i in range(nested)] + [f"cc{i}" for i in range(nested)]
    rows += [(a, "client", CURL) for a in members] + [(a, "template", "t_casual") for a in members]
    rows += [(f"bg{i}", "template", "t_casual") for i in range(98, 98 + max(2, nested))]
    return rows


def _clusters(rows: list[tuple[str, str, str]], cfg: LinkSettings) -> dict[str, str]:
    cl = build_clusters(_keys(rows), _accounts(sorted({r[0] for r in rows})), cfg)
    return dict(cl.members.select("account_id", "cluster_id").iter_rows())


def test_a_pair_nested_in_a_public_client_build_bridges_nothing() -> None:
    rows = _world(nested=1)
    # the old rule (any nested pair links): one cluster of both groups
    merged = _clusters(rows, LinkSettings(nested_min_accounts=2))
    assert merged["hk0"] == merged["cc0"] == merged["hk5"] == merged["cc5"]
    got = _clusters(rows, LinkSettings())
    assert got["hk0"] == got["hk9"] and got["cc0"] == got["cc9"], "each group still links on its own"
    assert got["hk0"] != got["cc0"], "two groups joined by a pair on curl and a casual template"
    assert "bg0" not in got


def test_a_group_nested_in_a_public_client_build_still_links() -> None:
    """Five of each side on curl and one template (of ten holders): a group, not a coincidence."""
    got = _clusters(_world(nested=5), LinkSettings())
    assert got["hk0"] == got["cc0"]


def test_a_farms_private_build_links_a_pair() -> None:
    """A farm's own build and template, held by its accounts only: most holders of each key."""
    rows = [(a, f, k) for a in ("f0", "f1") for f, k in (("client", "tls_own|sdk"), ("template", "t_own"))]
    rows += [(f"bg{i}", "client", f"tls{i}") for i in range(3000)]
    got = _clusters(rows, LinkSettings())
    assert got["f0"] == got["f1"]


def test_a_pair_nested_in_a_card_still_links() -> None:
    """Cards are a relationship, not public software: the nesting rule there is unchanged."""
    rows = [(f"c{i}", "payment", "pf1") for i in range(20)] + [("c0", "ip", "p1"), ("c1", "ip", "p1")]
    rows += [("x0", "ip", "p1"), ("x1", "ip", "p1")]
    rows += [(f"bg{i}", "client", f"tls{i}") for i in range(3000)]
    cl = build_clusters(_keys(rows), _accounts(sorted({r[0] for r in rows})), LinkSettings())
    assert "payment+ip" in cl.links["link"].to_list()


def _tool_and_hackathon(pair: int) -> list[tuple[str, str, str]]:
    """Draw 216's shape (round 15): a coding tool's users (its build and system prompt) and a hackathon
    (its venue prefix and tutorial prompt); ``pair`` of each side share a phone carrier's /24 and one of
    the tool's popular openers, which one more user also sent."""
    rows: list[tuple[str, str, str]] = []
    for i in range(10):
        rows += [(f"cd{i}", "client", "tls_tool|tool-ts/0.33"), (f"cd{i}", "sysprompt", "sp_tool")]
        rows += [(f"hk{i}", "ip", "128.32.138.0/24"), (f"hk{i}", "sysprompt", "sp_tutorial")]
    members = [f"cd{i}" for i in range(pair)] + [f"hk{i}" for i in range(pair)]
    rows += [(a, "ip", "107.77.94.0/24") for a in members] + [(a, "template", "t_opener") for a in members]
    rows += [("cd9", "template", "t_opener")]
    rows += [(f"bg{i}", "client", f"tls{i}") for i in range(3000)]
    return rows


def test_a_pair_on_one_prefix_with_one_prompt_bridges_nothing() -> None:
    """A prefix and a prompt skeleton name no relationship: two strangers holding both are no group."""
    got = _clusters(_tool_and_hackathon(pair=1), LinkSettings())
    assert got["cd0"] == got["cd8"] and got["hk0"] == got["hk8"], "each group still links on its own"
    assert got["cd0"] != got["hk0"], "a coding tool's users and a hackathon joined by one pair"


def test_a_group_on_one_prefix_with_one_prompt_still_links() -> None:
    """Five of each side behind one /24 sending one template: a group (a proxy exit), not a coincidence."""
    got = _clusters(_tool_and_hackathon(pair=5), LinkSettings())
    assert got["cd0"] == got["hk0"]
