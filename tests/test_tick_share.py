"""Work shared between the walks of one pass (issue 13): the same tables as each walk built alone.

- The room and seat tests read one ``tenant_subaccounts`` per tick (``RoomContext.subaccounts``):
  every call of a replay is checked against the sub-accounts built afresh from the key table it was
  given, on a router team's day (a tenant with sub-accounts, so the tables compared are not empty), and
  both cases occur: a tick's first call, and a later call served from it.
- The engine's walk over the cluster ticks takes up the key tables the room walk merged at those ticks
  (``KeyTimeline``'s ``keep``): every table the engine's walk reads is checked against the table a
  timeline of its own merges for the same tick, on a day of the default campaigns, and both cases
  occur: tables handed over and tables the engine's walk merged itself (ticks the room did not walk).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from test_team_seat import ROOT, team_day  # noqa: F401 - the fixture

from detector.app import build_engine
from detector.detect.room import RoomContext
from detector.lab.simulate import simulate
from detector.runtime.replay import replay
from detector.window.asof import KeyTimeline
from detector.window.link import tenant_subaccounts


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(frame.columns)


def test_one_tenant_table_per_tick_is_each_tests_own(
    team_day: tuple[Path, list[str], list[str]],  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events, _, _ = team_day
    shared = RoomContext.subaccounts
    seen = {"first": 0, "again": 0, "subaccounts": 0}

    def checked(ctx: RoomContext, tick: datetime, keys: pl.DataFrame) -> pl.DataFrame:
        seen["again" if tick in ctx._subs else "first"] += 1
        got = shared(ctx, tick, keys)
        reseller = keys.filter(pl.col("family") == "reseller")
        want = tenant_subaccounts(reseller, ctx.accounts, ctx.min_overlap)
        assert _sorted(got).equals(_sorted(want))
        seen["subaccounts"] += got.height
        return got

    monkeypatch.setattr(RoomContext, "subaccounts", checked)
    replay([events], build_engine(ROOT / "rules"), tmp_path / "alerts.jsonl")
    assert seen["first"] >= 5 and seen["again"] >= 5 and seen["subaccounts"] > 0, seen


def test_the_cluster_walks_tables_are_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    simulate(tmp_path, 0.5, 7, scale=0.2)
    walk = KeyTimeline.at
    seen = {"handed": 0, "merged": 0}

    def checked(timeline: KeyTimeline, now: datetime, since: datetime | None) -> pl.DataFrame:
        handed = now in timeline._kept
        got = walk(timeline, now, since)
        if timeline._keep is None or timeline._leads or timeline._at != now:
            return got  # the room's walk, or a tick past the log (the table after the batch)
        seen["handed" if handed else "merged"] += 1
        alone = KeyTimeline(lambda: timeline.before, timeline.log, lambda: timeline.after)
        assert _sorted(got).equals(_sorted(walk(alone, now, since)))
        return got

    monkeypatch.setattr(KeyTimeline, "at", checked)
    replay([tmp_path / "events.parquet"], build_engine(ROOT / "rules"), tmp_path / "alerts.jsonl")
    assert seen["handed"] >= 5 and seen["merged"] >= 1, seen
