"""Issue 17, round 16: an agent course's yield read on its session openers.

Round 12's ``low_yield`` keeps a coordination-only cluster low when its traffic is a shared sheet, but
it reads the text samples that leave tool-heavy turns out, so an agent course (nearly all its traffic
agent sessions) was never read and stayed at medium on ``cluster_coordinated_farm`` and
``cluster_agentic_extraction``. ``opener_yield`` reads the openers the same way: no extraction signal,
most traffic agent sessions, most sampled openers a shared sheet's tasks, each about once an agent, in
short loops, a sheet's sessions an agent. Small built frames; what a farm would change still accuses.
Then one simulated agent course beside a short-session agentic farm, replayed.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from test_openers import _table  # the reader rows of a cluster's openers

from detector.detect.evidence import require_both_axes
from detector.detect.openers import opener_yield, yield_note
from detector.detect.sheets import low_yield
from detector.evidence_settings import EvidenceSettings
from detector.window.openers import cluster_openers, with_openers

S = EvidenceSettings()
ROOT = Path(__file__).resolve().parents[1]


def _cluster(
    openers: dict[str, list[int]], loop: int = 3, sends: int = 1, signals: int = 0, tools: float = 1.0
) -> pl.DataFrame:
    """A coordination-only cluster's frame: its agents' openers (one bucket each, ``loop`` tool-heavy
    turns an opener, each sent ``sends`` times), its extraction signals and tool-heavy share, and
    ``low_yield`` as ``evidence`` sets it."""
    rows = _table(openers, loop, sends)
    members = rows.select("account_id").unique().with_columns(pl.lit("k").alias("cluster_id"))
    base = pl.DataFrame(
        {
            "cluster_id": ["k"],
            "extraction_signals": [signals],
            "tools_heavy_share_24h": [tools],
            "active_accounts_24h": [len(openers)],
            "reasoning_requests_24h": [0],
            "sheet_share_24h": [0.0],
            "sheet_sends_per_text_24h": [0.0],
            "shared_text_share_24h": [0.0],
            "shared_text_peak_share_24h": [0.0],
            "sampled_requests_per_account_24h": [0.5],
            "one_customer_explains": [False],
            "colocated": [False],
        }
    )
    frame = with_openers(base, cluster_openers(rows, members, S), ["cluster_id"])
    return frame.with_columns((low_yield(S) | opener_yield(S)).alias("low_yield"))


def _severity(frame: pl.DataFrame, severity: str = "medium") -> str:
    rule = "cluster_coordinated_farm"
    hits = pl.DataFrame({"cluster_id": ["k"], "rule_id": [rule], "severity": [severity]})
    return str(require_both_axes(hits, frame, "cluster_id")["severity"].item())


COURSE = {f"p{i}": [1, 2, 3, *([4] if i % 3 else [100 + i])] for i in range(12)}


def test_an_agent_courses_coordination_over_a_shared_opener_sheet_is_a_low_lead() -> None:
    course = _cluster(COURSE)
    assert course["opener_shared_share_24h"].item() == 44 / 48
    # before round 16 nothing was read: tool-heavy turns are in no text sample
    assert not course.select(low_yield(S)).item()
    assert _severity(course) == "low" and _severity(course, "high") == "low"
    assert course.select(yield_note(S)).item() == (
        "; coordinated, but its agent sessions open with a shared sheet's tasks (92% of its sampled "
        "openers, each about once an agent, in short loops): low yield"
    )


def test_a_farm_that_differs_from_a_course_in_any_one_way_stays_accused() -> None:
    # its own bank's tasks
    farm = {f"s{i}": [1000 + 10 * i + k for k in range(4)] for i in range(12)}
    assert _severity(_cluster(farm)) == "medium"
    # the shared tasks opened twice or more each (many trajectories of one task)
    assert _severity(_cluster(COURSE, sends=2)) == "medium"
    # long loops on them
    assert _severity(_cluster(COURSE, loop=S.opener_max_turns + 1)) == "medium"
    # a harvest's sessions an agent
    wide = {f"p{i}": list(range(1, int(S.sheet_max_requests_per_account) + 2)) for i in range(12)}
    assert _severity(_cluster(wide, loop=1)) == "medium"
    # any extraction signal (a high stays high)
    assert _severity(_cluster(COURSE, signals=1), "high") == "high"
    # agent sessions a minority of its traffic (the rest unread, a sweep's for all we know)
    assert _severity(_cluster(COURSE, tools=S.yield_shared_share - 0.1)) == "medium"
    # under half its openers shared: not read as a sheet, whatever the count (the first hour waits)
    half = {f"p{i}": [1, 200 + 10 * i, 201 + 10 * i] for i in range(12)}
    assert _cluster(half)["opener_shared_share_24h"].item() < S.sheet_share
    assert _severity(_cluster(half)) == "medium"


def test_a_simulated_agent_course_is_not_accused_and_a_short_session_farm_still_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One simulated day (``test_openers``' agent course of 40 beside a 20-seat agentic farm in 4-turn
    sessions): on main 37 participants were at medium (coordination alone, their openers a sheet's);
    now none is, and every farm seat is still named at high."""
    from detector.app import build_engine
    from detector.lab.simulate import FAMILIES, SimParams, simulate, workshop
    from detector.runtime.replay import replay

    monkeypatch.setattr(workshop, "COURSES", {"agent": 1.0})
    base = SimParams()
    update: dict[str, object] = {f: getattr(base, f).model_copy(update={"campaigns": 0}) for f in FAMILIES}
    update["agentic_pivot"] = base.agentic_pivot.model_copy(
        update={"campaigns": 1, "cluster_size": 20, "requests_per_account_day": 60.0, "session_turns": 4.0}
    )
    update["remote_workshop"] = base.remote_workshop.model_copy(update={"accounts": 40})
    for persona in ("casual", "app_backend", "eval_harness", "bulk_synthetic", "university_nat"):
        update[persona] = getattr(base, persona).model_copy(update={"accounts": 20})
    for persona in ("company_card", "legit_reseller", "agentic_coder"):
        update[persona] = getattr(base, persona).model_copy(update={"accounts": 0})
    simulate(tmp_path, 1.0, 12, scale=1.0, params=base.model_copy(update=update))
    alerts = tmp_path / "alerts.jsonl"
    replay([tmp_path / "events.parquet"], build_engine(ROOT / "rules"), alerts)
    labels = json.loads((tmp_path / "labels.json").read_bytes())["accounts"]
    course = {a for a, v in labels.items() if v["persona"] == "remote_workshop"}
    farm = {a for a, v in labels.items() if v.get("attacker")}
    accused: set[str] = set()
    high: set[str] = set()
    low_yield_notes = transcripts_notes = 0
    for line in alerts.read_text().splitlines():
        a = json.loads(line)
        if a["severity"] != "low":
            accused |= set(a["account_ids"])
        if a["severity"] in ("high", "critical"):
            high |= set(a["account_ids"])
        low_yield_notes += any(
            "agent sessions open with a shared sheet" in (r.get("detail") or "") for r in a["reasons"]
        )
        transcripts_notes += any(
            "agentic transcripts not counted" in (r.get("detail") or "") for r in a["reasons"]
        )
    assert len(course) == 40 and not accused & course
    assert low_yield_notes > 0  # the course was alerted at low, and its reason says why
    assert transcripts_notes > 0  # ... and why its agent loops are not "agentic transcripts" (round 12)
    assert farm and high >= farm
