"""Issue 17, round 12: an agent course's shared session openers are not a harvest of trajectories.

Small built frames: the opener table keeps, per (account, bucket), the smallest text among tool-heavy
requests that open a session, with the bucket's tool-heavy turns, openers and the smallest's sends, in
any order; a cluster whose agents open short loops with a sheet's few shared tasks, once each, does not
count "agentic transcripts" (a farm opening each session with its own task, one re-opening a few shared
tasks many times, long loops or a harvest's volume still count); the state keeps the table through a
checkpoint and loads an older checkpoint without it. Then one simulated agent course, replayed: no
participant at high (on main the course went high on "agentic transcripts"), a short-session agentic
farm beside it still named at high.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from detector.detect.evidence import agentic_transcripts, extraction_checks
from detector.detect.openers import opener_note
from detector.evidence_settings import EvidenceSettings
from detector.window.openers import (
    OPENER_STORE,
    cluster_openers,
    merge_openers,
    opener_rows,
    with_openers,
)
from detector.window.state import WindowState

T0 = datetime(2026, 3, 2, tzinfo=UTC)
S = EvidenceSettings()
ROOT = Path(__file__).resolve().parents[1]


def _events(rows: list[tuple[str, int, int | None, int | None, bool]]) -> pl.DataFrame:
    """(account, minute, text_fp, prompt_turns, tool-heavy) -> enriched-event columns the table reads."""
    return pl.DataFrame(
        {
            "account_id": [r[0] for r in rows],
            "bucket": [T0 + timedelta(minutes=r[1] // 15 * 15) for r in rows],
            "text_fp": [r[2] for r in rows],
            "prompt_turns": [r[3] for r in rows],
            "is_tools_heavy": [r[4] for r in rows],
        },
        schema_overrides={"bucket": pl.Datetime("us", "UTC"), "text_fp": pl.UInt64},
    )


def _codes(accounts: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"account_id": accounts, "account_code": list(range(len(accounts)))},
        schema={"account_id": pl.String, "account_code": pl.UInt32},
    )


def test_the_table_keeps_the_smallest_opener_and_every_tool_heavy_turn_in_any_order() -> None:
    ev = _events(
        [
            ("a", 1, 50, 1, True),  # an opener
            ("a", 2, 9, 3, True),  # a later turn: counted, never sampled (the agent's follow-ups repeat)
            ("a", 3, 40, 1, True),  # the bucket's smallest opener
            ("a", 4, 40, 1, True),  # ... sent again
            ("a", 5, 7, None, True),  # turns unknown: opens nothing
            ("a", 6, 1, 1, False),  # not tool-heavy: not in the table
            ("a", 20, 9, 5, True),  # a bucket with later turns only: counted, no sample
            ("b", 1, 60, 0, True),
        ]
    )
    codes = _codes(["a", "b"])
    got = merge_openers(opener_rows(ev, codes))
    assert got.schema == OPENER_STORE
    assert got.select("account_code", "text_fp", "turns", "opens", "sends").rows() == [
        (0, 40, 5, 3, 2),
        (0, None, 1, 0, 0),
        (1, 60, 1, 1, 1),
    ]
    # any order, any slicing: the same rows once merged
    for order in (ev.reverse(), ev.sample(fraction=1.0, shuffle=True, seed=3)):
        parts = [opener_rows(order.slice(i, 3), codes) for i in range(0, order.height, 3)]
        assert_frame_equal(merge_openers(pl.concat(parts)), got)
    # a frame without turns or text hashes (an older enrichment) gives no rows, not an error
    assert opener_rows(ev.drop("prompt_turns"), codes).height == 0


def _table(openers: dict[str, list[int]], loop: int = 3, sends: int = 1) -> pl.DataFrame:
    """Reader rows (``OPENER_SCHEMA``): account -> its openers, one bucket each, ``loop`` tool-heavy
    turns an opener, each opener sent ``sends`` times in its bucket."""
    rows = [
        (a, T0 + timedelta(minutes=15 * i), fp, loop * sends, sends, sends)
        for a, fps in openers.items()
        for i, fp in enumerate(fps)
    ]
    return pl.DataFrame(
        rows,
        schema={
            "account_id": pl.String,
            "bucket": pl.Datetime("us", "UTC"),
            "text_fp": pl.UInt64,
            "turns": pl.UInt32,
            "opens": pl.UInt32,
            "sends": pl.UInt32,
        },
        orient="row",
    )


def _members(rows: pl.DataFrame, cluster: str = "c") -> pl.DataFrame:
    return rows.select("account_id").unique().with_columns(pl.lit(cluster).alias("cluster_id"))


def _features(rows: pl.DataFrame) -> dict[str, float]:
    out = cluster_openers(rows, _members(rows), S)
    assert out.height == 1
    return out.drop("cluster_id").row(0, named=True)


def test_a_courses_agents_share_their_openers_and_a_farms_do_not() -> None:
    # twelve participants open the sheet's first three to five tasks, one each; one its own variant
    course = {f"p{i}": [1, 2, 3, *([4, 5] if i % 2 else [])] for i in range(12)}
    course["p0"] = [1, 2, 99]
    got = _features(_table(course))
    assert got["opener_shared_share_24h"] == pytest.approx(47 / 48)  # all but p0's own variant
    assert got["tools_heavy_turns_per_open_24h"] == 3.0
    assert got["tools_heavy_per_agent_24h"] == 48 * 3 / 12
    assert got["opener_sends_per_text_24h"] == 1.0
    assert got["openers_per_agent_24h"] == 48 / 12
    # a farm opens each session with its own task of a bank: nothing shared
    farm = {f"s{i}": [1000 + 10 * i + k for k in range(5)] for i in range(12)}
    assert _features(_table(farm))["opener_shared_share_24h"] == 0.0
    # two seats holding a task is no sheet (at least three, and a fifth of the agents)
    pair = {"s0": [1, 2], "s1": [1, 2], **{f"s{i}": [100 + i] for i in range(2, 12)}}
    assert _features(_table(pair))["opener_shared_share_24h"] == 0.0
    # a cluster with no tool-heavy request has no row; joined, its features read zero
    frame = with_openers(
        pl.DataFrame({"cluster_id": ["x"]}),
        cluster_openers(_table(course), _members(_table(course)), S),
        ["cluster_id"],
    )
    assert frame.drop("cluster_id").row(0) == (0.0, 0.0, 0.0, 0.0, 0.0)


def _cluster(rows: pl.DataFrame) -> pl.DataFrame:
    """A linked cluster's traffic: all tool-heavy (agentic transcripts), nothing else, and its openers."""
    base = pl.DataFrame(
        {
            "cluster_id": ["c"],
            "cot_share_24h": [0.0],
            "coercion_share_24h": [0.0],
            "rubric_share_24h": [0.0],
            "logprob_share_24h": [0.0],
            "thinking_share_24h": [0.0],
            "max_tokens_high_share_24h": [0.0],
            "tools_heavy_share_24h": [1.0],
            "new_model_share_24h": [0.0],
            "requests_per_account_24h": [12.0],
            "active_accounts_24h": [12],
            "sheet_share_24h": [0.0],
            "reasoning_requests_24h": [0],
            "sheet_sends_per_text_24h": [0.0],
        }
    )
    return with_openers(base, cluster_openers(rows, _members(rows), S), ["cluster_id"])


