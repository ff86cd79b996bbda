"""Agentic campaigns (issue 17, round 8): a farm harvesting agentic transcripts and padding its seats with
ordinary chat (the blend knob) still harvests every transcript; the share of tool-heavy requests falls,
the turns per seat do not. The features below are the ones the engine computed on development draws
(scale 1.85): the first tick at which each campaign's cluster held five members."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from test_evidence import CODERS_FIRST_HOUR, ROUTER_GROUP, _frame, _verdict

from detector.app import build_engine
from detector.contracts import SEVERITY_RANK
from detector.detect.evidence import add_axes
from detector.engine import Engine
from detector.evidence_settings import EvidenceSettings
from detector.lab.simulate import SimParams
from detector.lab.simulate.params import CODER_CARD_TEAM_MAX, with_lookalikes
from detector.lab.simulate.personas import agentic_coder
from detector.lab.simulate.prompts import PromptBank
from detector.lab.simulate.world import World
from detector.window.cards import cross_org_cards

ROOT = Path(__file__).resolve().parents[1]

#: Draw 111, 14:00: aged sub-accounts of the router (its org, card, egress and build on all of them),
#: one sign-up burst, a private system prompt; 60-90% of their requests ordinary chat, so tool-heavy
#: turns are 29% of the traffic (below the 0.4 "dominate" bar) but 11.4 per seat in the day so far.
BLENDED_ROUTER_FARM: dict[str, Any] = {
    "accounts": 5,
    "active_accounts_24h": 5,
    "orgs": 5,
    "payers": 5,
    "payer_share": 1.0,
    "tenant_share": 1.0,
    "verified_share": 0.0,
    "new_account_share": 0.0,
    "median_account_age_days": 301.2,
    "requests_24h": 198,
    "requests_per_account_24h": 39.6,
    "code_share_24h": 0.32,
    "thinking_share_24h": 0.27,
    "max_tokens_high_share_24h": 0.38,
    "tools_heavy_share_24h": 0.288,
    "long_session_share_24h": 0.24,
    "active_hours_24h": 6,
    "synchrony_24h": 0.2,
    "link_families": 2,
    "shares_sysprompt": True,
    "shares_signup": True,
    "signup_burst_share": 1.0,
    "rare_artefact_families": 1,
    "client_key_inside_share": 0.034,
    "client_outside_holders": 141,
    "extraction_lift_over_client": 0.21,
}

#: Draw 320, 17:00: aged accounts outside the router, two cards across their orgs, their own client build
#: and system prompt, one sign-up burst; 37% tool-heavy, 12.8 turns per seat.
BLENDED_FARM: dict[str, Any] = {
    "accounts": 6,
    "active_accounts_24h": 6,
    "orgs": 6,
    "payers": 2,
    "payer_share": 0.333,
    "verified_share": 0.667,
    "median_account_age_days": 303.6,
    "requests_24h": 209,
    "requests_per_account_24h": 34.8,
    "code_share_24h": 0.41,
    "thinking_share_24h": 0.29,
    "max_tokens_high_share_24h": 0.47,
    "tools_heavy_share_24h": 0.368,
    "long_session_share_24h": 0.35,
    "new_model_share_24h": 0.07,
    "active_hours_24h": 5,
    "synchrony_24h": 0.167,
    "link_families": 4,
    "shares_payment": True,
    "cross_org_card_member_share": 1.0,
    "shares_client": True,
    "shares_sysprompt": True,
    "shares_signup": True,
    "signup_burst_share": 0.5,
    "rare_artefact_families": 2,
    "network_keys_per_account": 1.5,
    "top_network_key_share": 0.167,
    "second_network_key_share": 0.167,
    "client_key_inside_share": 1.0,
}


@pytest.fixture(scope="module")
def engine() -> Engine:
    return build_engine(ROOT / "rules")


def _axes(target: str, **features: Any) -> dict[str, Any]:
    return add_axes(_frame(target, **features), target, EvidenceSettings()).row(0, named=True)


def test_a_blended_agentic_farm_inside_the_router_is_accused(engine: Engine) -> None:
    """Tool-heavy turns at a session's worth per seat are agentic transcripts whatever the seats also
    send: no customer's team on the router explains them (``tenant_explains`` is false), and the
    sharing (a private system prompt, one sign-up batch) with that extraction is the harvest rule's."""
    axes = _axes("cluster", **BLENDED_ROUTER_FARM)
    assert axes["extraction_signals"] == 1
    assert not axes["tenant_explains"]
    sev, reasons = _verdict(engine, "cluster", **BLENDED_ROUTER_FARM)
    assert "cluster_coordinated_harvest" in reasons
    # the rules accuse at medium; a cluster model scoring the farm in its high band beside the rule's
    # hit raises it to high (cluster_gb-v3 did, and v4 does)
    assert sev == "medium" or (sev == "high" and any(r.startswith("model:cluster_gb") for r in reasons))
    assert (
        _verdict(build_engine(ROOT / "rules", models=False), "cluster", **BLENDED_ROUTER_FARM)[0] == "medium"
    )
    assert "agentic transcripts" in reasons["evidence:extraction"]


def test_a_blended_agentic_farm_outside_the_router_is_accused(engine: Engine) -> None:
    sev, reasons = _verdict(engine, "cluster", **BLENDED_FARM)
    assert SEVERITY_RANK[sev] >= SEVERITY_RANK["medium"]
    assert "cluster_coordinated_harvest" in reasons


