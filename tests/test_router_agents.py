"""Issue 17, round 20: a popular coding agent's users through the router (``lab/simulate/router_agents``).

A router carries many users of one popular coding agent: each user's seat is a sub-account of the
router's tenant, opened whenever that user came to the router, sending the agent's public system prompt
and its tool-heavy turns. Where most holders of the agent's prompt are the router's (an agent whose users
come through the router), the prompt and the agent's tool-result wrappers link them into one cluster, whose
agent transcripts are extraction no team's tool explains; the router's sub-accounts count as unverified on
the cluster axis, so the farm rules' freshness gate held and the cluster was named at medium (on `main`,
dev draws 141-146: 197 of 244 users at medium, 55 at high).

A farm opens its seats together, in days, however long ago; the router's customers arrive over its years.
``provenance.tenant_customers``: a tenant's group whose middle half of sign-ups spans more than a month is
not a farm's by "mostly unverified" alone (new seats and bulk provisioning still are).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from router_days import ROOT, accused, router_params

import detector.detect.provenance as provenance
import detector.window.members as members
from detector.app import build_engine
from detector.contracts import SEVERITY_RANK
from detector.evidence_settings import EvidenceSettings
from detector.lab.simulate import SimParams, simulate
from detector.lab.simulate.router_agents import AGENT_SYSTEMS
from detector.runtime.replay import replay

SCALE = 0.1
#: Seed 3's router day draws the agent whose users all come through the router (its prompt is theirs).
SEED = 3


def _day(out: Path, **update: Any) -> tuple[Path, dict[str, Any]]:
    """Seed 3's router day: ordinary chat, 150 router customers and the agent's users among them."""
    base = router_params()
    update.setdefault("router_customers", base.router_customers.model_copy(update={"accounts": 1500}))
    simulate(out, 1.0, SEED, scale=SCALE, params=base.model_copy(update=update))
    return out / "events.parquet", orjson.loads((out / "labels.json").read_bytes())["accounts"]


def _named(events: Path, out: Path) -> dict[str, str]:
    """Account id -> the highest severity of any alert naming it (account and cluster alerts)."""
    replay([events], build_engine(ROOT / "rules"), out)
    found: dict[str, str] = {}
    for line in out.read_bytes().splitlines():
        alert = orjson.loads(line)
        for a in alert["account_ids"]:
            if SEVERITY_RANK[alert["severity"]] >= SEVERITY_RANK[found.get(a, "low")]:
                found[a] = alert["severity"]
    return found


def _as_of_main(monkeypatch: pytest.MonkeyPatch) -> None:
    """The freshness gate as round 19 had it: a router's seats are unverified, so any group of them is."""
    monkeypatch.setattr(provenance, "tenant_customers", lambda s: pl.lit(False))


def _holders(events: Path, users: list[str]) -> dict[str, int]:
    """System prompt -> how many of ``users`` send it."""
    ev = pl.read_parquet(events, columns=["account_id", "params"]).filter(pl.col("account_id").is_in(users))
    rows = ev.group_by(pl.col("params").struct.field("system_prompt_hash").alias("sp")).agg(
        pl.col("account_id").n_unique()
    )
    return dict(rows.iter_rows())


def test_the_gate_reads_the_tenant_and_the_spread_of_sign_ups() -> None:
    """Seats of a tenant opened over months: not a farm's for being unverified; opened within a week,
    or most of them new, or not a tenant's: as before."""
    base = {
        "tenant_share": 1.0,
        "signup_iqr_hours": 24.0 * 200,
        "new_account_share": 0.1,
        "verified_share": 0.0,
        "bulk_provisioned": False,
        "synchrony_24h": 0.0,
    }
    cases = [
        ({}, False),
        ({"signup_iqr_hours": 24.0 * 4}, True),
        ({"new_account_share": 0.9}, True),
        ({"tenant_share": 0.0}, True),
        ({"bulk_provisioned": True}, True),
        ({"signup_iqr_hours": None}, True),
        ({"synchrony_24h": 0.9}, False),  # waves: not read inside a tenant (round 22, test_dispatched)
    ]
    frame = pl.DataFrame([base | change for change, _ in cases], infer_schema_length=None)
    got = frame.select(provenance.farm_accounts(EvidenceSettings()).alias("farm"))["farm"].to_list()
    assert got == [farm for _, farm in cases]


