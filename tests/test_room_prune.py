"""The room test's pruning (issue 13): the same rooms as the full venue test, for less work.

``room.may_pass`` drops, before ``venues`` and ``client_inside``, the templates whose holders' second
most held prefix already exceeds ``colocated_second_share`` on a sample of them (a proxy pool), and
``room.network_part`` drops, before ``client_inside``, those that fail the venue test's network shares
(round 13). Each call of ``room_templates`` in a replay is checked against the same call with nothing
dropped by ``may_pass``, and against the test as it was before either cut (``_every_template``: venues
and client builds for every room-sized template): on a workshop day (rooms found, client builds
counted) and on a day of the default campaigns (pools dropped), so neither check is vacuous.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from test_room_account import ROOT, SCALE, SEED, _params

from detector.app import build_engine
from detector.detect import room
from detector.detect.coordination import colocated
from detector.evidence_settings import EvidenceSettings
from detector.lab.simulate import simulate
from detector.runtime.replay import replay
from detector.window.features import client_inside, venues


def _keep_all(
    keys: pl.DataFrame, members: pl.DataFrame, sub: pl.DataFrame, s: EvidenceSettings
) -> pl.DataFrame:
    return members.select("cluster_id").unique()


def _every_template(
    keys: pl.DataFrame,
    accounts: pl.DataFrame,
    s: EvidenceSettings,
    min_overlap: float,
    wanted: pl.Series,
    subaccounts: Callable[[], pl.DataFrame],
    seen: dict[str, int],
) -> pl.DataFrame:
    """The room test before both cuts (as at 466a396): venues and client builds of every room-sized
    template; ``seen`` counts the templates that fail and pass the network part."""
    fam = pl.col("family")
    tk = keys.filter(fam == "template").select("account_id", pl.col("key").alias("cluster_id"))
    tk = tk.filter(pl.col("cluster_id").is_in(wanted.implode()))
    big = tk.group_by("cluster_id").agg(pl.col("account_id").n_unique().alias("_n"))
    members = tk.join(big.filter(pl.col("_n") >= s.room_min_accounts).select("cluster_id"), on="cluster_id")
    v = venues(keys.filter(fam == "ip"), members, subaccounts())
    passed = room.network_part(v, s).height
    seen["network_failed"] += members["cluster_id"].n_unique() - passed
    seen["network_passed"] += passed
    return (
        v.join(client_inside(keys.filter(fam == "client"), members), on="cluster_id", how="left")
        .filter(colocated(s))
        .select(pl.col("cluster_id").alias("template"), pl.col("venue_key").alias("venue"))
    )


def _checked_replay(events: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Replay ``events`` with every ``room_templates`` call compared against the unpruned one."""
    fast, prune = room.room_templates, room.may_pass
    seen = {"calls": 0, "rooms": 0, "dropped": 0, "network_failed": 0, "network_passed": 0}

    def dropped(
        keys: pl.DataFrame, members: pl.DataFrame, sub: pl.DataFrame, s: EvidenceSettings
    ) -> pl.DataFrame:
        kept = prune(keys, members, sub, s)
        seen["dropped"] += members["cluster_id"].n_unique() - kept.height
        return kept

    def both(keys: pl.DataFrame, accounts: pl.DataFrame, s: EvidenceSettings, *args: object) -> pl.DataFrame:
        monkeypatch.setattr(room, "may_pass", _keep_all)
        want = fast(keys, accounts, s, *args)  # type: ignore[arg-type]
        monkeypatch.setattr(room, "may_pass", dropped)
        got = fast(keys, accounts, s, *args)  # type: ignore[arg-type]
        assert sorted(got.iter_rows()) == sorted(want.iter_rows())
        before = _every_template(keys, accounts, s, *args, seen=seen)  # type: ignore[arg-type,misc]
        assert sorted(got.iter_rows()) == sorted(before.iter_rows())
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
    assert seen["calls"] >= 10 and seen["rooms"] > 0 and seen["network_passed"] > 0, seen


def test_pruned_rooms_are_the_full_tests_among_proxy_pools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day of the default campaigns: farms' templates behind proxy pools are dropped by the sample."""
    simulate(tmp_path, 0.5, 7, scale=0.2)
    seen = _checked_replay(tmp_path / "events.parquet", tmp_path / "alerts.jsonl", monkeypatch)
    assert seen["calls"] >= 10 and seen["dropped"] > 0 and seen["network_failed"] > 0, seen
