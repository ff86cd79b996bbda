"""The room test's memo along a pass's walk (issue 13, round 13): the same rooms as testing every template.

``room.RoomMemo`` skips, at a tick, the templates that failed the venue test's network part at an
earlier tick of the walk and must fail again: none of their holders changed, or (ruled out by
``room.sample_test``) too few changed to lift the sample's bound. Each call of ``room_templates`` in
real replays is checked against the same call without the memo, on a workshop day (rooms found) and a
day of the default campaigns (proxy pools), and the walks must both skip templates (some of them with
changed holders, on the bound) and test templates, so neither side is vacuous.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from test_room_account import ROOT, SCALE, SEED, _params

from detector.app import build_engine
from detector.detect import room
from detector.detect.room_memo import RoomMemo
from detector.evidence_settings import EvidenceSettings
from detector.lab.simulate import simulate
from detector.runtime.replay import replay


def _checked_replay(events: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Replay ``events`` with every ``room_templates`` call compared against the call without memo."""
    templates = room.room_templates
    memos: list[RoomMemo] = []
    seen = {"calls": 0, "rooms": 0}

    def both(
        keys: pl.DataFrame, accounts: pl.DataFrame, s: EvidenceSettings, *args: object, memo: RoomMemo
    ) -> pl.DataFrame:
        want = templates(keys, accounts, s, *args)  # type: ignore[arg-type]
        got = templates(keys, accounts, s, *args, memo=memo)  # type: ignore[arg-type]
        assert sorted(got.iter_rows()) == sorted(want.iter_rows())
        if memo not in memos:
            memos.append(memo)
        seen["calls"] += 1
        seen["rooms"] += got.height
        return got

    monkeypatch.setattr(room, "room_templates", both)
    replay([events], build_engine(ROOT / "rules"), out)
    for name in ("skipped", "bounded", "computed"):
        seen[name] = sum(getattr(m, name) for m in memos)
    seen["walks"] = len(memos)
    return seen


def test_memo_rooms_are_every_templates_test_on_a_workshop_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 3's workshop (tests/test_room_account.py): its template is a room at some ticks."""
    simulate(tmp_path, 1.0, SEED, scale=SCALE, params=_params())
    seen = _checked_replay(tmp_path / "events.parquet", tmp_path / "alerts.jsonl", monkeypatch)
    assert seen["calls"] >= 10 and seen["rooms"] > 0, seen
    assert seen["skipped"] > 0 and seen["computed"] > 0, seen


def test_memo_rooms_are_every_templates_test_among_proxy_pools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day of the default campaigns: farms' templates behind proxy pools fail at tick after tick."""
    simulate(tmp_path, 0.5, 7, scale=0.2)
    seen = _checked_replay(tmp_path / "events.parquet", tmp_path / "alerts.jsonl", monkeypatch)
    assert seen["calls"] >= 10, seen
    assert seen["skipped"] > 0 and seen["bounded"] > 0 and seen["computed"] > 0, seen
