"""Issue 17, round 12: a sheet's text is held by a real share of the group it is shared in.

Small built frames. A best-of-k harvest split across seats (each problem sent once from each of k of N
seats, the seats shuffled each round) holds every text by k accounts: by a fixed count of five holders
an exercise sheet. A course's exercises are each held by most of the class. On the cluster axis a text
is the cluster's sheet when at least ``sheet_member_share`` of its members who send reasoning hold it
(and ``sheet_min_holders``), the population aside, so a course's first few participants hold their
sheet before five accounts do; on the account axis the share is of the account's co-holders.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from detector.evidence_settings import EvidenceSettings
from detector.schema import UTC_US
from detector.window.openers import opener_defaults
from detector.window.sheets import account_sheets, cluster_sheets

T0 = datetime(2026, 3, 2, tzinfo=UTC)
DAY = timedelta(hours=24)
S = EvidenceSettings()
END = T0 + timedelta(hours=12)


def _rows(texts: dict[str, list[int]]) -> pl.DataFrame:
    """``SHEET_SCHEMA`` rows: each account's texts in order, one bucket each, one send of each."""
    rows = [
        (a, T0 + timedelta(minutes=15 * i), fp, 1, 1) for a, fps in texts.items() for i, fp in enumerate(fps)
    ]
    schema = {"account_id": pl.String, "bucket": UTC_US, "text_fp": pl.UInt64, "requests": pl.UInt32}
    return pl.DataFrame(rows, schema=schema | {"sends": pl.UInt32}, orient="row")


def _split(seats: int, k: int, rounds: int, first_text: int = 10_000) -> dict[str, list[int]]:
    """Best-of-k split across seats: each round the seats are shuffled into groups of k, a group sends
    one problem, once from each seat (the simulator's ``split_leaders``)."""
    rng = np.random.default_rng(7)
    out: dict[str, list[int]] = {f"s{i}": [] for i in range(seats)}
    text = first_text
    for _ in range(rounds):
        order = rng.permutation(seats)
        for g in range(0, seats, k):
            for i in order[g : g + k]:
                out[f"s{i}"].append(text)
            text += 1
    return out


def _course(n: int, sheet: int = 4) -> dict[str, list[int]]:
    """Each participant works through the sheet's exercises (texts 1..sheet) and one own variant."""
    return {f"p{i}": [*range(1, sheet + 1), 100 + i] for i in range(n)}


def _members(texts: dict[str, list[int]], cluster: str) -> pl.DataFrame:
    return pl.DataFrame({"account_id": list(texts), "cluster_id": [cluster] * len(texts)})


def _clusters(rows: pl.DataFrame, members: pl.DataFrame) -> dict[str, dict[str, float]]:
    got = cluster_sheets(
        rows, members, END, DAY, S.sheet_min_holders, S.sheet_member_share, S.yield_session_member_share
    )
    return {r["cluster_id"]: r for r in got.iter_rows(named=True)}


def test_a_split_best_of_k_farm_holds_no_sheet_on_the_cluster_axis_and_a_course_does() -> None:
    farm, course = _split(18, 5, 10), _course(30)
    rows = _rows(farm | course)
    got = _clusters(rows, pl.concat([_members(farm, "farm"), _members(course, "course")]))
    # every problem held by 5 of 18 seats (three by 3): below a third of the cluster, no sheet (main's
    # fixed bar of five accounts read it 0.83: 50 of its 60 texts each held by five accounts)
    assert got["farm"]["sheet_share_24h"] == 0.0
    assert got["farm"]["reasoning_requests_24h"] == 180
    assert got["course"]["sheet_share_24h"] == 0.8  # four exercises of five texts each
    # the same problems split over 5 of 9 seats are held by more than a third: the bar is a share
    small = _split(9, 5, 10)
    assert _clusters(_rows(small), _members(small, "farm"))["farm"]["sheet_share_24h"] > 0.5


