"""Issue 17, round 22: with ``evidence.aged_reasoning_tool`` on (off by default), an aged group outside a
router tenant whose only harvest is a thinking budget is a team's reasoning tool, not a farm for being
mostly unverified (``provenance.reasoning_tool``, read by the freshness gate ``farm_accounts``).

A company team running its internal tool on its members' personal accounts
(``lab/simulate/personal_team``) shares a private system prompt and template; when the tool runs on a
reasoning model every use carries a thinking budget, and when most members are unverified the gate was
open: ``cluster_coordinated_harvest`` and ``cluster_diluted_harvest`` accused the team at medium. Through
a router the same reading already holds (``evidence.tenant_explains``)."""

from __future__ import annotations

from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from test_dispatched import ROOT
from test_evidence import FARM, _frame, _verdict

from detector.app import build_engine
from detector.detect.evidence import add_axes
from detector.detect.provenance import farm_accounts
from detector.evidence_settings import EvidenceSettings
from detector.settings import EngineSettings

#: The look-alike day's team: 22 personal accounts of 22 orgs and cards opened over years, one in ten
#: verified, sharing the tool's system prompt and template, a thinking budget on every use.
TEAM: dict[str, Any] = FARM | {
    "accounts": 22,
    "active_accounts_24h": 22,
    "payers": 22,
    "orgs": 22,
    "new_account_share": 0.0,
    "verified_share": 0.1,
    "median_account_age_days": 700.0,
    "requests_24h": 880,
    "requests_per_account_24h": 40.0,
    "synchrony_24h": 0.1,
    "shares_signup": False,
    "signup_burst_share": 0.0,
    "thinking_share_24h": 0.95,
    "max_tokens_high_share_24h": 0.95,
    "harvest_excess_share_24h": 0.9,
    "harvest_excess_requests_24h": 790.0,
}
ON = EvidenceSettings(aged_reasoning_tool=True)


def test_a_team_on_its_reasoning_tool_is_spared_and_a_farm_is_not() -> None:
    """With the setting on. Fails on `main` (no such setting: the gate stays open on "mostly
    unverified" and both harvest rules name the team at medium)."""
    off = build_engine(ROOT / "rules")
    sev, reasons = _verdict(off, "cluster", **TEAM)
    assert sev == "medium" and "cluster_coordinated_harvest" in reasons  # today's verdict
    on = build_engine(ROOT / "rules", settings=EngineSettings(evidence=ON))
    assert add_axes(_frame("cluster", **TEAM), "cluster", ON)["farm_accounts"].to_list() == [False]
    assert _verdict(on, "cluster", **TEAM)[0] in ("none", "low")
    # what a tool does not do keeps the gate open: logprobs with several samples
    logprobs = TEAM | {"logprob_share_24h": 0.6, "n_gt1_share_24h": 0.6}
    assert _verdict(on, "cluster", **logprobs)[0] in ("medium", "high")
    # a fresh farm harvesting only through thinking budgets keeps today's verdict
    fresh = TEAM | {"new_account_share": 1.0, "median_account_age_days": 3.0}
    assert _verdict(on, "cluster", **fresh) == _verdict(off, "cluster", **fresh)
    # ... and so does a group in scheduler waves, and one provisioned in a sign-up burst
    assert _verdict(on, "cluster", **(TEAM | {"synchrony_24h": 0.8}))[0] in ("medium", "high")
    burst = TEAM | {"shares_signup": True, "signup_burst_share": 0.9}
    assert _verdict(on, "cluster", **burst)[0] in ("medium", "high")


def test_off_by_default() -> None:
    assert EvidenceSettings().aged_reasoning_tool is False
    assert add_axes(_frame("cluster", **TEAM), "cluster", EvidenceSettings())["farm_accounts"].to_list() == [
        True
    ]


@settings(deadline=None, max_examples=60)
@given(
    verified=st.floats(0.0, 1.0),
    new=st.floats(0.0, 1.0),
    tenant=st.floats(0.0, 1.0),
    synchrony=st.floats(0.0, 1.0),
    thinking=st.floats(0.0, 1.0),
    logprobs=st.floats(0.0, 1.0),
    bulk=st.booleans(),
)
def test_the_setting_only_ever_shuts_the_gate_and_only_for_aged_thinking_only_groups(
    verified: float, new: float, tenant: float, synchrony: float, thinking: float, logprobs: float, bulk: bool
) -> None:
    """On is off, less the groups the reading spares: never a fresh, bulk-provisioned, tenant's or
    waves' group, nor one harvesting what a tool does not."""
    row = add_axes(
        _frame(
            "cluster",
            **TEAM
            | {
                "verified_share": verified,
                "new_account_share": new,
                "tenant_share": tenant,
                "synchrony_24h": synchrony,
                "thinking_share_24h": thinking,
                "logprob_share_24h": logprobs,
                "n_gt1_share_24h": logprobs,
                "harvest_excess_share_24h": 0.0,
            },
        ),
        "cluster",
        EvidenceSettings(),
    ).with_columns(bulk_provisioned=pl.lit(bulk))
    with_reading = row.select(farm_accounts(ON))[0, 0]
    without = row.select(farm_accounts(EvidenceSettings()))[0, 0]
    assert without or not with_reading  # never opens the gate
    if with_reading != without:
        assert new < ON.farm_verified_member_share and not bulk and tenant < ON.tenant_group_share
        assert synchrony < ON.scheduler_synchrony and thinking >= ON.thinking_share
        assert logprobs < ON.logprob_share
