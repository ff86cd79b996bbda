"""The evidence model's verdict table, through the shipped rules, models and fusion.

Each case is one subject's features (the window features as the engine computes them); the engine adds
the evidence axes and fuses rules, models and trust exactly as it does on live traffic.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from detector.alert.verdict import combine
from detector.app import build_engine
from detector.contracts import SEVERITY_RANK
from detector.detect.evidence import add_axes
from detector.detect.provenance import farm_accounts, no_customer_explains
from detector.detect.rules.compiler import compile_condition
from detector.engine import Engine
from detector.evidence_settings import EvidenceSettings
from detector.window.features import CATALOGUES

ROOT = Path(__file__).resolve().parents[1]
_AXES = {
    "extraction_signals",
    "coordination_signals",
    "one_customer_explains",
    "colocated",
    "tenant_explains",
    "bulk_provisioned",
    "trusted_customer",
    "volume_outside_tier",
    "no_customer_explains",
    "farm_accounts",
}


@pytest.fixture(scope="module")
def engine() -> Engine:
    return build_engine(ROOT / "rules")


def _frame(target: str, **features: Any) -> pl.DataFrame:
    """One subject with every catalogue feature: neutral values unless given."""
    key = "account_id" if target == "account" else "cluster_id"
    row: dict[str, Any] = {key: "s1"}
    for name, dtype in CATALOGUES[target].items():
        if name in _AXES:
            continue
        if dtype == pl.Boolean():
            row[name] = False
        elif dtype == pl.String():
            row[name] = "standard"
        else:
            row[name] = 0
        if name in features:
            row[name] = features[name]
    schema = {key: pl.String(), **{k: v for k, v in CATALOGUES[target].items() if k not in _AXES}}
    return pl.DataFrame([row], schema=schema)


def _verdict(engine: Engine, target: str, **features: Any) -> tuple[str, dict[str, str]]:
    """(severity or 'none', reason name -> detail) for one subject."""
    key = "account_id" if target == "account" else "cluster_id"
    frame = add_axes(_frame(target, **features), target, engine.settings.evidence)
    hits = engine._evaluate(frame, target, key)
    if hits.height == 0:
        return "none", {}
    row = combine(hits, key).row(0, named=True)
    sev = {v: k for k, v in SEVERITY_RANK.items()}[row["_rank"]]
    return sev, {r["rule_id"]: r["detail"] or "" for r in row["reasons"]}


#: A farm as the issue found it: 300 fresh accounts, each its own card, org and residential address,
#: human hours, linked only by a private system prompt, one template and a sign-up burst.
FARM: dict[str, Any] = {
    "accounts": 300,
    "active_accounts_24h": 280,
    "payers": 300,
    "payer_share": 1.0,
    "orgs": 300,
    "new_account_share": 1.0,
    "median_account_age_days": 3.0,
    "requests_24h": 4200,
    "requests_per_account_24h": 15.0,
    "active_hours_24h": 14,
    "synchrony_24h": 0.05,
    "template_top_share_24h": 0.6,
    "shares_sysprompt": True,
    "shares_template": True,
    "shares_signup": True,
    "signup_burst_share": 0.4,
    "rare_artefact_families": 2,
    "network_keys_per_account": 1.4,
    "link_families": 3,
}


def test_farm_on_coordination_alone_is_medium_and_says_why(engine: Engine) -> None:
    sev, reasons = _verdict(engine, "cluster", **FARM)
    assert sev == "medium"
    assert "cluster_coordinated_farm" in reasons
    assert "no single customer" in reasons["evidence:coordination"]
    assert reasons["evidence:extraction"].startswith("extraction: 0 signal")
    assert reasons["evidence:trust"].startswith("trust: none")


@pytest.mark.parametrize(
    "extraction",
    [
        {"cot_share_24h": 0.4},
        {"thinking_share_24h": 0.9, "max_tokens_high_share_24h": 0.8},
        {"logprob_share_24h": 0.7},
        {"tools_heavy_share_24h": 0.6},
        {"new_model_share_24h": 0.5},
    ],
    ids=["cot", "parameters-only", "logprobs", "agentic", "pivot"],
)
def test_farm_with_any_extraction_evidence_is_high(engine: Engine, extraction: dict[str, Any]) -> None:
    sev, reasons = _verdict(engine, "cluster", **(FARM | extraction))
    assert sev == "high"
    assert "cluster_coordinated_extraction" in reasons
    assert reasons["evidence:extraction"].startswith("extraction: 1 signal")


def test_one_paying_customer_explains_the_sharing(engine: Engine) -> None:
    """The same sharing under one card (a company's team) is no accusation, even eliciting reasoning."""
    team = FARM | {"accounts": 40, "active_accounts_24h": 40, "payers": 1, "payer_share": 0.025, "orgs": 1}
    sev, _ = _verdict(engine, "cluster", **(team | {"cot_share_24h": 0.5}))
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"]


def test_one_rare_artefact_is_not_coordination(engine: Engine) -> None:
    sev, _ = _verdict(engine, "cluster", **(FARM | {"shares_sysprompt": False, "rare_artefact_families": 1}))
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"]


#: One established, verified customer running chain-of-thought benchmarks from the cloud with big
#: output caps (account_cot_extraction_rig's shape).
EVAL_CUSTOMER: dict[str, Any] = {
    "requests_24h": 900,
    "requests_1h": 150,
    "cot_share_24h": 0.95,
    "cot_share_1h": 0.95,
    "max_tokens_high_share_24h": 0.9,
    "thinking_share_24h": 0.8,
    "hosted_ip_share_24h": 1.0,
    "temp0_share_24h": 1.0,
    "active_hours_24h": 6,
    "account_age_days": 400.0,
    "tier": "research",
    "verified": True,
}


def test_verified_established_customer_with_cot_content_stays_low(engine: Engine) -> None:
    sev, reasons = _verdict(engine, "account", **EVAL_CUSTOMER)
    assert sev == "low"
    assert "capped at low" in reasons["evidence:trust"]
    # the same traffic from a new, unverified account is accused
    sev, _ = _verdict(engine, "account", **(EVAL_CUSTOMER | {"verified": False, "account_age_days": 2.0}))
    assert SEVERITY_RANK[sev] >= SEVERITY_RANK["medium"]


def test_trusted_customer_far_outside_its_tier_keeps_the_verdict(engine: Engine) -> None:
    limit = (
        engine.settings.evidence.tier_daily_requests["research"]
        * engine.settings.evidence.outside_tier_factor
    )
    sev, reasons = _verdict(engine, "account", **(EVAL_CUSTOMER | {"requests_24h": int(limit * 2)}))
    assert SEVERITY_RANK[sev] >= SEVERITY_RANK["medium"]
    assert "far outside its tier" in reasons["evidence:trust"]


def test_evaluation_startup_cluster_is_a_low_lead_at_most(engine: Engine) -> None:
    """A verified org's accounts re-running CoT benchmarks: one org, one card, established."""
    startup = FARM | {
        "accounts": 12,
        "active_accounts_24h": 12,
        "payers": 1,
        "payer_share": 1 / 12,
        "orgs": 1,
        "new_account_share": 0.0,
        "median_account_age_days": 200.0,
        "verified_share": 1.0,
        "cot_share_24h": 0.9,
        "thinking_share_24h": 0.9,
        "max_tokens_high_share_24h": 0.9,
        "active_hours_24h": 20,
        "shares_client": True,
        "shares_payment": True,
        "link_families": 4,
    }
    sev, reasons = _verdict(engine, "cluster", **startup)
    assert SEVERITY_RANK.get(sev, 0) <= SEVERITY_RANK["low"]
    if reasons:
        assert "one paying customer explains" in reasons["evidence:coordination"]


#: A 40-person hackathon cohort: fresh accounts, each its own card and org, behind one venue address
#: (all of them behind one venue prefix; a few also from a phone or from home), sharing a tutorial's
#: system prompt and starter template.
HACKATHON: dict[str, Any] = FARM | {
    "accounts": 40,
    "active_accounts_24h": 40,
    "payers": 40,
    "orgs": 40,
    "shares_ip": True,
    "network_keys_per_account": 0.2,
    "top_network_key_share": 1.0,
    "second_network_key_share": 0.025,
    "link_families": 4,
}


def test_hackathon_cohort_behind_one_nat_is_not_accused(engine: Engine) -> None:
    """Fresh accounts on one venue address sharing a tutorial's system prompt and step-by-step
    template: the room explains the sharing, even with reasoning prompts."""
    cohort = HACKATHON | {"cot_share_24h": 0.31}
    sev, reasons = _verdict(engine, "cluster", **cohort)
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"]
    if reasons:
        assert "co-located" in reasons["evidence:coordination"]


def test_hackathon_cohort_round_the_clock_on_a_step_by_step_tutorial_is_not_accused(engine: Engine) -> None:
    """The same cohort hacking through the night while the tutorial's starter template (which asks for
    steps) still dominates its traffic: the hydra rule's shape (linked, new, CoT, 18+ hours), which
    accused a 40-account cohort at high before the room explained it there too."""
    cohort = HACKATHON | {"cot_share_24h": 0.45, "active_hours_24h": 19}
    sev, _ = _verdict(engine, "cluster", **cohort)
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"]
    # the same shape spread over many addresses is a farm, and is accused
    spread = {"network_keys_per_account": 1.4, "top_network_key_share": 0.05}
    sev, _ = _verdict(engine, "cluster", **(cohort | spread))
    assert sev == "high"


def test_a_popular_tools_users_with_coincidental_sign_up_pairs_are_not_a_farm(engine: Engine) -> None:
    """117 verified developers of many orgs, opened over years, all on one coding agent (its client
    build, its system prompt, its templates) and tool-heavy: two pairs of them opened their accounts in
    the same half hour. Two pairs are a coincidence, not a sign-up burst, and nothing else says farm.
    (Found on a simulator draw: the whole agentic-coder persona was accused at high.)"""
    users = FARM | {
        "accounts": 117,
        "active_accounts_24h": 117,
        "payers": 117,
        "orgs": 117,
        "new_account_share": 0.0085,
        "median_account_age_days": 700.0,
        "verified_share": 1.0,
        "shares_client": True,
        "rare_artefact_families": 3,
        "signup_burst_share": 2 / 117,
        "tools_heavy_share_24h": 1.0,
        "synchrony_24h": 0.08,
    }
    sev, reasons = _verdict(engine, "cluster", **users)
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"], reasons
    # the same accounts opened in one burst (most of them in one half hour) are bulk-provisioned; a
    # minority in one half hour is the tool's launch among established customers (round 11)
    sev, _ = _verdict(engine, "cluster", **(users | {"signup_burst_share": 0.6}))
    assert sev == "high"


#: The cluster the held-out block 1040-1059 put at high (draw 1046; its alert's evidence): the 18 of a
#: coding agent's 148 verified developers active in the replay's first hour (00:00-01:00 UTC), each
#: their own org and card, opened between January 2024 and January 2026, linked by the agent's client
#: build, system prompt and tool-result templates; two of them opened their accounts 11 minutes apart
#: in May 2025. Their traffic is the agent's: tool-heavy, half of it with a thinking budget.
CODERS_FIRST_HOUR: dict[str, Any] = {
    "accounts": 18,
    "active_accounts_24h": 18,
    "payers": 18,
    "payer_share": 1.0,
    "orgs": 18,
    "new_account_share": 0.0,
    "median_account_age_days": 150.0,
    "verified_share": 1.0,
    "requests_24h": 459,
    "requests_per_account_24h": 25.5,
    "active_hours_24h": 1,
    "synchrony_24h": 0.4167,
    "template_top_share_24h": 0.1285,
    "tools_heavy_share_24h": 1.0,
    "thinking_share_24h": 0.52,
    "max_tokens_high_share_24h": 1.0,
    "shares_client": True,
    "shares_sysprompt": True,
    "shares_template": True,
    "shares_signup": True,
    "signup_burst_share": 2 / 18,
    "signup_spread_hours": 17522.5,
    "rare_artefact_families": 3,
    "link_families": 4,
    "client_key_inside_share": 1.0,
    "network_keys_per_account": 1.5,
    "top_network_key_share": 0.06,
}


def test_a_coincidental_pair_in_a_small_cluster_of_a_tools_users_is_not_a_batch(engine: Engine) -> None:
    """Issue 17, round 6: one pair opened in the same half hour is a ninth of an 18-member cluster, over
    the share a batch needs; but a pair is what independent sign-ups give by chance, at any size. The
    tool's artefacts alone (client build, system prompt, templates) on established verified customers
    of 18 orgs are no farm, whatever their agentic traffic."""
    sev, reasons = _verdict(engine, "cluster", **CODERS_FIRST_HOUR)
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"], reasons
    # the same accounts with a batch in their history (most of them opened in one half hour): high
    sev, reasons = _verdict(engine, "cluster", **(CODERS_FIRST_HOUR | {"signup_burst_share": 10 / 18}))
    assert sev == "high", reasons
    assert "sign-up burst" in reasons["evidence:coordination"]
    # three in one half hour are a batch among accounts that are not all established customers (a
    # third of a small farm opened together); among these it is their tool's launch (round 11, below)
    half_verified = CODERS_FIRST_HOUR | {"signup_burst_share": 3 / 18, "verified_share": 0.5}
    sev, _ = _verdict(engine, "cluster", **half_verified)
    assert sev == "high"


#: Held-out draw 1158's shape (issue 17, round 11), at 02:00 of a replay started at midnight: thirty of a
#: coding agent's developers, one time zone's working day, each verified, aged, its own org and card, the
#: build's only holders seen so far (no population to compare with), a trio of them opened in one half
#: hour of the agent's launch and half of them within its launch week (a sign-up cohort).
CODERS_NIGHT = CODERS_FIRST_HOUR | {
    "accounts": 30,
    "active_accounts_24h": 30,
    "payers": 30,
    "orgs": 30,
    "signup_burst_share": 3 / 30,
    "signup_cohort_accounts": 15,
    "client_outside_holders": 0,
}


def test_a_tools_established_users_opened_in_its_launch_are_its_adoption_not_a_batch(engine: Engine) -> None:
    """Issue 17, round 11: among independent established customers (nearly all verified and aged, one
    org and one card each) whose traffic is what the agent does, a batch of a minority of them in one
    half hour (a launch) and a launch week's cohort are the tool's adoption, not bulk provisioning. The
    same cluster fresh, half unverified, sharing cards, harvesting logprobs, with most of it opened in
    one half hour, or (round 12) without the agent's transcripts is still accused."""
    sev, reasons = _verdict(engine, "cluster", **CODERS_NIGHT)
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"], reasons
    for route in (
        {"signup_cohort_accounts": 0},
        {"signup_burst_share": 0.0, "shares_signup": False},
        {"signup_cohort_accounts": 0, "signup_burst_share": 13 / 30},
    ):
        sev, reasons = _verdict(engine, "cluster", **(CODERS_NIGHT | route))
        assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"], reasons
    accused = {
        "half unverified (a farm's bought accounts)": {"verified_share": 0.5},
        "new accounts": {"new_account_share": 0.9, "median_account_age_days": 3.0},
        "a card per ten accounts": {"payers": 3},
        "logprob harvest beyond the tool": {"logprob_share_24h": 0.6},
        "most of them opened in one half hour": {"signup_burst_share": 16 / 30},
        # round 12: verified, aged farms whose plain traffic carried nothing were read as a tool's users
        "no agent transcripts (plain chat, a thinking budget)": {"tools_heavy_share_24h": 0.0},
    }
    for what, change in accused.items():
        sev, reasons = _verdict(engine, "cluster", **(CODERS_NIGHT | change))
        assert SEVERITY_RANK.get(sev, 0) >= SEVERITY_RANK["medium"], (what, reasons)


def test_a_coding_agents_users_moving_to_a_new_model_together_are_not_a_pivoting_farm(engine: Engine) -> None:
    """Day five of a replay: the agent moved its users to the model launched on day three, so a third of
    its 40 verified developers' traffic is on it. The agent's client build and system prompt (two link
    families) are the product's; `cluster_agentic_pivot` put the whole persona at high (no sign-up
    pair needed). A fresh farm with the same traffic is still high."""
    users = CODERS_FIRST_HOUR | {
        "accounts": 40,
        "active_accounts_24h": 40,
        "payers": 40,
        "orgs": 40,
        "active_hours_24h": 24,
        "shares_signup": False,
        "signup_burst_share": 0.0,
        "link_families": 2,
        "new_model_share_24h": 0.3,
    }
    sev, reasons = _verdict(engine, "cluster", **users)
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"], reasons
    sev, reasons = _verdict(engine, "cluster", **(users | {"new_account_share": 1.0}))
    assert sev == "high" and "cluster_agentic_pivot" in reasons, reasons


#: Aged accounts, mostly verified, each its own org and card (bought or parked accounts), created in one
#: sign-up burst (most of them in one half hour) and bound by a private system prompt and a client build.
AGED_FARM: dict[str, Any] = FARM | {
    "signup_burst_share": 0.6,
    "accounts": 20,
    "active_accounts_24h": 20,
    "payers": 20,
    "orgs": 20,
    "new_account_share": 0.0,
    "median_account_age_days": 300.0,
    "verified_share": 0.8,
    "shares_client": True,
    "shares_template": False,
}


def test_many_verified_orgs_created_together_earn_no_cluster_trust(engine: Engine) -> None:
    """Trust is one customer's: twenty verified orgs opening their accounts in the same minutes are not
    one established customer, so the coordination axis decides (high with extraction)."""
    sev, reasons = _verdict(engine, "cluster", **AGED_FARM)
    assert sev == "medium"
    assert reasons["evidence:trust"].startswith("trust: none")
    sev, _ = _verdict(engine, "cluster", **(AGED_FARM | {"tools_heavy_share_24h": 0.6}))
    assert sev == "high"
    # established users of one product who signed up apart are not accused on the same sharing
    apart = AGED_FARM | {"shares_signup": False, "synchrony_24h": 0.6}
    sev, _ = _verdict(engine, "cluster", **apart)
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"]


def test_one_artefact_with_waves_burst_and_extraction_is_medium(engine: Engine) -> None:
    """A logprob farm on one client build, signed up together, sending in scheduler waves: one rare
    artefact is not coordination alone, but with two more coordination signals and extraction it is."""
    farm = FARM | {
        "accounts": 6,
        "active_accounts_24h": 6,
        "payers": 6,
        "orgs": 6,
        "shares_sysprompt": False,
        "shares_template": False,
        "shares_client": True,
        "rare_artefact_families": 1,
        "synchrony_24h": 0.6,
    }
    harvest = farm | {"logprob_share_24h": 0.55}
    sev, reasons = _verdict(engine, "cluster", **harvest)
    assert "cluster_coordinated_harvest" in reasons
    # the rules accuse at medium; a cluster model scoring the farm in its high band beside the rule's
    # hit raises it to high (cluster_gb-v3 did; v4 leaves this farm at medium)
    assert sev == "medium" or (sev == "high" and any(r.startswith("model:cluster_gb") for r in reasons))
    assert _verdict(build_engine(ROOT / "rules", models=False), "cluster", **harvest)[0] == "medium"
    sev, _ = _verdict(engine, "cluster", **farm)
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"]


#: Round 7 (issue 17): a group of a router's sub-accounts (the tenant's org, card, egress and client
#: build on all of them, and on its other customers) sharing a private system prompt, a template and a
#: sign-up batch: one of the router's customers (a company's team on its internal tool) shares exactly
#: this, and the router hides who pays.
ROUTER_GROUP: dict[str, Any] = FARM | {
    "accounts": 20,
    "active_accounts_24h": 20,
    "payers": 20,
    "orgs": 20,
    "tenant_share": 1.0,
    "verified_share": 0.0,
    "new_account_share": 0.3,
    "median_account_age_days": 45.0,
    "signup_burst_share": 0.3,
    "synchrony_24h": 0.2,
}


def test_a_group_inside_a_router_is_not_accused_on_its_sharing_alone(engine: Engine) -> None:
    sev, _ = _verdict(engine, "cluster", **ROUTER_GROUP)
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"]


def test_a_group_inside_a_router_sending_in_scheduler_waves_is_a_farm(engine: Engine) -> None:
    """Load-balanced waves over the seats are a dispatcher's, not a team's: the coordination axis accuses."""
    sev, reasons = _verdict(engine, "cluster", **(ROUTER_GROUP | {"synchrony_24h": 0.7}))
    assert sev == "medium"
    assert "cluster_coordinated_farm" in reasons


def test_a_team_behind_a_router_whose_tool_asks_for_steps_is_not_accused(engine: Engine) -> None:
    """A team's SQL helper says "think it through step by step" and gets a query back: reasoning
    elicited with outputs of ordinary size is what a customer's tool does."""
    sev, _ = _verdict(engine, "cluster", **(ROUTER_GROUP | {"cot_share_24h": 0.6}))
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"]


@pytest.mark.parametrize(
    "extraction",
    [
        {"cot_share_24h": 0.6, "max_tokens_high_share_24h": 0.7},
        {"logprob_share_24h": 0.7},
        {"coercion_share_24h": 0.4},
    ],
    ids=["cot-extraction-sized", "logprobs", "coercion"],
)
def test_a_group_inside_a_router_harvesting_is_accused(engine: Engine, extraction: dict[str, Any]) -> None:
    """Extraction a tool does not explain accuses the group, its inherited verification (verified_share
    0) earning it no trust: the harvest and extraction rules read the two axes as if the router were
    not there."""
    sev, reasons = _verdict(engine, "cluster", **(ROUTER_GROUP | extraction))
    assert SEVERITY_RANK[sev] >= SEVERITY_RANK["medium"]
    assert "cluster_coordinated_harvest" in reasons
    assert "no single customer explains it" in reasons["evidence:coordination"]


def test_a_team_behind_a_router_on_a_reasoning_model_is_not_accused(engine: Engine) -> None:
    """A team's tool on a reasoning model sends a thinking budget on every use, and near-maximum outputs
    with it (thinking needs them): reasoning through parameters is what the tool does, as the router's
    trust covers it on the account axis (round 9: the simulator's teams got reasoning tools, and this
    shape put 45 router customers at high on development draws)."""
    group = ROUTER_GROUP | {"thinking_share_24h": 0.9, "max_tokens_high_share_24h": 0.8}
    sev, _ = _verdict(engine, "cluster", **group)
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"]


def test_a_router_group_opened_days_ago_is_no_established_customer(engine: Engine) -> None:
    """Seats opened within the month are no established customer of the router: the sharing accuses at
    medium (a farm's accounts are opened days before use), never high inside the tenant."""
    sev, reasons = _verdict(
        engine, "cluster", **(ROUTER_GROUP | {"new_account_share": 1.0, "cot_share_24h": 0.6})
    )
    assert sev == "medium"
    assert "cluster_coordinated_farm" in reasons


def test_the_provenance_gate_is_the_clause_the_farm_rules_wrote_out() -> None:
    """``no_customer_explains``, the one column the farm rules and a lone model vote read, is the clause
    each farm rule once restated (no paying customer, no room, no router tenant's established group),
    on every combination of the flags around the new-seat bar (``team_new_seat_share``)."""
    bar = EvidenceSettings().team_new_seat_share
    clause = compile_condition(
        "not one_customer_explains and not colocated"
        f" and (not tenant_explains or new_account_share >= {bar})",
        CATALOGUES["cluster"],
    )
    flags = ("one_customer_explains", "colocated", "tenant_explains")
    rows = itertools.product([False, True], [False, True], [False, True], [0.0, bar - 0.01, bar, 1.0])
    schema = {**{f: pl.Boolean() for f in flags}, "new_account_share": pl.Float64()}
    frame = pl.DataFrame(list(rows), schema=schema, orient="row")
    gate = frame.select(no_customer_explains(EvidenceSettings())).to_series().to_list()
    assert gate == frame.select(clause.expr).to_series().to_list()
    assert 0 < sum(gate) < len(gate)


def test_add_axes_writes_the_provenance_gate(engine: Engine) -> None:
    """The engine's cluster rows carry the gate: open on a farm, shut on one customer's team."""
    s = engine.settings.evidence
    farm = add_axes(_frame("cluster", **FARM), "cluster", s)
    team = add_axes(_frame("cluster", **(FARM | {"payers": 1, "orgs": 1})), "cluster", s)
    assert farm["no_customer_explains"].to_list() == [True]
    assert team["one_customer_explains"].to_list() == [True]
    assert team["no_customer_explains"].to_list() == [False]


#: The farm rules' freshness clause as each of them once restated it, its bars as settings.
_FRESH_CLAUSE = "new_account_share >= {new} or verified_share < {verified} or bulk_provisioned"


def _fresh_frame(new_bar: float, verified_bar: float) -> pl.DataFrame:
    """Every combination of the clause's inputs around its bars, unknowns (null, NaN) included."""
    shares = [None, float("nan"), 0.0, new_bar - 0.01, new_bar, 1.0]
    verified = [None, float("nan"), 0.0, verified_bar - 0.01, verified_bar, 1.0]
    rows = itertools.product(shares, verified, [None, False, True])
    schema = {
        "new_account_share": pl.Float64(),
        "verified_share": pl.Float64(),
        "bulk_provisioned": pl.Boolean(),
    }
    # outside a router tenant: its seats opened over months are round 20's (``test_router_agents``)
    no_tenant = {"tenant_share": pl.lit(0.0), "signup_iqr_hours": pl.lit(None, pl.Float64)}
    no_waves = {"synchrony_24h": pl.lit(None, pl.Float64)}  # round 22's waves: test_dispatched
    return pl.DataFrame(list(rows), schema=schema, orient="row").with_columns(**no_tenant, **no_waves)


@pytest.mark.parametrize("bars", [(0.8, 0.5), (0.6, 0.3)])
def test_the_freshness_gate_is_the_clause_the_farm_rules_wrote_out(bars: tuple[float, float]) -> None:
    """``farm_accounts``, the one column the farm rules and a lone model vote read, is the clause five
    cluster rules once restated (nearly all new, mostly unverified or bulk-provisioned), as the rules
    read it (an unknown never fires), on every combination around its bars: the defaults and bars
    moved off them (``farm_new_member_share``, ``farm_verified_member_share``)."""
    s = EvidenceSettings(farm_new_member_share=bars[0], farm_verified_member_share=bars[1])
    clause = compile_condition(_FRESH_CLAUSE.format(new=bars[0], verified=bars[1]), CATALOGUES["cluster"])
    frame = _fresh_frame(*bars)
    gate = frame.select(farm_accounts(s)).to_series().to_list()
    assert gate == frame.select(clause.expr).to_series().to_list()
    assert 0 < sum(gate) < len(gate)


def test_the_freshness_bars_are_the_rules_old_literals_and_no_rule_restates_the_clause() -> None:
    """The defaults are the literals the rules wrote (0.8 new, 0.5 verified), and no rule writes the
    clause out again: they read ``farm_accounts``."""
    s = EvidenceSettings()
    assert (s.farm_new_member_share, s.farm_verified_member_share) == (0.8, 0.5)
    readers = []
    for path in sorted((ROOT / "rules").glob("*.yaml")):
        text = path.read_text()
        assert "verified_share <" not in text.split("tests:")[0], path.name
        if "farm_accounts" in text.split("tests:")[0]:
            readers.append(path.stem)
    assert len(readers) == 5, readers


def test_add_axes_writes_the_freshness_gate(engine: Engine) -> None:
    """The engine's cluster rows carry the gate: open on a new farm, shut on established verified
    accounts opened over years that no batch provisioned, open again on a batch of them."""
    s = engine.settings.evidence
    aged = {
        "new_account_share": 0.0,
        "verified_share": 1.0,
        "shares_signup": False,
        "signup_burst_share": 0.0,
    }
    farm = add_axes(_frame("cluster", **FARM), "cluster", s)
    users = add_axes(_frame("cluster", **(FARM | aged)), "cluster", s)
    cards = {"shares_payment": True, "payers": 30, "cross_org_card_member_share": 1.0}
    batch = add_axes(_frame("cluster", **(FARM | aged | cards)), "cluster", s)
    assert farm["farm_accounts"].to_list() == [True]
    assert users["bulk_provisioned"].to_list() == [False]
    assert users["farm_accounts"].to_list() == [False]
    assert batch["bulk_provisioned"].to_list() == batch["farm_accounts"].to_list() == [True]