def test_a_courses_first_participants_hold_their_sheet_before_five_accounts_do() -> None:
    """Round 11's first hour: a course cluster of four participants reads its sheet (main's bar of five
    holders read none, and the cluster went high on reasoning the sheet explains)."""
    first = _course(4)
    got = _clusters(_rows(first), _members(first, "course"))
    assert got["course"]["sheet_share_24h"] == 0.8
    # a pair is no class (``sheet_min_holders``)
    pair = _course(2)
    assert _clusters(_rows(pair), _members(pair, "course"))["course"]["sheet_share_24h"] == 0.0


def test_the_account_axis_reads_a_split_seats_texts_against_its_co_holders() -> None:
    farm, course = _split(21, 5, 20), _course(12)
    rows = _rows(farm | course)
    points = pl.DataFrame(
        {"account_id": ["s0", "p0"], "tick_end": [END, END]}, schema_overrides={"tick_end": UTC_US}
    )
    got = {
        r["account_id"]: r
        for r in account_sheets(rows, points, DAY, S.sheet_min_accounts, S.sheet_member_share).iter_rows(
            named=True
        )
    }
    # the seat's problems are each held by five accounts, but it shares texts with all of the farm's 21
    assert got["s0"]["sheet_share_24h"] < 0.2
    assert got["p0"]["sheet_share_24h"] == 0.8
    # a farm of five seats sending every problem from each is a class of five by its texts (the limit:
    # the volume per seat and the cluster's other signals are what read it)
    five = _split(5, 5, 10)
    one = account_sheets(_rows(five), points.with_columns(pl.lit("s0").alias("account_id")), DAY, 5, 1 / 3)
    assert one["sheet_share_24h"].item() == 1.0


def test_a_clusters_reasoning_counts_only_once_its_members_sent_enough_to_read_a_sheet() -> None:
    """Round 11's first hour: a course cluster of 8-17 members at 1.25-1.7 reasoning requests a member
    read 0.3-0.48 of a sheet from one sampled text a bucket, and went high on "reasoning elicited". Below
    ``sheet_read_min_requests`` a member the cluster's reasoning is not counted yet, with a reason; the
    account axis reads its own volume (never "too few")."""
    from detector.detect.evidence import extraction_checks
    from detector.detect.sheets import sheet_explains, sheet_note

    def cluster(per_member: float, share: float = 0.3) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "cot_share_24h": [1.0],
                "coercion_share_24h": [0.0],
                "rubric_share_24h": [0.0],
                "logprob_share_24h": [0.0],
                "thinking_share_24h": [1.0],
                "max_tokens_high_share_24h": [1.0],
                "tools_heavy_share_24h": [0.0],
                "new_model_share_24h": [0.0],
                "requests_per_account_24h": [per_member],
                "active_accounts_24h": [8],
                "sheet_share_24h": [share],
                "reasoning_requests_24h": [round(per_member * 8)],
                "sheet_sends_per_text_24h": [1.0],
            }
        )

    def signals(frame: pl.DataFrame) -> list[str]:
        checks = extraction_checks(S, "cluster")
        frame = opener_defaults(frame)  # no tool-heavy opener sampled (``window.openers``, round 12)
        return [n for n, e in checks.items() if frame.select(e.fill_null(False)).item()]

    assert signals(cluster(1.25)) == []  # 10 requests of 8 members: not read yet
    note = cluster(1.25).select(sheet_note(S, "cluster", pl.lit(True))).item()
    assert "not counted yet: 1.2 reasoning requests a member" in note
    both = ["reasoning elicited", "reasoning via parameters"]
    assert signals(cluster(S.sheet_read_min_requests)) == both  # read: no sheet, it counts
    assert signals(cluster(12.0)) == both
    # no reasoning text sampled at all (a gateway that sends no prompt text): nothing to wait for
    assert signals(cluster(0.0, share=0.0)) == both
    # the account axis form reads no "too few": its own volume is what it has
    point = cluster(1.0).drop("active_accounts_24h")
    assert not point.select(sheet_explains(S, "")).item()
