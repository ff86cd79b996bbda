"""Round 15's merge: under ``context_lag`` the seat test reads its teams from the population context.

``detect/context.py`` builds each tick's ``teams`` from every tool key, established groups and groups
of new seats alike, and the seat walk keeps of them the groups of its points' tool keys that are
established or, for the points above medium, any (``SeatWalk.visit``). Without the context the walk
asks ``team_groups`` for exactly those keys (``wanted``, ``new_too``) from the key table a tick before.
The two must name the same teams: the same alerts, byte for byte, on the team day (some seats fresh)
and on the day whose whole team is new (the medium cap).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from test_team_seat import ROOT, _all_new, team_day  # noqa: F401 - the fixture

import detector.engine
from detector.app import build_engine
from detector.detect.context import population_sheets
from detector.evidence_settings import EvidenceSettings
from detector.runtime.replay import replay
from detector.settings import EngineSettings


def _replay(events: Path, out: Path, evidence: EvidenceSettings | None = None) -> bytes:
    settings = EngineSettings().model_copy(
        update={"context_lag": True, "evidence": evidence or EvidenceSettings()}
    )
    replay([events], build_engine(ROOT / "rules", settings=settings), out)
    return out.read_bytes()


def _team_high(alerts: bytes, team: list[str]) -> bool:
    """Some account alert names one of ``team`` at high."""
    rows = (orjson.loads(line) for line in alerts.splitlines())
    return any(
        a["kind"] == "account" and a["severity"] == "high" and set(a["account_ids"]) & set(team) for a in rows
    )


def _without_contexts(*args: Any, **kwargs: Any) -> tuple[Any, None]:
    """The sheet features as the engine reads them, but no contexts for the room and seat tests: they
    read the key table a tick before (``RoomContext.population``) and ask ``team_groups`` themselves."""
    sheets, _ = population_sheets(*args, **kwargs)
    return sheets, None


@pytest.mark.parametrize("day", ["some_fresh", "all_new"])
def test_context_teams_are_the_direct_walks(
    day: str,
    team_day: tuple[Path, list[str], list[str]],  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events, team, _ = team_day
    if day == "all_new":
        events = _all_new(events, team, tmp_path / "new.parquet")
    through = _replay(events, tmp_path / "context.jsonl")
    if day == "some_fresh":
        assert b'"evidence:team"' in through, "the seat test spared nobody: the comparison is vacuous"
    else:  # the cap's reason rides only with a lowered revision: read the severities instead
        off = _replay(events, tmp_path / "off.jsonl", EvidenceSettings(team_min_seats=10**6))
        assert _team_high(off, team) and not _team_high(through, team), "no group of new seats was capped"
    monkeypatch.setattr(detector.engine, "population_sheets", _without_contexts)
    assert _replay(events, tmp_path / "direct.jsonl") == through