def test_a_few_tool_turns_per_member_are_no_agentic_transcripts(engine: Engine) -> None:
    """An agent tutorial's worked examples (1-8 per participant) or an app's occasional function call
    are not a harvest: the same cluster with four tool-heavy turns per seat has no extraction signal and
    a router group with them stays one that a customer's team explains."""
    light = {"requests_per_account_24h": 14.0, "tools_heavy_share_24h": 0.288}
    assert _axes("cluster", **(BLENDED_ROUTER_FARM | light))["extraction_signals"] == 0
    sev, _ = _verdict(engine, "cluster", **(BLENDED_ROUTER_FARM | light))
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"]
    sev, _ = _verdict(engine, "cluster", **(ROUTER_GROUP | {"tools_heavy_share_24h": 0.1}))
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"]


def test_the_account_axis_still_reads_the_share() -> None:
    """One account has no seats to count per: 30 tool-heavy turns among 100 requests stay below the
    account axis's bar (a developer using an agent besides chat), as before."""
    axes = _axes("account", requests_24h=100, tools_heavy_share_24h=0.3)
    assert axes["extraction_signals"] == 0


def test_the_volume_bar_is_a_setting() -> None:
    """The bar lives in ``EvidenceSettings`` (``DETECTOR_EVIDENCE__AGENTIC_TURNS_PER_ACCOUNT``)."""
    strict = EvidenceSettings(agentic_turns_per_account=20.0)
    frame = _frame("cluster", **BLENDED_ROUTER_FARM)
    assert add_axes(frame, "cluster", strict)["extraction_signals"].to_list() == [0]
    assert add_axes(frame, "cluster", EvidenceSettings())["extraction_signals"].to_list() == [1]
    assert build_engine().settings.evidence.agentic_turns_per_account == 10.0


def test_a_popular_tools_users_include_a_startups_engineers_on_the_company_card() -> None:
    """With the look-alikes on, 3-8 of the coding agent's users are one startup's engineers: personal
    accounts (each its own org) paid with one company card; off by default (no random draw)."""
    params = with_lookalikes(SimParams(), 1.0)
    w = World(5, params, PromptBank.load(None), 1.0, 1.0)
    agentic_coder(w, params.agentic_coder)
    coders = [a for a in w.accounts if a.persona == "agentic_coder"]
    card, k = Counter(a.payment for a in coders).most_common(1)[0]
    assert 3 <= k <= CODER_CARD_TEAM_MAX
    assert len({a.org_id for a in coders if a.payment == card}) == k, "each on a personal org"
    assert SimParams().agentic_coder.card_team_max == 0
    w = World(5, SimParams(), PromptBank.load(None), 1.0, 1.0)
    agentic_coder(w, SimParams().agentic_coder)
    assert Counter(a.payment for a in w.accounts).most_common(1)[0][1] == 1


def test_cross_org_cards_counts_the_members_on_a_card_of_several_orgs() -> None:
    members = pl.DataFrame({"account_id": list("abcdef"), "cluster_id": ["x"] * 4 + ["y"] * 2})
    accounts = pl.DataFrame({"account_id": list("abcdef"), "org_id": ["o1", "o2", "o3", "o4", "o5", "o5"]})
    keys = pl.DataFrame(
        {"account_id": list("abcdef"), "family": ["payment"] * 6, "key": ["k1", "k1", "k2", "k3", "k4", "k4"]}
    )
    none = pl.DataFrame(schema={"account_id": pl.String})
    got = dict(cross_org_cards(keys, members, accounts, none).sort("cluster_id").iter_rows())
    # x: a and b pay with one card across two orgs; y: one org's two accounts on its own card
    assert got == {"x": 0.5, "y": 0.0}
    # a tenant's sub-accounts pay through the tenant's card: never a card of theirs across orgs
    sub = pl.DataFrame({"account_id": ["a", "b"]})
    assert dict(cross_org_cards(keys, members, accounts, sub).sort("cluster_id").iter_rows())["x"] == 0.0


def test_a_startups_engineers_among_a_tools_users_are_no_provisioning(engine: Engine) -> None:
    """The coding agent's 148 users, three of them a startup's engineers on the company card: one card
    across three of 148 orgs is not a farm's cards, so established verified customers of many orgs stay
    below medium (on main the card made all 148 bulk-provisioned and put them at high). A farm whose
    members pay with a card per ten accounts is still bulk-provisioned, and high with extraction."""
    users = CODERS_FIRST_HOUR | {
        "accounts": 148,
        "active_accounts_24h": 148,
        "orgs": 148,
        "payers": 146,
        "payer_share": 146 / 148,
        "shares_payment": True,
        "cross_org_card_member_share": 3 / 148,
        "signup_burst_share": 2 / 148,
        "link_families": 5,
    }
    sev, reasons = _verdict(engine, "cluster", **users)
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"], reasons
    farm = users | {"payers": 15, "payer_share": 15 / 148, "cross_org_card_member_share": 1.0}
    sev, reasons = _verdict(engine, "cluster", **farm)
    assert sev == "high"
    assert "cards across orgs" in reasons["evidence:coordination"]


def test_one_card_across_many_orgs_is_not_one_customer(engine: Engine) -> None:
    """A cluster whose members all pay with one card across their six orgs (a farm's card per ten
    accounts, the slice of it on one card) is not one customer explaining its sharing: that card is the
    cards-across-orgs signal. One card under one org still is one customer."""
    one_card = BLENDED_FARM | {"payers": 1, "payer_share": 1 / 6}
    axes = _axes("cluster", **one_card)
    assert not axes["one_customer_explains"]
    assert axes["bulk_provisioned"]
    sev, _ = _verdict(engine, "cluster", **one_card)
    assert SEVERITY_RANK[sev] >= SEVERITY_RANK["medium"]
    assert _axes("cluster", **(one_card | {"orgs": 1}))["one_customer_explains"]
