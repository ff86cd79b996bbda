"""Issue 17, round 6: a hackathon participant is not accused alone for the tutorial's exercises.

A reasoning workshop's participants each send a handful of the tutorial's numbered-step exercises (a
thinking budget, 16k ``max_tokens``) behind the venue's NAT; the account axis alone saw a fresh account
harvesting reasoning (``account_reasoning_harvest``, or the account model voting alone) and accused
them one by one. The room (``detect/room.py``) explains those requests: the template is held by the
cohort behind one venue prefix on popular clients. Seed 3 below is such a workshop: without the room
on the account axis ten of its thirty participants are accused at medium; with it, none. The same
participants' traffic without the rest of the room (three accounts sharing a step-by-step template)
is no room, and stays accused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import polars as pl

from detector.app import build_engine
from detector.contracts import SEVERITY_RANK
from detector.evidence_settings import EvidenceSettings
from detector.lab.simulate import FAMILIES, SimParams, simulate
from detector.runtime.replay import replay
from detector.settings import EngineSettings

ROOT = Path(__file__).resolve().parents[1]
SCALE = 0.1
SEED = 3
COHORT = 30


def _params() -> SimParams:
    base = SimParams()
    update: dict[str, Any] = {f: getattr(base, f).model_copy(update={"campaigns": 0}) for f in FAMILIES}
    update["hackathon_cohort"] = base.hackathon_cohort.model_copy(update={"accounts": round(COHORT / SCALE)})
    return base.model_copy(update=update)


def _accused(events: Path, out: Path, settings: EngineSettings | None = None) -> set[str]:
    """Accounts named by an account alert at medium or above."""
    replay([events], build_engine(ROOT / "rules", settings=settings), out)
    named: set[str] = set()
    for line in out.read_bytes().splitlines():
        alert = orjson.loads(line)
        if alert["kind"] == "account" and SEVERITY_RANK[alert["severity"]] >= SEVERITY_RANK["medium"]:
            named |= set(alert["account_ids"])
    return named


def test_a_workshops_exercises_are_the_rooms_not_each_participants_harvest(tmp_path: Path) -> None:
    simulate(tmp_path, 1.0, SEED, scale=SCALE, params=_params())
    events = tmp_path / "events.parquet"
    labels = orjson.loads((tmp_path / "labels.json").read_bytes())["accounts"]
    cohort = {a for a, v in labels.items() if v.get("persona") == "hackathon_cohort"}
    assert len(cohort) == COHORT

    # the room off on the account axis (no template is ever a room's): participants accused one by one
    no_room = EngineSettings().model_copy(update={"evidence": EvidenceSettings(room_min_accounts=10**6)})
    alone = _accused(events, tmp_path / "no_room.jsonl", no_room) & cohort
    assert len(alone) >= 5, "the workshop's exercises look like a harvest to the account axis alone"

    # with the room: none of the cohort is accused on its own account
    assert not _accused(events, tmp_path / "room.jsonl") & cohort

    # three of them without the rest of the room: a small group sharing a step-by-step template is no
    # room (fewer holders than ``room_min_accounts``), and the account axis keeps accusing them
    three = sorted(alone)[:3]
    dropped = cohort - set(three)
    small = tmp_path / "three.parquet"
    pl.read_parquet(events).filter(~pl.col("account_id").is_in(sorted(dropped))).write_parquet(small)
    assert _accused(small, tmp_path / "three.jsonl") & cohort == set(three)
