"""Issue 17, round 10: a router team's freshly opened seat is not accused alone for its team's tool.

A company's team reaches the model through the router, a sub-account per seat, on an internal tool that
runs on a reasoning model (a thinking budget and near-maximum ``max_tokens`` on every use). A seat
opened days ago has no tenure, so no trust, and the account axis saw a fresh account harvesting
reasoning: on held-out draw 1133 one such seat reached high. The seat test (``detect/seat.py``) knows
the seat as one of a group inside the router that ``tenant_explains`` explains. Seed 2 below is such a
team (15 seats, a reasoning tool); three of its seats are made fresh (opened three days before the
day). Without the seat test two of them are accused at high; with it, none. The same three seats
without the rest of their team (three holders of the tool's system prompt, under ``team_min_seats``)
are no team the cluster axis could judge, and the account axis keeps accusing them.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import polars as pl
import pytest
from router_days import accused, named, opened_at, router_params

from detector.contracts import Severity
from detector.detect.evidence import beyond_a_tool, no_customer_explains
from detector.detect.lone import LoneWalk
from detector.detect.room import EXTRACTION_SHARES, cap_at
from detector.detect.seat import established
from detector.evidence_settings import EvidenceSettings
from detector.lab.simulate import simulate
from detector.lab.simulate.router_agents import AGENT_SYSTEMS
from detector.settings import EngineSettings

ROOT = Path(__file__).resolve().parents[1]
SCALE = 0.1
SEED = 2
#: Three seats opened three days before the simulated day (2026-03-02).
FRESH = pl.lit("2026-02-27T10:00:00.000Z")


@pytest.fixture(scope="module")
def team_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str]]:
    """The day's events with three of the team's seats opened three days before it, the team's seats
    and the fresh ones."""
    out = tmp_path_factory.mktemp("team")
    simulate(out, 1.0, SEED, scale=SCALE, params=router_params())
    events = pl.read_parquet(out / "events.parquet")
    prompt = pl.col("params").struct.field("system_prompt_hash")
    holders = events.filter(prompt.is_not_null()).group_by(prompt).agg(pl.col("account_id").n_unique())
    # the team's tool; not a coding agent's public prompt (its users among the router's, round 20)
    public = pl.col("system_prompt_hash").is_in(AGENT_SYSTEMS)
    tools = holders.filter((pl.col("account_id") >= 5) & ~public)["system_prompt_hash"]
    assert tools.len() == 1, "one team among the router's customers"
    tool = events.filter(prompt == tools[0])
    assert tool["params"].struct.field("thinking").all(), "the team's tool runs on a reasoning model"
    assert (tool["account"].struct.field("tier") == "reseller").all()
    team = sorted(set(tool["account_id"]))
    fresh = team[:3]
    path = opened_at(events, fresh, FRESH, out / "fresh.parquet")
    return path, team, fresh


def test_a_fresh_seat_on_its_teams_reasoning_tool_is_the_teams(
    team_day: tuple[Path, list[str], list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events, team, fresh = team_day
    # the seat test off (no group is ever a team's): fresh seats accused at high on their own account.
    # The lone-seat test (round 17) off too: with no group of new seats anywhere every seat is lone
    off = EngineSettings().model_copy(update={"evidence": EvidenceSettings(team_min_seats=10**6)})
    with monkeypatch.context() as m:
        m.setattr(LoneWalk, "spare", lambda self, hits: hits)
        alone = {a: s for a, s in named(events, tmp_path / "off.jsonl", off).items() if a in team}
    assert accused(alone) and set(accused(alone)) <= set(fresh), alone
    assert "high" in alone.values(), "the shape of held-out draw 1133's router seat"

    # with it: no seat of the team at medium, and the capped alerts say why
    on = tmp_path / "on.jsonl"
    assert not accused(named(events, on)) & set(team)
    details = [
        r["detail"]
        for line in on.read_bytes().splitlines()
        for r in orjson.loads(line)["reasons"]
        if r["name"] == "evidence:team"
    ]
    assert details and all("capped at low" in d for d in details)


def test_three_seats_without_their_team_are_no_team(
    team_day: tuple[Path, list[str], list[str]], tmp_path: Path
) -> None:
    events, team, fresh = team_day
    small = tmp_path / "three.parquet"
    dropped = sorted(set(team) - set(fresh))
    pl.read_parquet(events).filter(~pl.col("account_id").is_in(dropped)).write_parquet(small)
    assert accused(named(small, tmp_path / "three.jsonl")) & set(fresh)


@pytest.mark.parametrize(
    ("shares", "beyond"),
    [
        ({"thinking_share_24h": 1.0, "max_tokens_high_share_24h": 1.0}, False),
        ({"thinking_share_24h": 0.9, "max_tokens_high_share_24h": 0.9, "cot_share_24h": 0.8}, False),
        ({"cot_share_24h": 0.9, "max_tokens_high_share_24h": 0.05}, False),
        ({"cot_share_24h": 0.9, "max_tokens_high_share_24h": 0.9}, True),
        ({"thinking_share_24h": 1.0, "max_tokens_high_share_24h": 1.0, "rubric_share_24h": 0.5}, True),
        ({"thinking_share_24h": 1.0, "max_tokens_high_share_24h": 1.0, "logprob_share_24h": 0.5}, True),
        ({"thinking_share_24h": 1.0, "max_tokens_high_share_24h": 1.0, "coercion_share_24h": 0.4}, True),
        ({"tools_heavy_share_24h": 0.8}, True),
        ({"new_model_share_24h": 0.6}, True),
    ],
    ids=[
        "thinking",
        "thinking+ask",
        "ask",
        "ask+sized",
        "rubric",
        "logprobs",
        "coercion",
        "agentic",
        "pivot",
    ],
)
def test_what_a_tool_needs_on_one_account(shares: dict[str, float], beyond: bool) -> None:
    """The seat's own evidence must be what a tool needs (``evidence.beyond_a_tool`` on the account)."""
    frame = pl.DataFrame([{c: shares.get(c, 0.0) for c in EXTRACTION_SHARES}])
    assert frame.select(beyond_a_tool(EvidenceSettings(), "account")).item() is beyond


