"""The team-seat test's pre-check (issue 13): the same teams as the full test, for less work.

``seat.may_be_team`` drops, before ``cluster_features`` runs, the tool groups that cannot pass
``team_groups``' bar: fewer than ``tenant_group_share`` of their holders a tenant's sub-accounts, or
``team_new_seat_share`` or more of them opened within the month (unless a point above medium holds its
key: round 15's medium cap reads such a group), both read from the account table. Each
call of ``team_groups`` in a replay is checked against the same call with nothing dropped: on a router
team's day (its team found) and on a day of the default campaigns (popular system prompts dropped), so
neither check is vacuous.

The engine walks the seat test's ticks with the room test's (``seat.SeatWalk``: one key table per tick
for both): each pass's result is checked against ``spare_team_seats``, which walks them alone.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from test_team_seat import ROOT, team_day  # noqa: F401 - the fixture

from detector.app import build_engine
from detector.detect import seat
from detector.lab.simulate import simulate
from detector.runtime.replay import replay


def _checked_replay(events: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Replay ``events`` with every ``team_groups`` call compared against the one with nothing dropped."""
    full, prune = seat.team_groups, seat.may_be_team
    seen = {"calls": 0, "teams": 0, "groups": 0, "dropped": 0}

    def keep_all(members: pl.DataFrame, *_: object) -> pl.DataFrame:
        return members.select("cluster_id").unique()

    def counted(members: pl.DataFrame, *args: object) -> pl.DataFrame:
        kept = prune(members, *args)  # type: ignore[arg-type]
        seen["groups"] += members["cluster_id"].n_unique()
        seen["dropped"] += members["cluster_id"].n_unique() - kept.height
        return kept

    def both(*args: object) -> pl.DataFrame:
        monkeypatch.setattr(seat, "may_be_team", keep_all)
        want = full(*args)  # type: ignore[arg-type]
        monkeypatch.setattr(seat, "may_be_team", counted)
        got = full(*args)  # type: ignore[arg-type]
        assert sorted(got.unique().iter_rows()) == sorted(want.unique().iter_rows())
        seen["calls"] += 1
        seen["teams"] += got["tool"].n_unique()
        return got

    monkeypatch.setattr(seat, "team_groups", both)
    replay([events], build_engine(ROOT / "rules"), out)
    return seen


def test_pre_checked_teams_are_the_full_tests_on_a_router_teams_day(
    team_day: tuple[Path, list[str], list[str]],  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The router team of tests/test_team_seat.py with three fresh seats: its tool is a team's."""
    events, _, _ = team_day
    seen = _checked_replay(events, tmp_path / "alerts.jsonl", monkeypatch)
    assert seen["calls"] >= 5 and seen["teams"] > 0, seen


def test_pre_checked_teams_are_the_full_tests_among_campaigns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day of the default campaigns: tool groups of direct customers are dropped before any feature."""
    simulate(tmp_path, 0.5, 7, scale=0.2)
    seen = _checked_replay(tmp_path / "events.parquet", tmp_path / "alerts.jsonl", monkeypatch)
    assert seen["calls"] >= 5 and seen["dropped"] > 0, seen


def test_the_shared_walk_is_the_seat_tests_own_walk(
    team_day: tuple[Path, list[str], list[str]],  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every pass's seats, walked with the room test, are the seats ``spare_team_seats`` finds alone."""
    events, _, _ = team_day
    shared = seat.SeatWalk.spare
    seen = {"passes": 0, "ticks": 0, "seats": 0}

    def both(walk: seat.SeatWalk, hits: pl.DataFrame) -> pl.DataFrame:
        got = shared(walk, hits)
        monkeypatch.setattr(seat.SeatWalk, "spare", shared)
        want = seat.spare_team_seats(hits, walk.frame, walk.ctx, walk.state, walk.s, walk.long)
        monkeypatch.setattr(seat.SeatWalk, "spare", both)
        assert got.sort(got.columns).equals(want.sort(want.columns))
        seen["passes"] += 1
        seen["ticks"] += len(walk.ticks)
        seen["seats"] += got.filter(pl.col("rule_id") == "evidence:team").height
        return got

    monkeypatch.setattr(seat.SeatWalk, "spare", both)
    replay([events], build_engine(ROOT / "rules"), tmp_path / "alerts.jsonl")
    assert seen["passes"] >= 1 and seen["ticks"] >= 5 and seen["seats"] > 0, seen
