"""Issue 17, round 22: a cluster's shares read within one hash space.

``text_fp`` is the text's hash, or, where the gateway ships only the SimHash, the SimHash: a member whose
gateway ships no text can never share a task with a texted one. Round 21 found an honest course at high
because 9 of its 53 participants were text-free: its opener share read 0.491 against the 0.5 bar
(0.606 among the texted). Here events go through the real enrichment (texts, or the gateway's SimHash of
the same texts), the opener and sheet tables and the cluster readers.

- A course whose share among its texted members is 0.6, with 0 to 15 of its 53 members SimHash-only,
  keeps ``opener_explains`` and ``sheet_explains``; a farm of distinct tasks with the same mix stays
  counted; a course or a farm wholly SimHash-only is read among themselves.
- Property: SimHash-only members added to a cluster with texted members never move its shares.

The stored mark, old checkpoints and account summaries: ``tests/test_hash_space_state.py``. This file
imports only what ``main`` has, so that its failures there are the behaviour's.

On ``main`` (dc4185d) the course loses its explanation where its SimHash-only members are too few to
share among themselves and many enough to take the share under the bar: openers with 9 and 10 (the
holder bar is a fifth of 53 agents), the reasoning sheet with 9 to 15 (a third of 53); its shares read
0.6 only with none (16 course cases: 15 fail on main, 7 of them on the outcome); the property fails;
the farms and the all-SimHash cluster pass on main too (what must not change).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.detect.openers import opener_explains
from detector.detect.sheets import sheet_explains
from detector.enrich.prompt_features import add_prompt_features, simhash64_hex
from detector.evidence_settings import EvidenceSettings
from detector.window.openers import cluster_openers, opener_rows
from detector.window.sheets import cluster_sheets, sheet_rows

T0 = datetime(2026, 3, 2, tzinfo=UTC)
S = EvidenceSettings()
MEMBERS = 53
#: The sheet's three tasks every participant opens, and two of its own: 0.6 of its openers shared.
SHEET = [
    f"Exercise {k}: open the workshop repository, find the failing test and fix the parser" for k in "ABC"
]
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar"


def _own(member: int, task: int) -> str:
    """A member's own task: words no other member's task shares (distinct texts and SimHashes)."""
    words = WORDS.split(" ")
    pick = [words[(member * 7 + task * 3 + i * 5) % len(words)] for i in range(6)]
    return f"Task {member}-{task} of my own project: " + " ".join(pick) + f" module{member}x{task}"


def _tasks(member: int, course: bool) -> list[str]:
    return [*SHEET, _own(member, 0), _own(member, 1)] if course else [_own(member, t) for t in range(5)]


def _events(simhash_only: set[int], course: bool, members: int = MEMBERS) -> pl.DataFrame:
    """Each member opens its five tasks, one a bucket, as tool-heavy agent sessions of three turns, and
    sends the same five texts as reasoning requests; ``simhash_only``: members whose gateway ships only
    the SimHash of each text. Enriched for real (``add_prompt_features``)."""
    rows = []
    for m in range(members):
        for i, text in enumerate(_tasks(m, course)):
            for turn, tools, thinking in ((1, 8, False), (2, 8, False), (3, 8, False), (1, 0, True)):
                body = text if turn == 1 else f"tool output {turn} for session {m}-{i}"
                rows.append(
                    {
                        "account_id": f"m{m:02d}",
                        "bucket": T0 + timedelta(minutes=15 * i),
                        "prompt_text": None if m in simhash_only else body,
                        "prompt_simhash": simhash64_hex(body),
                        "prompt_lang": "en",
                        "prompt_chars": len(body),
                        "tools": tools,
                        "prompt_turns": turn,
                        "is_tools_heavy": tools >= 5,
                        "is_thinking": thinking,
                    }
                )
    frame = pl.DataFrame(rows, schema_overrides={"bucket": pl.Datetime("us", "UTC")})
    return add_prompt_features(frame)


def _features(ev: pl.DataFrame) -> dict[str, float]:
    """The cluster's opener and sheet features, all members one cluster, read at the day's end."""
    accounts = ev["account_id"].unique().sort()
    codes = pl.DataFrame(
        {"account_id": accounts, "account_code": range(accounts.len())},
        schema={"account_id": pl.String, "account_code": pl.UInt32},
    )
    members = codes.select("account_id", pl.lit("c").alias("cluster_id"))

    def named(rows: pl.DataFrame) -> pl.DataFrame:
        return rows.join(codes, on="account_code").drop("account_code")

    opened = cluster_openers(named(opener_rows(ev, codes)), members, S)
    sheets = cluster_sheets(
        named(sheet_rows(ev, codes)), members, T0 + timedelta(days=1), timedelta(days=1), 3, 1 / 3, 0.5
    )
    out = opened.join(sheets, on="cluster_id").with_columns(
        pl.lit(accounts.len()).alias("active_accounts_24h")
    )
    return out.with_columns(opener_explains(S).alias("_openers"), sheet_explains(S).alias("_sheet")).row(
        0, named=True
    )


@pytest.mark.parametrize("k", range(16))
def test_a_course_stays_explained_whatever_share_of_its_members_ships_only_a_simhash(k: int) -> None:
    got = _features(_events(set(range(0, 3 * k, 3)), course=True))
    assert got["_openers"] and got["_sheet"]  # on main: not from 9 (openers: 9 and 10 only)
    # the share is the texted members' (on main: lowered by every SimHash-only member's openers)
    assert got["opener_shared_share_24h"] == pytest.approx(0.6)
    assert got["sheet_share_24h"] == pytest.approx(0.6)
    # volumes still count every member: 5 sessions of 3 turns an agent
    assert got["tools_heavy_per_agent_24h"] == 15.0 and got["tools_heavy_turns_per_open_24h"] == 3.0


@pytest.mark.parametrize("k", [0, 5, 9, 15])
def test_a_farm_of_distinct_tasks_stays_counted_with_the_same_mix(k: int) -> None:
    got = _features(_events(set(range(0, 3 * k, 3)), course=False))
    assert got["opener_shared_share_24h"] == 0.0 and got["sheet_share_24h"] == 0.0
    assert not got["_openers"] and not got["_sheet"]


def test_a_cluster_with_no_text_at_all_is_read_among_its_own_simhashes() -> None:
    everyone = set(range(MEMBERS))
    course = _features(_events(everyone, course=True))
    assert course["opener_shared_share_24h"] == pytest.approx(0.6) and course["_openers"]
    farm = _features(_events(everyone, course=False))  # shipping SimHashes only gains a farm nothing
    assert farm["opener_shared_share_24h"] == 0.0 and not farm["_openers"] and not farm["_sheet"]


def _rows(texted: list[list[int]], simhash: list[list[int]]) -> pl.DataFrame:
    """Reader rows (opener and sheet columns alike): member -> its sampled values, one bucket each."""
    rows = [
        (f"{kind}{m}", T0 + timedelta(minutes=15 * i), fp, sim)
        for kind, sim, members in (("t", False, texted), ("s", True, simhash))
        for m, fps in enumerate(members)
        for i, fp in enumerate(fps)
    ]
    frame = pl.DataFrame(
        rows,
        schema={
            "account_id": pl.String,
            "bucket": pl.Datetime("us", "UTC"),
            "text_fp": pl.UInt64,
            "simhash": pl.Boolean,
        },
        orient="row",
    )
    return frame.with_columns(
        *(
            pl.lit(v, pl.UInt32).alias(c)
            for c, v in (("turns", 3), ("opens", 1), ("sends", 1), ("requests", 1))
        ),
        pl.lit(False).alias("plain"),
    )


def _shares(rows: pl.DataFrame) -> tuple[float, float, float, float]:
    members = rows.select("account_id").unique().with_columns(pl.lit("c").alias("cluster_id"))
    o = cluster_openers(rows, members, S).row(0, named=True)
    s = cluster_sheets(rows, members, T0 + timedelta(days=1), timedelta(days=1), 3, 1 / 3, 0.5).row(
        0, named=True
    )
    return (
        o["opener_shared_share_24h"],
        o["openers_per_agent_24h"],
        s["sheet_share_24h"],
        s["shared_text_share_24h"],
    )


_values = st.lists(st.lists(st.integers(1, 6), min_size=1, max_size=5), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(texted=_values, simhash=_values)
def test_simhash_only_members_never_move_a_texted_clusters_shares(
    texted: list[list[int]], simhash: list[list[int]]
) -> None:
    """Values drawn from a few, so texted members share some; the SimHash-only members' values are the
    same integers (a coincidence across spaces must not count either)."""
    assert _shares(_rows(texted, simhash)) == pytest.approx(_shares(_rows(texted, [])))