def _all_new(events: Path, team: list[str], out: Path) -> Path:
    """``events`` with every seat of the team opened three days before the day."""
    opened = pl.col("account").struct.with_fields(FRESH.alias("created_at"))
    pl.read_parquet(events).with_columns(
        pl.when(pl.col("account_id").is_in(team)).then(opened).otherwise(pl.col("account")).alias("account")
    ).write_parquet(out)
    return out


def test_a_team_of_new_seats_is_no_established_customer(
    team_day: tuple[Path, list[str], list[str]], tmp_path: Path
) -> None:
    """Every seat opened days ago: the farm rules' "new seats" (``team_new_seat_share``), and the seat
    test does not clear the account axis's verdicts (a farm opened inside the router days before use)."""
    events, team, _ = team_day
    new = _all_new(events, team, tmp_path / "new.parquet")
    assert accused(named(new, tmp_path / "new.jsonl")) & set(team)


def test_a_team_of_new_seats_stays_under_high(
    team_day: tuple[Path, list[str], list[str]], tmp_path: Path
) -> None:
    """Round 15 (dev draw 210: a router team that adopted its reasoning tool 25 days before the day, all
    ten seats within the month): the cluster axis accuses such a group at medium at most
    (``tenant_explains`` and ``require_both_axes``), and the account axis, whose evidence on each seat
    is only its team's tool's, put seats at high beside it. Capped at medium: still accused, never high
    (the seat test off, ``team_min_seats`` out of reach, they reach high)."""
    events, team, _ = team_day
    new = _all_new(events, team, tmp_path / "new.parquet")
    off = EngineSettings().model_copy(update={"evidence": EvidenceSettings(team_min_seats=10**6)})
    alone = {a: s for a, s in named(new, tmp_path / "off.jsonl", off).items() if a in team}
    assert "high" in alone.values(), "without the seat test the new seats reach high"
    seen = {a: s for a, s in named(new, tmp_path / "on.jsonl").items() if a in team}
    assert accused(seen) == accused(alone) and "high" not in seen.values(), seen


def test_the_new_seat_bar_is_the_farm_rules() -> None:
    """The farm rules' provenance gate (``no_customer_explains``) spares a group ``tenant_explains``
    explains exactly where the seat test calls it an established customer (``seat.established``): both
    read ``team_new_seat_share``, moved here off its default, and no rule restates the bar."""
    s = EvidenceSettings(team_new_seat_share=0.6)
    shares = [0.0, 0.59, 0.6, 0.61, 1.0]
    n = len(shares)
    frame = pl.DataFrame(
        {
            "new_account_share": shares,
            "tenant_explains": [True] * n,
            "one_customer_explains": [False] * n,
            "colocated": [False] * n,
        }
    )
    spared = frame.select(~no_customer_explains(s)).to_series().to_list()
    assert spared == frame.select(established(s)).to_series().to_list() == [True, True, False, False, False]
    for path in (ROOT / "rules").glob("*.yaml"):
        assert not re.search(r"tenant_explains or new_account_share", path.read_text()), path.name


def test_a_cap_lowers_and_never_raises() -> None:
    """``room.cap_at``: hits on a spared point above the cap come down to it, those below keep theirs,
    other points are untouched, and the spared point gets one reason at low."""
    hits = pl.DataFrame(
        {
            "_point": [1, 1, 1, 2],
            "rule_id": ["a", "b", "c", "a"],
            "severity": ["low", "medium", "high", "high"],
            "score": [0.1, 0.5, 0.9, 0.9],
            "campaign_type": [None, None, None, None],
            "detail": ["", "", "", ""],
            "mode": ["live"] * 4,
        },
        schema_overrides={"campaign_type": pl.String},
    )
    out = cap_at(hits, pl.DataFrame({"_point": [1]}), "team", pl.lit("why"), Severity.MEDIUM)
    got = {(p, r): s for p, r, s in out.select("_point", "rule_id", "severity").iter_rows()}
    assert got == {
        (1, "a"): "low",
        (1, "b"): "medium",
        (1, "c"): "medium",
        (2, "a"): "high",
        (1, "evidence:team"): "low",
    }