def _signals(frame: pl.DataFrame) -> list[str]:
    checks = extraction_checks(S, "cluster")
    return [n for n, e in checks.items() if frame.select(e.fill_null(False)).item()]


def test_a_clusters_agentic_transcripts_from_a_shared_opener_sheet_are_not_a_harvest() -> None:
    course = {f"p{i}": [1, 2, 3, 4] for i in range(12)}
    assert _signals(_cluster(_table(course))) == []
    # each of a few shared tasks re-opened twice or more (many trajectories of one task): counts
    assert _signals(_cluster(_table(course, sends=2))) == ["agentic transcripts"]
    # long loops on the shared tasks (a farm's sessions): counts
    assert _signals(_cluster(_table(course, loop=20))) == ["agentic transcripts"]
    # the shared tasks re-opened across buckets (24 openers a seat, 8 turns each: 192 turns, but 24
    # sessions, within the sheet's volume since round 13): counts, as each task is opened 6 times a seat
    busy = {f"p{i}": [1, 2, 3, 4] * 6 for i in range(12)}
    assert _features(_table(busy, loop=8))["opener_sends_per_text_24h"] == 6.0
    assert _signals(_cluster(_table(busy, loop=8))) == ["agentic transcripts"]
    # a harvest's volume, in sessions: 61 shared tasks a seat, once each, in loops of one turn: counts
    wide = {f"p{i}": list(range(1, 62)) for i in range(12)}
    assert S.sheet_max_requests_per_account < 61
    assert _signals(_cluster(_table(wide, loop=1))) == ["agentic transcripts"]
    # a farm's own tasks: counts
    farm = {f"s{i}": [1000 + 10 * i + k for k in range(4)] for i in range(12)}
    assert _signals(_cluster(_table(farm))) == ["agentic transcripts"]
    # the account axis never reads the openers (a point has no cluster to share with)
    point = _cluster(_table(course)).drop("cluster_id")
    assert "agentic transcripts" in [
        n for n, e in extraction_checks(S).items() if point.select(e.fill_null(False)).item()
    ]


