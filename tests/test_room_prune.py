"""The room test's pruning (issue 13): the same rooms as the full venue test, for less work.

``room.may_pass`` drops, before ``venues`` and ``client_inside``, the templates whose holders' second
most held prefix already exceeds ``colocated_second_share`` on a sample of them (a proxy pool). Each
call of ``room_templates`` in a replay is checked against the same call with nothing dropped: on a
workshop day (rooms found) and on a day of the default campaigns (pools dropped), so neither check is
vacuous.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from test_room_account import ROOT, SCALE, SEED, _params

from detector.app import build_engine
from detector.detect import room
from detector.evidence_settings import EvidenceSettings
from detector.lab.simulate import simulate
from detector.runtime.replay import replay


def _keep_all(
    keys: pl.DataFrame, members: pl.DataFrame, sub: pl.DataFrame, s: EvidenceSettings
) -> pl.DataFrame:
    return members.select("cluster_id").unique()


def _checked_replay(events: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Replay ``events`` with every ``room_templates`` call compared against the unpruned one."""
    fast, prune = room.room_templates, room.may_pass
    seen = {"calls": 0, "rooms": 0, "dropped": 0}

    def dropped(
        keys: pl.DataFrame, members: pl.DataFrame, sub: pl.DataFrame, s: EvidenceSettings
    ) -> pl.DataFrame:
        kept = prune(keys, members, sub, s)
        seen["dropped"] += members["cluster_id"].n_unique() - kept.height
        return kept

    def both(
        keys: pl.DataFrame, accounts: pl.DataFrame, s: EvidenceSettings, *args: object, **memo: object
    ) -> pl.DataFrame:
        """``may_pass`` alone, without the walk's memo (tests/test_room_memo.py checks that)."""
        monkeypatch.setattr(room, "may_pass", _keep_all)
        want = fast(keys, accounts, s, *args)  # type: ignore[arg-type]
        monkeypatch.setattr(room, "may_pass", dropped)
        got = fast(keys, accounts, s, *args)  # type: ignore[arg-type]
        assert sorted(got.iter_rows()) == sorted(want.iter_rows())
        seen["calls"] += 1
        seen["rooms"] += got.height
        return got

    monkeypatch.setattr(room, "room_templates", both)
    replay([events], build_engine(ROOT / "rules"), out)
    return seen


def test_pruned_rooms_are_the_full_tests_on_a_workshop_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 3's workshop (tests/test_room_account.py): its template is a room at some ticks."""
    simulate(tmp_path, 1.0, SEED, scale=SCALE, params=_params())
    seen = _checked_replay(tmp_path / "events.parquet", tmp_path / "alerts.jsonl", monkeypatch)
    assert seen["calls"] >= 10 and seen["rooms"] > 0, seen


def test_pruned_rooms_are_the_full_tests_among_proxy_pools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day of the default campaigns: farms' templates behind proxy pools are dropped by the sample."""
    simulate(tmp_path, 0.5, 7, scale=0.2)
    seen = _checked_replay(tmp_path / "events.parquet", tmp_path / "alerts.jsonl", monkeypatch)
    assert seen["calls"] >= 10 and seen["dropped"] > 0, seen
