"""A cluster against its client build's population (issue 17, round 7: aged farms vs a tool's users).

An aged, verified farm of many orgs that signed up over days has no sign-up batch to show; what gives it
away is that its traffic is not its client build's: a router's other customers (or a popular SDK's
other users) send far less reasoning harvest. A popular tool's users are the build's whole population,
whatever slice of them is active, so they never stand out from it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from test_evidence import CODERS_FIRST_HOUR, _verdict

from detector.app import build_engine
from detector.contracts import SEVERITY_RANK
from detector.detect.rules import RuleSet
from detector.engine import Engine
from detector.window.population import client_population

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 2, 14, tzinfo=UTC)


RULE = "cluster_harvest_among_tool_users"


def _enforced(models: bool = True) -> Engine:
    """The shipped rules with this rule enforced (it ships in shadow mode until a simulated campaign on
    a shared build earns it; docs/detection.md, round 7)."""
    e = build_engine(ROOT / "rules", models=models)
    e.rules = RuleSet(replace(r, mode="enforce") if r.id == RULE else r for r in e.rules)
    return e


@pytest.fixture(scope="module")
def engine() -> Engine:
    return _enforced()


def test_the_rule_ships_in_shadow_mode() -> None:
    """Shipped, its hits are counted, not alerted: the farm stays below medium."""
    shipped = build_engine(ROOT / "rules")
    rule = shipped.rules.get(RULE)
    assert rule is not None and rule.mode == "shadow"
    sev, _ = _verdict(shipped, "cluster", **AGED_ROUTER_FARM)
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"]


def _holders(build: str, accounts: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"account_id": accounts, "family": "client", "key": build})


def _traffic(accounts: list[str], requests: int, thinking: int) -> pl.DataFrame:
    n = len(accounts)
    zeros = [0] * n
    return pl.DataFrame(
        {
            "account_id": accounts,
            "bucket": [T0] * n,
            "requests": [requests] * n,
            "cot": zeros,
            "coercion": zeros,
            "rubric": zeros,
            "logprob": zeros,
            "thinking": [thinking] * n,
        }
    )


def test_a_slice_of_a_builds_holders_that_harvests_stands_out_and_a_whole_population_does_not() -> None:
    """Ten sub-accounts of a router ask a thinking budget on 6 of 10 requests; the router's 40 other
    customers on 1 of 10: a lift of 0.5 over 40 outside holders. A tool's 30 users, all in one cluster
    (the build's whole population), have nobody outside to compare with."""
    farm = [f"f{i}" for i in range(10)]
    router = [f"r{i}" for i in range(40)]
    coders = [f"c{i}" for i in range(30)]
    keys = pl.concat([_holders("router-build", farm + router), _holders("agent-build", coders)])
    members = pl.DataFrame({"account_id": farm + coders, "cluster_id": ["farm"] * 10 + ["coders"] * 30})
    buckets = pl.concat([_traffic(farm, 10, 6), _traffic(router, 10, 1), _traffic(coders, 10, 5)])
    out = {r["cluster_id"]: r for r in client_population(keys, members, buckets).iter_rows(named=True)}
    assert out["farm"]["client_outside_holders"] == 40
    assert out["farm"]["extraction_lift_over_client"] == pytest.approx(0.5)
    assert out["coders"]["client_outside_holders"] == 0
    assert out["coders"]["extraction_lift_over_client"] is None


def test_buckets_of_accounts_that_hold_no_build_of_a_cluster_change_nothing() -> None:
    """``cluster_features`` hands over every account's window (read once per pass, issue 13), not its
    builds' holders' only: the other accounts' buckets, however they harvest, are left out."""
    farm, router, others = [f"f{i}" for i in range(10)], [f"r{i}" for i in range(40)], ["o1", "o2"]
    keys = pl.concat([_holders("router-build", farm + router), _holders("other-build", others)])
    members = pl.DataFrame({"account_id": farm, "cluster_id": ["farm"] * 10})
    holders = pl.concat([_traffic(farm, 10, 6), _traffic(router, 10, 1)])
    everyone = pl.concat([_traffic(others, 50, 50), holders, _traffic(["lone"], 7, 7)])
    alone = client_population(keys, members, holders)
    assert alone["extraction_lift_over_client"].to_list() == [pytest.approx(0.5)]
    assert client_population(keys, members, everyone).equals(alone)


#: Draw 355 (development), 17:00, as main at 3d39ee9 saw it: an aged cot_hydra farm through the router
#: (system-prompt-only asks, a thinking budget and near-maximum outputs), 15 accounts of 15 orgs, all
#: verified, signed up over four days: only a coincidental pair in one half hour, so no batch; its
#: client build is held by 144 accounts outside it, whose traffic has ~3% thinking requests. (Since the
#: router round a tenant's sub-accounts read as unverified; the case stands for aged, verified accounts
#: of many orgs on any build that others hold too, e.g. a popular SDK.)
AGED_ROUTER_FARM: dict[str, Any] = {
    "accounts": 15,
    "active_accounts_24h": 15,
    "payers": 15,
    "payer_share": 1.0,
    "orgs": 15,
    "new_account_share": 1 / 15,
    "median_account_age_days": 301.0,
    "verified_share": 1.0,
    "requests_24h": 172,
    "requests_per_account_24h": 11.5,
    "active_hours_24h": 15,
    "synchrony_24h": 0.2,
    "template_top_share_24h": 0.047,
    "thinking_share_24h": 0.58,
    "max_tokens_high_share_24h": 0.58,
    "shares_sysprompt": True,
    "shares_template": True,
    "shares_signup": True,
    "signup_burst_share": 2 / 15,
    "rare_artefact_families": 2,
    "link_families": 3,
    "client_key_inside_share": 0.094,
    "client_outside_holders": 144,
    "extraction_lift_over_client": 0.55,
}


def test_an_aged_verified_farm_standing_out_from_its_builds_users_reaches_medium(engine: Engine) -> None:
    """Main's rules leave this farm below medium (aged, verified, no batch: the provenance gate holds);
    its traffic against the router's other customers names it at medium."""
    sev, reasons = _verdict(engine, "cluster", **AGED_ROUTER_FARM)
    # the rules accuse at medium; a cluster model scoring the farm in its high band beside the rule's
    # hit raises it to high (cluster_gb-v4 and v5 do, v3 did not)
    raised = sev == "high" and any(r.startswith("model:cluster_gb") for r in reasons)
    assert sev == "medium" or raised, reasons
    assert _verdict(_enforced(models=False), "cluster", **AGED_ROUTER_FARM)[0] == "medium"
    assert RULE in reasons
    # the same slice sending what the router's other customers send is not accused
    sev, reasons = _verdict(engine, "cluster", **(AGED_ROUTER_FARM | {"extraction_lift_over_client": 0.05}))
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"], reasons
    # nor with a handful of others on the build (no population to compare with)
    sev, reasons = _verdict(engine, "cluster", **(AGED_ROUTER_FARM | {"client_outside_holders": 3}))
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"], reasons


def test_a_popular_tools_users_in_their_first_hour_do_not_stand_out_from_their_build(engine: Engine) -> None:
    """Draw 1046's 18 coders in the replay's first hour: every holder of the agent's build seen so far
    is in the cluster, so there is no outside population and nothing stands out."""
    sev, reasons = _verdict(engine, "cluster", **(CODERS_FIRST_HOUR | {"client_outside_holders": 0}))
    assert SEVERITY_RANK.get(sev, 0) < SEVERITY_RANK["medium"], reasons