def test_the_extraction_reason_says_the_openers_explain_the_transcripts() -> None:
    course = _cluster(_table({f"p{i}": [1, 2, 3, 4] for i in range(12)}))
    farm = _cluster(_table({f"s{i}": [1000 + 10 * i + k for k in range(4)] for i in range(12)}))
    agentic = agentic_transcripts(S, "cluster")
    note = opener_note(S, "cluster", agentic).alias("note")
    assert course.select(note).item() == (
        "; agentic transcripts not counted: 100% of its agent sessions open with a shared sheet's tasks"
    )
    assert farm.select(note).item() == ""
    assert course.select(opener_note(S, "account", agentic).alias("note")).item() == ""


def test_a_clusters_openers_are_not_read_in_its_first_hour() -> None:
    """One sampled opener an agent (each at a different task of the sheet, under half of them shared):
    the share cannot tell a course from a bank yet, so the transcripts wait (round 12; on main they
    counted, and the course's first hour went high). What can be read already still counts."""
    # 24 agents, one opener each: 10 on the sheet's first task, the rest on tasks of their own pace
    first = {f"p{i}": [1 if i < 10 else 100 + i] for i in range(24)}
    assert _features(_table(first))["opener_shared_share_24h"] == pytest.approx(10 / 24)
    assert _signals(_cluster(_table(first))) == []
    # a farm's single long session an agent, or a harvest's volume in its first: counts at once
    assert _signals(_cluster(_table(first, loop=20))) == ["agentic transcripts"]
    assert _signals(_cluster(_table(first, loop=8, sends=8))) == ["agentic transcripts"]
    # one opener an agent, every one a task of its own (a bank's): nothing to wait for
    own = {f"s{i}": [1000 + i] for i in range(24)}
    assert _signals(_cluster(_table(own))) == ["agentic transcripts"]
    # two sampled openers an agent, its own tasks: read, and counted
    farm = {f"s{i}": [1000 + 10 * i, 1001 + 10 * i] for i in range(24)}
    assert _signals(_cluster(_table(farm))) == ["agentic transcripts"]
    # nothing sampled (no turns known): nothing to wait for
    unknown = _table(first).with_columns(pl.lit(None, pl.UInt64).alias("text_fp"))
    assert _signals(_cluster(unknown)) == ["agentic transcripts"]
    note = opener_note(S, "cluster", agentic_transcripts(S, "cluster")).alias("note")
    assert _cluster(_table(first)).select(note).item() == (
        "; agentic transcripts not counted yet: 1.0 sampled session openers an agent, too few to tell "
        "a course's tasks from a bank's"
    )


def test_the_opener_table_goes_through_a_checkpoint_and_an_older_one_loads_without_it(
    tmp_path: Path,
) -> None:
    st = WindowState()
    ev = _events([("a", 1, 50, 1, True), ("a", 2, 9, 3, True)])
    st.openers = merge_openers(opener_rows(ev, _codes(["a"])))
    st.save(tmp_path / "now")
    assert_frame_equal(WindowState.load(tmp_path / "now").openers, st.openers)
    WindowState().save(tmp_path / "old")
    (tmp_path / "old" / "openers.parquet").unlink()  # written before round 12
    back = WindowState.load(tmp_path / "old")
    assert back.openers.height == 0 and back.openers.schema == OPENER_STORE


def test_a_sheets_volume_is_counted_in_sessions_not_in_the_turns_of_its_loops() -> None:
    """A course's participant works through 14 exercises, each a loop of 5 tool-heavy turns: 70 turns,
    14 sessions. The sheet's bar is on exercises (``sheet_max_requests_per_account``), and the loop has
    its own (``opener_max_turns``): on main the turns were read against the exercise bar and the course
    went high (round 13, draw 771). A harvest's number of sessions on shared tasks, or long loops, or a
    bank's own tasks at the same volume still count."""
    course = {f"p{i}": list(range(1, 15)) for i in range(12)}
    got = _features(_table(course, loop=5))
    assert got["tools_heavy_per_agent_24h"] == 70.0 > S.sheet_max_requests_per_account
    assert _signals(_cluster(_table(course, loop=5))) == []
    # 70 sessions an agent, each a shared task opened once, in loops of 2 turns: a harvest's volume
    busy = {f"p{i}": list(range(1, 71)) for i in range(12)}
    assert _signals(_cluster(_table(busy, loop=2))) == ["agentic transcripts"]
    # the course's 14 tasks in loops of 12 turns (long loops): counts
    assert _signals(_cluster(_table(course, loop=12))) == ["agentic transcripts"]
    # 14 tasks of a bank's own a seat in loops of 5: counts
    farm = {f"s{i}": [1000 + 100 * i + k for k in range(14)] for i in range(12)}
    assert _signals(_cluster(_table(farm, loop=5))) == ["agentic transcripts"]
