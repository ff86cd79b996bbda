"""Issue 17, round 19: the router's verification does not vouch for agent trajectories (``evidence``).

A router sub-account carries the router's verification; with the seat's own tenure the account axis
called it "an established verified customer" and capped it at low whatever fired, unless its traffic
carried what the router's customers do not do at volume (round 8: coercion, logprobs). An aged agent farm
through the router (dev draw 2011: twelve seats opened together 300 days before, one cluster) had its
seats capped so while the account-axis model scored them 0.999 for agentic transcripts. Agentic
transcripts now keep their verdicts on a router seat, as coercion and logprobs do.

The look-alikes it must not accuse: the router's honest customers, and honest users of a coding agent
whose every request goes through the router (the agent's own users of ``personas.agentic_coder``,
re-homed under the router's tenant: its org, card, reseller id, verification, egress and client build).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from router_days import accused, named, router_params

import detector.detect.evidence as evidence
from detector.detect.evidence import ROUTER_UNVOUCHED, add_axes
from detector.evidence_settings import EvidenceSettings
from detector.lab.simulate import SimParams, simulate
from detector.window.dilution import BEYOND_ROUTER_TRUST

SCALE = 0.1
SEED = 4


def _seat(tier: str, **shares: float) -> pl.DataFrame:
    row: dict[str, Any] = {
        "requests_24h": 20,
        "cot_share_24h": 0.0,
        "coercion_share_24h": 0.0,
        "rubric_share_24h": 0.0,
        "logprob_share_24h": 0.0,
        "thinking_share_24h": 0.0,
        "max_tokens_high_share_24h": 0.0,
        "tools_heavy_share_24h": 0.0,
        "new_model_share_24h": 0.0,
        "verified": True,
        "account_age_days": 300.0,
        "tier": tier,
    }
    return pl.DataFrame([row | shares])


@pytest.mark.parametrize(
    ("tier", "shares", "trusted"),
    [
        ("reseller", {"tools_heavy_share_24h": 0.6}, False),
        ("standard", {"tools_heavy_share_24h": 0.6}, True),
        ("reseller", {"cot_share_24h": 1.0, "new_model_share_24h": 1.0}, True),
        ("reseller", {"thinking_share_24h": 1.0, "max_tokens_high_share_24h": 1.0}, True),
        ("reseller", {"logprob_share_24h": 0.6}, False),
        ("reseller", {}, True),
    ],
    ids=["router-agent", "direct-agent", "router-bench", "router-thinking", "router-logprobs", "router-chat"],
)
def test_the_routers_trust_covers_what_its_customers_do(
    tier: str, shares: dict[str, float], trusted: bool
) -> None:
    """An aged, verified router seat keeps the router's trust for benchmarks, thinking budgets and chat,
    not for agent transcripts (nor, as before, logprobs); a direct customer's own verification covers
    its agent traffic as before."""
    frame = add_axes(_seat(tier, **shares), "account", EvidenceSettings())
    assert frame["trusted_customer"].item() is trusted
    assert set(BEYOND_ROUTER_TRUST) < set(ROUTER_UNVOUCHED)


def _router_day(out: Path, **update: Any) -> tuple[Path, dict[str, Any]]:
    """Seed 4's router day (``router_days.router_params``) with ``update`` applied to its parameters."""
    base = router_params()
    simulate(out, 1.0, SEED, scale=SCALE, params=base.model_copy(update=update))
    return out / "events.parquet", orjson.loads((out / "labels.json").read_bytes())["accounts"]


def _as_of_main(monkeypatch: pytest.MonkeyPatch) -> None:
    """The router's trust as round 18 had it: it vouched for everything but coercion and logprobs."""
    monkeypatch.setattr(evidence, "ROUTER_UNVOUCHED", BEYOND_ROUTER_TRUST)


def test_an_aged_agent_farm_through_the_router_is_accused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agentic_pivot farm of aged seats through the router, blended with ordinary chat: more of its
    seats are accused on the account axis than with the router's trust over agent transcripts."""
    base = SimParams().agentic_pivot
    farm = base.model_copy(
        update={
            "campaigns": 1,
            "cluster_size": 120,  # 12 seats at scale 0.1
            "account_age_days": 300.0,
            "via_router": True,
            "blend_ratio": 0.45,
            "start_offsets": [0.1],
        }
    )
    events, labels = _router_day(tmp_path, agentic_pivot=farm)
    seats = {a for a, i in labels.items() if i["attacker"]}
    assert len(seats) >= 8
    now = accused(named(events, tmp_path / "now.jsonl")) & seats
    with monkeypatch.context() as m:
        _as_of_main(m)
        before = accused(named(events, tmp_path / "before.jsonl")) & seats
    assert len(now) > len(before), (len(before), len(now))


def _rehomed(events: Path, coders: list[str], out: Path) -> Path:
    """``events`` with the ``coders`` under the router: every field of the router's tenant on them."""
    ev = pl.read_parquet(events)
    router = ev.filter(pl.col("account").struct.field("tier") == "reseller").row(0, named=True)
    acc, client = router["account"], router["client"]
    mine = pl.col("account_id").is_in(coders)
    account = pl.col("account").struct.with_fields(
        pl.lit(acc["payment_fingerprint"]).alias("payment_fingerprint"),
        pl.lit(acc["tier"]).alias("tier"),
        pl.lit(True).alias("verified"),
        pl.lit(acc["reseller_id"]).alias("reseller_id"),
    )
    via = pl.col("client").struct.with_fields(pl.lit(client[k]).alias(k) for k in client)
    ev.with_columns(
        pl.when(mine).then(account).otherwise(pl.col("account")).alias("account"),
        pl.when(mine).then(via).otherwise(pl.col("client")).alias("client"),
        pl.when(mine).then(pl.lit(router["org_id"])).otherwise(pl.col("org_id")).alias("org_id"),
    ).write_parquet(out)
    return out


def test_the_routers_honest_customers_and_agent_users_stay_unaccused(tmp_path: Path) -> None:
    """The router's customers (its team, calibration researchers, judges, model-comparison developers)
    and a coding agent's users whose requests all go through the router: none accused on the account
    axis by the change (the agent's users draw no account-axis hit at all, trust or none)."""
    coder = SimParams().agentic_coder.model_copy(update={"accounts": 400})
    events, labels = _router_day(tmp_path, agentic_coder=coder)
    coders = sorted(a for a, i in labels.items() if i["persona"] == "agentic_coder")
    assert len(coders) >= 30
    path = _rehomed(events, coders, tmp_path / "rehomed.parquet")
    found = named(path, tmp_path / "rehomed.jsonl")
    honest = {a for a, i in labels.items() if i["persona"].startswith("router_") or a in coders}
    assert not accused(found) & honest
