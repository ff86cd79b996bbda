"""Agentic campaigns (issue 17, round 8): a farm harvesting agentic transcripts and padding its seats with
ordinary chat (the blend knob) still harvests every transcript; the share of tool-heavy requests falls,
the turns per seat do not. The features below are the ones the engine computed on development draws
(scale 1.85): the first tick at which each campaign's cluster held five members."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_evidence import ROUTER_GROUP, _frame, _verdict

from detector.app import build_engine
from detector.contracts import SEVERITY_RANK
from detector.detect.evidence import add_axes
from detector.engine import Engine
from detector.settings import EvidenceSettings

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
    assert sev == "medium"
    assert "cluster_coordinated_harvest" in reasons
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