def test_a_popular_agents_users_through_the_router_are_not_accused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's users through the router, on its public prompt held by no one else: none named at
    medium on any alert; with round 19's gate, their cluster is (fails on `main`)."""
    events, labels = _day(tmp_path)
    users = sorted(a for a, i in labels.items() if i["persona"] == "router_agent_users")
    assert _holders(events, users).get(AGENT_SYSTEMS[1], 0) >= 20
    now = accused(_named(events, tmp_path / "now.jsonl")) & set(users)
    assert not now
    with monkeypatch.context() as m:
        _as_of_main(m)
        before = accused(_named(events, tmp_path / "before.jsonl")) & set(users)
    assert len(before) >= len(users) // 2, (len(before), len(users))


def test_an_aged_agent_farm_through_the_router_is_still_accused(tmp_path: Path) -> None:
    """An agentic_pivot farm of aged seats through the router, opened together 300 days before, beside
    the agent's users: its seats are named at medium as before."""
    farm = SimParams().agentic_pivot.model_copy(
        update={
            "campaigns": 1,
            "cluster_size": 120,  # 12 seats at scale 0.1
            "account_age_days": 300.0,
            "via_router": True,
            "start_offsets": [0.1],
        }
    )
    events, labels = _day(tmp_path, agentic_pivot=farm)
    seats = {a for a, i in labels.items() if i["attacker"]}
    users = {a for a, i in labels.items() if i["persona"] == "router_agent_users"}
    assert len(seats) >= 8
    found = accused(_named(events, tmp_path / "farm.jsonl"))
    assert len(found & seats) >= len(seats) - 1, (len(found & seats), len(seats))
    assert not found & users


def _gate(created_days: list[float], now_days: float = 400.0) -> bool:
    """``farm_accounts`` on one router tenant's group (every seat unverified, no bulk provisioning, the
    tenant's) whose seats were opened ``created_days`` (days since an epoch) and read at ``now_days``."""
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    now = t0 + timedelta(days=now_days)
    group = pl.DataFrame({"created_at": [t0 + timedelta(days=d) for d in created_days]})
    row = group.select(
        members.signup_iqr_hours().alias("signup_iqr_hours"),
        members.new_account_share(now).alias("new_account_share"),
        pl.lit(1.0).alias("tenant_share"),
        pl.lit(0.0).alias("verified_share"),
        pl.lit(False).alias("bulk_provisioned"),
        pl.lit(0.0).alias("synchrony_24h"),
    )
    return bool(row.select(provenance.farm_accounts(EvidenceSettings()))[0, 0])


def test_a_few_old_seats_do_not_spread_a_group_of_new_ones() -> None:
    """The quartiles of a mixed group: three seats opened months ago (one each in three months) beside
    seven opened within the month, one every few days (no sign-up batch, 70% new: under the new-seat
    bar). The first quartile falls among the old seats, the third among the new: the middle half spans
    months, yet most of the group is new. Still a farm's group (fails on `main`), as is one half old,
    half new; the router's customers, most of them opened over the year (at most 30% within the month,
    ``router_agents._NEW_MAX``), are not."""
    assert _gate([100.0, 160.0, 220.0] + [372.0 + 4.0 * i for i in range(7)])
    assert _gate([100.0, 150.0, 200.0, 250.0, 300.0] + [372.0 + 6.0 * i for i in range(5)])
    customers = [10.0 + 35.0 * i for i in range(10)] + [375.0, 385.0, 395.0]  # 23% within the month
    assert not _gate(customers)
