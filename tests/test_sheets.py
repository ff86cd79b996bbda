"""Issue 17, round 10: a course's exercise sheet is not a sweep through a problem bank.

Small built frames: the sheet table keeps one text per (account, bucket), the smallest, in any order;
a text many accounts send is a sheet's; a cluster whose reasoning is mostly a sheet does not count
"reasoning elicited" / "reasoning via parameters" (coercion still counts, and a sheet at a harvest's
volume, or each of its texts sent many times by an account, is no sheet); an accused account point
whose reasoning is a sheet, and nothing else, is capped at low with an ``evidence:sheet`` reason.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from detector.detect.evidence import extraction_checks
from detector.detect.room import spare_sheets
from detector.evidence_settings import EvidenceSettings
from detector.schema import UTC_US
from detector.window.openers import opener_defaults
from detector.window.sheets import SHEET_STORE, account_sheets, cluster_sheets, merge_sheets, sheet_rows
from detector.window.state import WindowState

T0 = datetime(2026, 3, 2, tzinfo=UTC)
DAY = timedelta(hours=24)
S = EvidenceSettings()


def _events(rows: list[tuple[str, int, int, bool, bool]]) -> pl.DataFrame:
    """(account, minute, text_fp, cot_elicit, is_thinking) -> enriched-event columns the table reads."""
    return pl.DataFrame(
        {
            "account_id": [r[0] for r in rows],
            "bucket": [(T0 + timedelta(minutes=r[1] // 15 * 15)) for r in rows],
            "text_fp": [r[2] for r in rows],
            "cot_elicit": [r[3] for r in rows],
            "is_thinking": [r[4] for r in rows],
            "is_tools_heavy": [r[2] == 8 for r in rows],
        },
        schema_overrides={"bucket": UTC_US, "text_fp": pl.UInt64},
    )


def _codes(accounts: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"account_id": accounts, "account_code": list(range(len(accounts)))},
        schema={"account_id": pl.String, "account_code": pl.UInt32},
    )


def _readable(store: pl.DataFrame, accounts: list[str]) -> pl.DataFrame:
    return store.join(_codes(accounts), on="account_code").drop("account_code")


def test_the_table_keeps_the_smallest_reasoning_text_per_bucket_in_any_order() -> None:
    ev = _events(
        [
            ("a", 1, 50, True, False),
            ("a", 2, 7, False, True),  # a thinking budget is a reasoning request too
            ("a", 3, 3, False, False),  # not a reasoning request: the plain sample's (round 12)
            ("a", 4, 8, True, True),  # an agent's turn (tool-heavy, text 8): never sampled
            ("a", 20, 9, True, False),  # the next bucket
            ("a", 21, 9, True, False),  # its text again (a retry): the sampled text's second send
            ("a", 22, 30, True, False),  # another text: a request, not a send of the sample
            ("a", 14, 7, True, False),  # the first bucket's sampled text, sent again
            ("b", 1, 40, False, False),  # no reasoning request: a plain row only
        ]
    )
    codes = _codes(["a", "b"])
    rows = sheet_rows(ev, codes)
    assert rows.schema == SHEET_STORE
    got = merge_sheets(rows)
    reasoning = got.filter(~pl.col("plain"))
    assert reasoning["text_fp"].to_list() == [7, 9] and reasoning["requests"].to_list() == [3, 3]
    assert reasoning["sends"].to_list() == [2, 2]
    # the plain sample (round 12): a's one plain request, b's one; never the tool-heavy turn
    plain = got.filter(pl.col("plain"))
    assert plain.select("account_code", "text_fp", "requests", "sends").rows() == [
        (0, 3, 1, 1),
        (1, 40, 1, 1),
    ]
    # split into batches in other orders (a batch whose own smallest text is not the bucket's
    # contributes requests but no sends): the same table
    for cut in range(1, ev.height):
        parts = [sheet_rows(ev.slice(cut), codes), sheet_rows(ev.slice(0, cut), codes)]
        assert_frame_equal(merge_sheets(pl.concat(parts)), got)
    one_by_one = [sheet_rows(ev.slice(i, 1), codes) for i in reversed(range(ev.height))]
    assert_frame_equal(merge_sheets(pl.concat(one_by_one)), got)


def _sheet_table(senders: dict[str, list[int]], sends: int = 1) -> pl.DataFrame:
    """``SHEET_SCHEMA`` rows: each account's texts, one bucket each (two reasoning requests, ``sends``
    of them the sampled text), from T0 on."""
    rows = [
        (a, T0 + timedelta(minutes=15 * i), fp, 2, sends)
        for a, fps in senders.items()
        for i, fp in enumerate(fps)
    ]
    schema = {"account_id": pl.String, "bucket": UTC_US, "text_fp": pl.UInt64, "requests": pl.UInt32}
    return pl.DataFrame(rows, schema=schema | {"sends": pl.UInt32}, orient="row")


def test_a_text_many_accounts_send_is_a_sheets_and_a_sweep_holds_none() -> None:
    course = {f"p{i}": [1, 2, 3, 100 + i] for i in range(6)}  # the sheet's three exercises, one own variant
    sweep = {"farm": list(range(1000, 1020))}  # twenty problems nobody else sends
    rows = _sheet_table(course | sweep)
    end = T0 + timedelta(hours=6)
    points = pl.DataFrame(
        {"account_id": ["p0", "farm"], "tick_end": [end, end]}, schema_overrides={"tick_end": UTC_US}
    )
    got = {
        r["account_id"]: r
        for r in account_sheets(rows, points, DAY, 5, S.sheet_member_share).iter_rows(named=True)
    }
    assert got["p0"]["sheet_share_24h"] == 0.75 and got["p0"]["reasoning_requests_24h"] == 8
    assert got["p0"]["sheet_sends_per_text_24h"] == 1.0  # three sheet texts, each sent once
    assert got["farm"]["sheet_sends_per_text_24h"] == 0.0  # no sheet text: no ratio
    assert got["farm"]["sheet_share_24h"] == 0.0
    # five senders is the bar: with four, the same three texts are no sheet
    four = account_sheets(
        rows.filter(~pl.col("account_id").is_in(["p4", "p5"])), points, DAY, 5, S.sheet_member_share
    )
    assert four.filter(pl.col("account_id") == "p0")["sheet_share_24h"].item() == 0.0
    # a point before the texts were sent sees none of them (the window ends at its tick)
    early = points.with_columns(pl.lit(T0, UTC_US).alias("tick_end"))
    assert account_sheets(rows, early, DAY, 5, S.sheet_member_share).height == 0
    members = pl.DataFrame({"account_id": [*course, "farm"], "cluster_id": ["c"] * 6 + ["f"]})
    clusters = {
        r["cluster_id"]: r
        for r in cluster_sheets(
            rows, members, end, DAY, S.sheet_min_holders, S.sheet_member_share, S.yield_session_member_share
        ).iter_rows(named=True)
    }
    assert clusters["c"]["sheet_share_24h"] == 0.75 and clusters["c"]["reasoning_requests_24h"] == 48
    assert clusters["f"]["sheet_share_24h"] == 0.0


def test_sends_per_shared_text_count_an_accounts_repeats_across_buckets() -> None:
    """A course's participant sends each exercise once, one of them again (a retry in another bucket);
    a farm re-sends each of a few texts that many seats share, to sample many reasoning traces of each
    (best-of-n): by the text test both hold a sheet; by the sends per text only the course does."""
    course = {f"p{i}": [1, 2, 3, 1] for i in range(6)}  # exercise 1 retried in the fourth bucket
    farm = {f"s{i}": [11, 12, 11, 12, 11, 12, 11, 12] for i in range(6)}  # two texts, four times each
    rows = pl.concat([_sheet_table(course), _sheet_table(farm, sends=2)])
    end = T0 + timedelta(hours=6)
    points = pl.DataFrame(
        {"account_id": ["p0", "s0"], "tick_end": [end, end]}, schema_overrides={"tick_end": UTC_US}
    )
    got = {
        r["account_id"]: r
        for r in account_sheets(rows, points, DAY, 5, S.sheet_member_share).iter_rows(named=True)
    }
    assert got["p0"]["sheet_share_24h"] == got["s0"]["sheet_share_24h"] == 1.0
    assert got["p0"]["sheet_sends_per_text_24h"] == 4 / 3  # four sends of three texts
    assert got["s0"]["sheet_sends_per_text_24h"] == 8.0  # 16 sampled sends of 2 texts
    members = pl.DataFrame({"account_id": [*course, *farm], "cluster_id": ["c"] * 6 + ["f"] * 6})
    clusters = {
        r["cluster_id"]: r
        for r in cluster_sheets(
            rows, members, end, DAY, S.sheet_min_holders, S.sheet_member_share, S.yield_session_member_share
        ).iter_rows(named=True)
    }
    assert clusters["c"]["sheet_sends_per_text_24h"] == 4 / 3  # per distinct (member, text)
    assert clusters["f"]["sheet_sends_per_text_24h"] == 8.0


def _cluster(share: float, per_member: float, coercion: float = 0.0, sends: float = 1.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "cot_share_24h": [0.8],
            "coercion_share_24h": [coercion],
            "rubric_share_24h": [0.0],
            "logprob_share_24h": [0.0],
            "thinking_share_24h": [0.6],
            "max_tokens_high_share_24h": [0.6],
            "tools_heavy_share_24h": [0.0],
            "new_model_share_24h": [0.0],
            "requests_per_account_24h": [per_member],
            "active_accounts_24h": [10],
            "sheet_share_24h": [share],
            "reasoning_requests_24h": [int(per_member * 10)],
            "sheet_sends_per_text_24h": [sends],
        }
    )


def _signals(frame: pl.DataFrame) -> list[str]:
    checks = extraction_checks(S, "cluster")
    frame = opener_defaults(frame)  # no tool-heavy opener sampled (``window.openers``, round 12)
    return [n for n, e in checks.items() if frame.select(e.fill_null(False)).item()]


def test_a_clusters_reasoning_from_a_shared_sheet_is_not_harvest() -> None:
    assert _signals(_cluster(0.0, 12)) == ["reasoning elicited", "reasoning via parameters"]
    assert _signals(_cluster(0.9, 12)) == []
    # a sheet at a harvest's volume per member is no course: it counts
    assert _signals(_cluster(0.9, 300)) == ["reasoning elicited", "reasoning via parameters"]
    # coercion counts whatever the texts
    assert _signals(_cluster(0.9, 12, coercion=0.5)) == ["reasoning trace coerced"]
    # each shared text sent about once (a retry now and then) is a course's; two sends a text on
    # average (the bar) or more is many samples of a few problems: it counts
    assert _signals(_cluster(0.9, 12, sends=1.9)) == []
    for sends in (S.sheet_max_sends_per_text, 4.0):
        assert _signals(_cluster(0.9, 12, sends=sends)) == ["reasoning elicited", "reasoning via parameters"]


def _point(
    share: float, reasoning: int, coercion: float = 0.0, cot: float = 0.5, sends: float = 1.0
) -> pl.DataFrame:
    frame = _cluster(share, reasoning, coercion, sends).drop(
        "requests_per_account_24h", "active_accounts_24h"
    )
    return frame.with_columns(
        pl.lit("p").alias("_point"),
        pl.lit(40).alias("requests_24h"),
        pl.lit(cot).alias("cot_share_24h"),
        pl.lit(reasoning).alias("reasoning_requests_24h"),
    )


def _hits() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "_point": ["p"],
            "rule_id": ["account_reasoning_harvest"],
            "severity": ["medium"],
            "score": [1.0],
            "campaign_type": ["chain_of_thought"],
            "detail": ["x"],
            "mode": ["live"],
        }
    )


def test_an_account_whose_reasoning_is_a_sheet_is_capped_at_low_with_a_reason() -> None:
    # 20 of 40 requests elicit reasoning, 90% of them in buckets whose sampled text is a sheet's
    out = spare_sheets(_hits(), _point(0.9, 20), S)
    assert out.filter(pl.col("rule_id") == "account_reasoning_harvest")["severity"].item() == "low"
    reason = out.filter(pl.col("rule_id") == "evidence:sheet")
    assert reason.height == 1 and reason["detail"].item().startswith(
        "sheet: 90% of its 20 reasoning requests"
    )
    # a minority from the sheet, one coerced request in 20, or a harvest's volume: untouched
    # (and a point with no reasoning signal, e.g. a model's vote on output sizes: nothing to explain)
    quiet = _point(0.9, 2, cot=0.05).with_columns(pl.lit(0.0).alias("thinking_share_24h"))
    # and an account that sent each shared text about four times (best-of-n's samples): untouched
    many = _point(0.9, 20, sends=4.0)
    # ... but one exercise sent twice (2 reasoning requests, 2.0 sends per text) is a retry: capped
    retry = spare_sheets(_hits(), _point(1.0, 2, sends=2.0), S)
    assert retry.filter(pl.col("rule_id") == "account_reasoning_harvest")["severity"].item() == "low"
    for frame in (_point(0.4, 20), _point(0.9, 20, coercion=0.05), _point(0.9, 300, cot=0.9), quiet, many):
        assert_frame_equal(spare_sheets(_hits(), frame, S), _hits())


def test_a_checkpoint_without_a_sheet_table_loads_with_an_empty_one(tmp_path: Path) -> None:
    st = WindowState()
    st.save(tmp_path)
    (tmp_path / "sheets.parquet").unlink()  # written before round 10
    back = WindowState.load(tmp_path)
    assert back.sheets.height == 0 and back.sheets.schema == SHEET_STORE


def test_a_round_10_sheet_table_without_sends_loads_each_sample_sent_once(tmp_path: Path) -> None:
    """The first sheet table (round 10, branch workshop2) kept no ``sends``: each sampled text counts
    once, what every such row knew (its rows expire within a day)."""
    st = WindowState()
    two = _events([("a", 1, 50, True, False), ("a", 2, 50, True, False)])
    st.sheets = merge_sheets(sheet_rows(two, _codes(["a"])))
    st.save(tmp_path)
    pl.read_parquet(tmp_path / "sheets.parquet").drop("sends").write_parquet(tmp_path / "sheets.parquet")
    back = WindowState.load(tmp_path)
    assert back.sheets.schema == SHEET_STORE
    assert back.sheets.select("text_fp", "requests", "sends").rows() == [(50, 2, 1)]
