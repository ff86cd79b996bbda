"""Campaigns diluted with ordinary traffic (issue 17, round 8).

A campaign that mixes 60-90% ordinary requests into each account divides every extraction share until
none reaches its bar; the harvest requests are all still there. ``window.dilution`` measures what the
blend cannot remove (the cluster's harvest beyond the typical account's mix) and
``cluster_diluted_harvest`` reads it behind the coordinated-harvest gates.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from test_evidence import CODERS_FIRST_HOUR, _frame, _verdict

from detector.app import build_engine
from detector.contracts import SEVERITY_RANK
from detector.detect.evidence import add_axes
from detector.engine import Engine
from detector.window.dilution import harvest_excess, typical_mix

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 2, 14, tzinfo=UTC)
RULE = "cluster_diluted_harvest"
_COUNTERS = ("cot", "coercion", "rubric", "logprob", "n_gt1", "thinking", "max_tokens_high")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return build_engine(ROOT / "rules")


def _buckets(accounts: list[str], requests: int, **counts: int) -> pl.DataFrame:
    n = len(accounts)
    cols: dict[str, Any] = {"account_id": accounts, "bucket": [T0] * n, "requests": [requests] * n}
    cols |= {c: [counts.get(c, 0)] * n for c in _COUNTERS}
    return pl.DataFrame(cols)


def _pooled(buckets: pl.DataFrame) -> pl.DataFrame:
    """One cluster row with the pooled shares cluster_features gives."""
    s = buckets.select(pl.col("requests").sum(), *[pl.col(c).sum() for c in _COUNTERS])
    return s.select(
        pl.col("requests").alias("requests_24h"),
        *[(pl.col(c) / pl.col("requests")).alias(f"{c}_share_24h") for c in _COUNTERS],
    )


def test_a_blend_divides_the_shares_but_not_the_excess_over_the_typical_account() -> None:
    """Ten hydra accounts, 20 requests each, 85% of them ordinary: the three harvest requests an account
    sends (a thinking budget with near-maximum outputs) are 15% of its traffic, under every bar the
    extraction axis reads (0.5), but 12 points above the typical account's mix (100 ordinary users with
    one thinking request in ten and near-maximum outputs on one in five)."""
    hydra = [f"h{i}" for i in range(10)]
    people = [f"p{i}" for i in range(100)]
    farm = _buckets(hydra, 20, thinking=3 + 2, max_tokens_high=3 + 3)  # its own 3 + the blend's ordinary mix
    everyone = pl.concat([farm, _buckets(people, 20, thinking=2, max_tokens_high=4)])
    typical = typical_mix(everyone)
    row = _pooled(farm).with_columns(harvest_excess(typical)).row(0, named=True)
    assert row["thinking_share_24h"] == pytest.approx(0.25)  # diluted: below the 0.5 bar
    assert row["harvest_excess_share_24h"] == pytest.approx(0.3 - (10 * 0.3 + 100 * 0.2) / 110, abs=1e-9)
    assert row["harvest_excess_requests_24h"] == pytest.approx(200 * row["harvest_excess_share_24h"])
    # the same accounts sending only what everyone sends: nothing in excess
    plain = _pooled(_buckets(hydra, 20, thinking=2, max_tokens_high=4)).with_columns(harvest_excess(typical))
    assert plain.row(0, named=True)["harvest_excess_share_24h"] == pytest.approx(0.0, abs=0.01)


def test_a_tools_step_by_step_ask_with_ordinary_outputs_is_no_excess() -> None:
    """A team's SQL helper says "think it through step by step" on every request and gets a query back:
    reasoning elicited, outputs of ordinary size. That is what ``tenant_explains`` leaves to a team, and
    the excess counts it only with extraction-sized outputs."""
    team = [f"t{i}" for i in range(12)]
    people = [f"p{i}" for i in range(100)]
    tool = _buckets(team, 30, cot=30, max_tokens_high=3)
    typical = typical_mix(pl.concat([tool, _buckets(people, 20, max_tokens_high=4)]))
    row = _pooled(tool).with_columns(harvest_excess(typical)).row(0, named=True)
    assert row["cot_share_24h"] == 1.0
    assert row["harvest_excess_share_24h"] == 0.0


#: Draw 110 (development), 16:00, as main at c00687b saw it: a fresh cot_hydra through the router with
#: its ask only in its private system prompt (a thinking budget, near-maximum outputs) and 60-90% of
#: each account's requests ordinary. 13 sub-accounts, linked by the system prompt and a sign-up burst;
#: a thinking budget on 53% of requests and near-maximum outputs on 42%: "reasoning via parameters"
#: needs both >= 0.5, so no extraction signal, and ``tenant_explains`` holds (a team's tool could
#: explain a group inside a router with nothing extracted in sight). The typical account asked a
#: thinking budget on ~12% and near-maximum outputs on ~19% of its requests that hour.
BLENDED_ROUTER_HYDRA: dict[str, Any] = {
    "accounts": 13,
    "active_accounts_24h": 13,
    "payers": 13,
    "payer_share": 1.0,
    "orgs": 13,
    "new_account_share": 1.0,
    "median_account_age_days": 2.9,
    "verified_share": 0.0,
    "tenant_share": 1.0,
    "requests_24h": 38,
    "requests_per_account_24h": 2.9,
    "active_hours_24h": 12,
    "synchrony_24h": 0.11,
    "template_top_share_24h": 0.05,
    "thinking_share_24h": 0.526,
    "max_tokens_high_share_24h": 0.421,
    "shares_sysprompt": True,
    "shares_signup": True,
    "signup_burst_share": 0.538,
    "rare_artefact_families": 1,
    "link_families": 2,
    "client_outside_holders": 179,
    "extraction_lift_over_client": 0.386,
    "harvest_excess_share_24h": 0.421 - 0.19,
    "harvest_excess_requests_24h": 38 * (0.421 - 0.19),
}


def test_a_blended_hydra_is_named_on_its_excess_and_was_not_on_its_shares(engine: Engine) -> None:
    """Main named none of this hydra's 13 accounts in this cluster (nothing in its shares reaches a bar, and
    a router's group with nothing extracted is a team's until shown otherwise); its excess names it."""
    sev, reasons = _verdict(engine, "cluster", **BLENDED_ROUTER_HYDRA)
    assert sev == "medium", reasons
    assert RULE in reasons
    assert reasons["evidence:extraction"].startswith("extraction: 0 signal")
    assert "harvest_excess_share_24h=0.231" in reasons[RULE]
    # without the excess (what main computed): below medium
    main = BLENDED_ROUTER_HYDRA | {"harvest_excess_share_24h": 0.0, "harvest_excess_requests_24h": 0.0}
    sev, reasons = _verdict(engine, "cluster", **main)
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"], reasons
    # never high on the excess alone: high needs the farm rules' extraction signals
    sev, _ = _verdict(engine, "cluster", **(BLENDED_ROUTER_HYDRA | {"rare_artefact_families": 2}))
    assert sev == "medium"


@pytest.mark.parametrize(
    ("who", "change"),
    [
        ("a few chance requests", {"harvest_excess_share_24h": 0.2, "harvest_excess_requests_24h": 3.0}),
        (
            "under a tenth beyond ordinary",
            {"harvest_excess_share_24h": 0.08, "harvest_excess_requests_24h": 40.0},
        ),
        ("one company's card", {"payers": 1, "orgs": 1}),
        # inside a router on established seats with no harvest in excess (a team's tool asking for steps
        # with ordinary outputs): the tenant hides who pays (the coordination rules' tenant clause)
        (
            "established seats inside a router, nothing in excess",
            {
                "new_account_share": 0.0,
                "median_account_age_days": 300.0,
                "harvest_excess_share_24h": 0.02,
                "harvest_excess_requests_24h": 0.8,
            },
        ),
        (
            "established seats inside a router, a few chance requests",
            {
                "new_account_share": 0.0,
                "median_account_age_days": 300.0,
                "harvest_excess_share_24h": 0.2,
                "harvest_excess_requests_24h": 3.0,
            },
        ),
        (
            "established verified accounts, no batch",
            {
                "new_account_share": 0.0,
                "verified_share": 0.9,
                "tenant_share": 0.0,
                "signup_burst_share": 0.08,
            },
        ),
    ],
)
def test_what_the_excess_does_not_accuse(engine: Engine, who: str, change: dict[str, Any]) -> None:
    sev, reasons = _verdict(engine, "cluster", **(BLENDED_ROUTER_HYDRA | change))
    assert RULE not in reasons, who
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"], (who, reasons)


def test_a_popular_tools_users_stay_below_medium_with_their_excess(engine: Engine) -> None:
    """The coding agent's users ask thinking budgets with 32k outputs on half their turns, far above the
    typical account: aged, verified, no batch, so the provenance gate holds, as for every farm rule."""
    sev, reasons = _verdict(
        engine,
        "cluster",
        **(CODERS_FIRST_HOUR | {"harvest_excess_share_24h": 0.4, "harvest_excess_requests_24h": 180.0}),
    )
    assert RULE not in reasons
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"], reasons


#: Round 9: the same blended hydra on aged seats of the router (draw 148's shape: a cot_hydra through
#: the router, its ask only in its private system prompt, 60-90% of each account's requests ordinary,
#: sub-accounts opened in a batch, verified by the router, 300 days old).
AGED_ROUTER_HYDRA = BLENDED_ROUTER_HYDRA | {
    "new_account_share": 0.0,
    "median_account_age_days": 300.0,
    "verified_share": 1.0,
}


#: The same aged router group coercing the hidden reasoning out of 15% of its requests, under the
#: coercion bar once blended (0.2) but far above the typical account's share (about none).
AGED_ROUTER_COERCION = AGED_ROUTER_HYDRA | {
    "coercion_share_24h": 0.15,
    "harvest_beyond_tool_excess_share_24h": 0.15,
}


def test_a_router_group_diluted_under_the_shares_is_not_a_teams_tool(engine: Engine) -> None:
    """``tenant_explains`` reads the harvest no tool needs (coercion, rubric grading, logprobs) in excess
    of the typical mix, with the bars of ``cluster_diluted_harvest``: a group inside a router whose
    coercion a blend divides under every share is not explained as one company's team, and its aged,
    batch-provisioned seats are named at medium (main before round 9: explained, below medium). Never
    high: the extraction axis still reads the shares."""
    frame = _frame("cluster", **AGED_ROUTER_COERCION)
    s = engine.settings.evidence
    assert add_axes(frame, "cluster", s)["tenant_explains"].to_list() == [False]
    sev, reasons = _verdict(engine, "cluster", **AGED_ROUTER_COERCION)
    assert sev == "medium", reasons
    assert RULE in reasons
    assert "no single customer explains it" in reasons["evidence:coordination"]
    # just under either bar, the group is a team's until shown otherwise, as before
    for under in (
        {"harvest_beyond_tool_excess_share_24h": s.harvest_excess_share - 0.01},
        {"harvest_beyond_tool_excess_share_24h": (s.harvest_excess_requests - 0.5) / 38},
    ):
        explained = add_axes(_frame("cluster", **(AGED_ROUTER_COERCION | under)), "cluster", s)
        assert explained["tenant_explains"].to_list() == [True], under
        sev, reasons = _verdict(engine, "cluster", **(AGED_ROUTER_COERCION | under))
        assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"], (under, reasons)


def test_tenant_explains_reads_the_rules_own_bars(engine: Engine) -> None:
    """One pair of bars: the settings ``tenant_explains`` reads are the ones the rule's condition states
    (a change to one without the other would let a group fire the rule while still "explained")."""
    rule = yaml.safe_load((ROOT / "rules" / f"{RULE}.yaml").read_text())
    cond = " ".join(rule["condition"].split())
    s = engine.settings.evidence
    assert f"harvest_excess_share_24h >= {s.harvest_excess_share:g}" in cond
    assert f"harvest_excess_requests_24h >= {s.harvest_excess_requests:g}" in cond


#: A company's team on the router, its internal tool on a reasoning model (the simulator's
#: ``tool_traffic`` with a reasoning tool): seats opened by the admin 20-200 days ago, nine requests in
#: ten through the tool, each with a thinking budget (so near-maximum outputs) and, for the SQL helper,
#: "think it through step by step". Every reasoning share is far above the bars and the typical mix.
ROUTER_REASONING_TOOL = AGED_ROUTER_HYDRA | {
    "cot_share_24h": 0.9,
    "thinking_share_24h": 0.9,
    "max_tokens_high_share_24h": 0.9,
    "harvest_excess_share_24h": 0.7,
    "harvest_excess_requests_24h": 38 * 0.7,
    "harvest_beyond_tool_excess_share_24h": 0.0,
}


def test_a_router_teams_reasoning_tool_is_the_teams_not_harvest(engine: Engine) -> None:
    """Inside a router, a tool on a reasoning model asks for the reasoning on every use: its thinking
    budgets, the near-maximum outputs they need and a step-by-step ask do not break the team's
    explanation, and its aged seats stay below medium (before round 9's mend: 45 router customers at
    high on development draws 320-327, once the simulator's teams got reasoning tools). The diluted
    thinking-only hydra is the same shape (docs/detection.md, "Cells not met"). Outputs sized beyond
    the thinking budget's need, coercion or logprobs are no tool's, and break it."""
    s = engine.settings.evidence
    for group in (ROUTER_REASONING_TOOL, AGED_ROUTER_HYDRA):
        explained = add_axes(_frame("cluster", **group), "cluster", s)
        assert explained["tenant_explains"].to_list() == [True]
        sev, reasons = _verdict(engine, "cluster", **group)
        assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"], reasons
    for not_a_tool in (
        {"thinking_share_24h": 0.0},  # a step-by-step ask with near-maximum outputs, no thinking
        {"coercion_share_24h": 0.5},
        {"logprob_share_24h": 0.9, "n_gt1_share_24h": 0.9},
    ):
        frame = add_axes(_frame("cluster", **(ROUTER_REASONING_TOOL | not_a_tool)), "cluster", s)
        assert frame["tenant_explains"].to_list() == [False], not_a_tool
        sev, reasons = _verdict(engine, "cluster", **(ROUTER_REASONING_TOOL | not_a_tool))
        assert SEVERITY_RANK.get(sev, 0) >= SEVERITY_RANK["medium"], (not_a_tool, reasons)
