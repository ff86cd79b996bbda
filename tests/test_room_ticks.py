"""The room test reads every tick of a pass at once (issue 13): the same rows as tick by tick.

``KeyTimeline.at_ticks`` gives some rows of the key table as it stood at many ticks in one pass;
``room.held_rooms`` builds each accused point's room-explained templates from those views, all ticks
at once. Both are checked against the straightforward walk they replace: ``KeyTimeline.at`` at each
tick in order, and ``room_templates`` on the whole table at that tick.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_room_account import ROOT, SCALE, SEED, _params

from detector.app import build_engine
from detector.detect import room
from detector.detect.room import RoomContext, room_templates
from detector.lab.simulate import simulate
from detector.runtime.replay import replay
from detector.settings import EvidenceSettings
from detector.window.asof import KeyTimeline
from detector.window.tables import KEY_SCHEMA, merge_keys

T0 = datetime(2026, 3, 2, tzinfo=UTC)
TICK = timedelta(minutes=15)
KEYS = ["account_id", "family", "key", "last_seen", "uses"]


def _per_tick(points: pl.DataFrame, ctx: RoomContext, s: EvidenceSettings) -> pl.DataFrame:
    """The reference: the whole key table at each tick, walked in order (the engine before issue 13)."""
    walk = ctx.timeline.fresh()
    out = []
    for (tick,), pts in points.sort("tick_end").group_by("tick_end", maintain_order=True):
        since = ctx.since.filter(pl.col("tick_end") == tick)["since"]
        keys = walk.at(tick, since[0] if since.len() else None)
        own = keys.join(pts.select("account_id"), on="account_id", how="semi")
        wanted = own.filter(pl.col("family") == "template")["key"].unique()
        rooms = room_templates(keys, ctx.accounts, s, ctx.min_overlap, wanted)
        held = (
            own.filter(pl.col("family") == "template")
            .select("account_id", pl.col("key").alias("template"))
            .join(rooms, on="template")
            .join(
                own.filter(pl.col("family") == "ip").select("account_id", pl.col("key").alias("venue")),
                on=["account_id", "venue"],
            )
            .select("account_id", pl.col("template").cast(pl.UInt64).alias("template_fp"))
            .unique()
        )
        out.append(held.with_columns(pl.lit(tick).alias("tick_end")))
    return pl.concat(out) if out else pl.DataFrame(schema={"account_id": pl.String})


def _rows(frame: pl.DataFrame) -> list[tuple[object, ...]]:
    return sorted(frame.select(sorted(frame.columns)).iter_rows())


def test_held_rooms_agree_with_the_tick_by_tick_walk_on_a_workshop_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 3's workshop (tests/test_room_account.py): every pass of the replay, the one-pass rooms are
    the per-tick walk's, and some are found (the check is not vacuous)."""
    simulate(tmp_path, 1.0, SEED, scale=SCALE, params=_params())
    fast = room.held_rooms
    seen: list[int] = []

    def both(points: pl.DataFrame, ctx: RoomContext, s: EvidenceSettings) -> pl.DataFrame:
        got = fast(points, ctx, s)
        want = _per_tick(points, ctx, s)
        assert _rows(got) == _rows(want.select(got.columns) if want.height else want)
        seen.append(got.height)
        return got

    monkeypatch.setattr(room, "held_rooms", both)
    replay([tmp_path / "events.parquet"], build_engine(ROOT / "rules"), tmp_path / "alerts.jsonl")
    assert len(seen) >= 2, seen
    assert sum(seen) > 0, seen


def _table(draw: st.DrawFn, accounts: int, keys: int) -> list[tuple[str, str, str, datetime, int]]:
    rows = draw(
        st.lists(
            st.tuples(
                st.integers(0, accounts - 1),
                st.sampled_from(["template", "ip", "client"]),
                st.integers(0, keys - 1),
                st.integers(0, 8 * 60),
                st.integers(1, 5),
            ),
            max_size=30,
            unique_by=lambda r: (r[0], r[1], r[2]),
        )
    )
    return [(f"a{a}", f, f"k{k}", T0 + timedelta(minutes=m), u) for a, f, k, m, u in rows]


@st.composite
def timelines(draw: st.DrawFn) -> tuple[KeyTimeline, list[datetime]]:
    """A batch's timeline: a table before it, uses over four ticks after T0 + 8 h, the merged table after."""
    before = pl.DataFrame(_table(draw, 5, 4), schema=KEY_SCHEMA, orient="row")
    ticks = [T0 + timedelta(hours=8) + i * TICK for i in range(1, 5)]
    log = []
    for tick in ticks:
        for a, f, k, _, u in _table(draw, 5, 4):
            log.append((a, f, k, tick - timedelta(minutes=draw(st.integers(1, 14))), u, tick))
    log_frame = pl.DataFrame(log, schema={**KEY_SCHEMA, "_tick": KEY_SCHEMA["last_seen"]}, orient="row")
    after = merge_keys(before, log_frame.drop("_tick"))
    return KeyTimeline(before, log_frame, after), ticks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    timelines(),
    st.lists(st.integers(0, 10 * 60), min_size=4, max_size=4),
    st.sampled_from(["account_id", "key"]),
)
def test_at_ticks_is_at_each_tick(
    tl: tuple[KeyTimeline, list[datetime]], since_min: list[int], on: str
) -> None:
    """For every tick (with or without a link window), family and account or key: the rows ``at`` holds."""
    timeline, ticks = tl
    since = [None if m >= 9 * 60 else T0 + timedelta(minutes=m) for m in since_min]
    walk = timeline.fresh()
    views = {t: walk.at(t, s) for t, s in zip(ticks, since, strict=True)}
    names = sorted({*timeline.before[on], *timeline.log[on]}) or ["a0"]
    want = pl.DataFrame(
        [(t, s, n) for t, s in zip(ticks, since, strict=True) for n in names],
        schema={"tick_end": KEY_SCHEMA["last_seen"], "since": KEY_SCHEMA["last_seen"], on: pl.String},
        orient="row",
    )
    for family in ("template", "ip", "client"):
        got = timeline.at_ticks(want, family, on)
        for t in ticks:
            mine = got.filter(pl.col("tick_end") == t).select(KEYS)
            theirs = views[t].filter(pl.col("family") == family).select(KEYS)
            assert _rows(mine.with_columns(pl.col("uses").cast(pl.Int64))) == _rows(
                theirs.with_columns(pl.col("uses").cast(pl.Int64))
            )
