"""Issue 17, round 12: a coordination-only cluster over a shared sheet's traffic is a low lead.

Small built frames. The sheet table samples every text now (``plain`` rows: requests neither reasoning
nor tool-heavy). A course's participants send a sheet's few texts, each held by most of the class; a
farm sweeps a bank whose texts nobody else sends. ``shared_text_share_24h`` pools both samples on the
cluster axis; ``low_yield`` holds where no extraction signal does and most requests are shared texts
within a sheet's volume, and ``require_both_axes`` then keeps the cluster's hits at low.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from detector.detect.evidence import require_both_axes
from detector.detect.sheets import low_yield
from detector.evidence_settings import EvidenceSettings
from detector.schema import UTC_US
from detector.window.sheets import SHEET_STORE, cluster_sheets, merge_sheets, sheet_rows
from detector.window.state import WindowState

T0 = datetime(2026, 3, 2, tzinfo=UTC)
DAY = timedelta(hours=24)
S = EvidenceSettings()
END = T0 + timedelta(hours=12)


def _rows(texts: dict[str, list[int]], plain: bool = True) -> pl.DataFrame:
    """``SHEET_SCHEMA`` rows: each account's texts in order, one bucket each, one send of each."""
    rows = [
        (a, T0 + timedelta(minutes=15 * i), plain, fp, 1, 1)
        for a, fps in texts.items()
        for i, fp in enumerate(fps)
    ]
    schema = {"account_id": pl.String, "bucket": UTC_US, "plain": pl.Boolean, "text_fp": pl.UInt64}
    return pl.DataFrame(rows, schema=schema | {"requests": pl.UInt32, "sends": pl.UInt32}, orient="row")


def _by_cluster(rows: pl.DataFrame, clusters: dict[str, dict[str, list[int]]]) -> dict[str, dict]:
    members = pl.DataFrame(
        [(a, c) for c, texts in clusters.items() for a in texts],
        schema={"account_id": pl.String, "cluster_id": pl.String},
        orient="row",
    )
    got = cluster_sheets(
        rows, members, END, DAY, S.sheet_min_holders, S.sheet_member_share, S.yield_session_member_share
    )
    return {r["cluster_id"]: r for r in got.iter_rows(named=True)}


def test_an_app_courses_plain_texts_are_shared_and_a_sweeps_are_not() -> None:
    course = {f"p{i}": [1, 2, 3, 100 + i] for i in range(6)}  # the app's three exercises, one own text
    farm = {f"s{i}": list(range(1000 + 10 * i, 1010 + 10 * i)) for i in range(6)}  # a bank, nothing shared
    got = _by_cluster(_rows(course | farm), {"c": course, "f": farm})
    assert got["c"]["shared_text_share_24h"] == 0.75
    assert got["c"]["sampled_requests_per_account_24h"] == 4.0
    assert got["f"]["shared_text_share_24h"] == 0.0
    # plain rows are never the reasoning sheet's: no reasoning sampled, no reasoning share
    assert got["c"]["reasoning_requests_24h"] is None and got["c"]["sheet_share_24h"] is None


def test_reasoning_and_plain_samples_pool_and_a_pair_is_no_class() -> None:
    course = {f"p{i}": [1, 2] for i in range(6)}
    rows = pl.concat([_rows(course), _rows({a: [3, 200 + i] for i, a in enumerate(course)}, plain=False)])
    got = _by_cluster(rows, {"c": course})["c"]
    assert got["shared_text_share_24h"] == 0.75  # 1, 2 and 3 shared of 1, 2, 3 and an own text
    assert got["reasoning_requests_24h"] == 12 and got["sheet_share_24h"] == 0.5
    pair = {"a": [1, 2], "b": [1, 2]}  # two holders: below sheet_min_holders
    assert _by_cluster(_rows(pair), {"p": pair})["p"]["shared_text_share_24h"] == 0.0


def _frame(
    share: float, signals: int, per_account: float = 5.0, reasoning: float = 0.0, peak: float = 0.0
) -> pl.DataFrame:
    """A cluster's frame: pooled shared-text share (and ``peak``: its session hour's, round 24), and
    (``reasoning``) its reasoning sheet's share of 30 reasoning requests over 10 members, each text
    sent once."""
    frame = pl.DataFrame(
        {
            "cluster_id": ["k"],
            "extraction_signals": [signals],
            "active_accounts_24h": [10],
            "reasoning_requests_24h": [30 if reasoning else 0],
            "sheet_share_24h": [reasoning],
            "sheet_sends_per_text_24h": [1.0 if reasoning else 0.0],
            "shared_text_share_24h": [share],
            "shared_text_peak_share_24h": [peak],
            "sampled_requests_per_account_24h": [per_account],
            "one_customer_explains": [False],
            "colocated": [False],
        }
    )
    return frame.with_columns(low_yield(S).alias("low_yield"))


def _hits(severity: str) -> pl.DataFrame:
    return pl.DataFrame(
        {"cluster_id": ["k"], "rule_id": ["cluster_coordinated_farm"], "severity": [severity]}
    )


def test_coordination_alone_over_a_shared_sheet_is_a_low_lead() -> None:
    for severity in ("medium", "high"):
        assert require_both_axes(_hits(severity), _frame(0.75, 0), "cluster_id")["severity"].item() == "low"
    # a sweep (nothing shared), any extraction signal, or a harvest's volume a member: unchanged
    assert require_both_axes(_hits("medium"), _frame(0.1, 0), "cluster_id")["severity"].item() == "medium"
    assert require_both_axes(_hits("high"), _frame(0.1, 0), "cluster_id")["severity"].item() == "medium"
    assert require_both_axes(_hits("high"), _frame(0.9, 1), "cluster_id")["severity"].item() == "high"
    many = _frame(0.9, 0, per_account=S.sheet_max_requests_per_account + 1)
    assert require_both_axes(_hits("medium"), many, "cluster_id")["severity"].item() == "medium"
    # a reasoning course by the evening: its own experiments dilute the pooled share, its reasoning
    # is still a sheet's; a sweep's reasoning is not
    evening = _frame(0.3, 0, reasoning=0.8)
    assert require_both_axes(_hits("medium"), evening, "cluster_id")["severity"].item() == "low"
    sweep = _frame(0.3, 0, reasoning=0.1)
    assert require_both_axes(_hits("medium"), sweep, "cluster_id")["severity"].item() == "medium"


def test_a_sheet_table_without_plain_rows_loads_as_the_reasoning_sample(tmp_path: Path) -> None:
    """Before round 12 the table sampled reasoning requests only: its rows load as such."""
    ev = pl.DataFrame(
        {
            "account_id": ["a", "a"],
            "bucket": [T0, T0],
            "text_fp": [50, 50],
            "cot_elicit": [True, True],
            "is_thinking": [False, False],
        },
        schema_overrides={"bucket": UTC_US, "text_fp": pl.UInt64},
    )
    codes = pl.DataFrame(
        {"account_id": ["a"], "account_code": [0]}, schema_overrides={"account_code": pl.UInt32}
    )
    st = WindowState()
    st.sheets = merge_sheets(sheet_rows(ev, codes))
    st.save(tmp_path)
    pl.read_parquet(tmp_path / "sheets.parquet").drop("plain").write_parquet(tmp_path / "sheets.parquet")
    back = WindowState.load(tmp_path)
    assert back.sheets.schema == SHEET_STORE
    assert back.sheets.select("plain", "text_fp", "requests", "sends").rows() == [(False, 50, 2, 2)]


def _timed(texts: dict[str, list[tuple[int, int]]]) -> pl.DataFrame:
    """``SHEET_SCHEMA`` plain rows: each account's (minute of the day, text) pairs, one send each."""
    rows = [(a, T0 + timedelta(minutes=m), True, fp, 1, 1) for a, sent in texts.items() for m, fp in sent]
    schema = {"account_id": pl.String, "bucket": UTC_US, "plain": pl.Boolean, "text_fp": pl.UInt64}
    return pl.DataFrame(rows, schema=schema | {"requests": pl.UInt32, "sends": pl.UInt32}, orient="row")


def _evening(i: int, base: int, start: int = 2, hours: int = 5) -> list[tuple[int, int]]:
    """Participant ``i``'s own texts after the session: one an hour from hour ``start``, none shared."""
    return [(60 * (start + h), base + 10 * i + h) for h in range(hours)]


def test_a_course_diluted_by_its_evening_keeps_its_sessions_hour_and_a_sweep_has_none() -> None:
    """Round 24: a live course's participants work through the sheet together in the session, then send
    their own texts for hours; the day's pool falls under the bar, the session's hour does not."""
    session = [(15 * k, k + 1) for k in range(3)]  # three exercises in the first hour, all six together
    course = {f"p{i}": session + _evening(i, 100) for i in range(6)}
    sweep = {f"s{i}": [(15 * k, 5000 + 10 * i + k) for k in range(3)] + _evening(i, 9000) for i in range(6)}
    # the same sheet, but the class never together: two participants at it an hour, three hours apart
    apart = {
        f"q{i}": [(180 * (i // 2) + 15 * k, k + 1) for k in range(3)] + _evening(i, 700, start=8, hours=4)
        for i in range(6)
    }
    got = _by_cluster(_timed(course | sweep | apart), {"c": course, "f": sweep, "q": apart})
    assert got["c"]["shared_text_share_24h"] == 3 / 8 and got["c"]["shared_text_peak_share_24h"] == 1.0
    assert got["f"]["shared_text_share_24h"] == 0.0 and got["f"]["shared_text_peak_share_24h"] == 0.0
    # the hours with three or more of the six are the evening's (nothing shared); two at a time is no session
    assert got["q"]["shared_text_share_24h"] == 3 / 7 and got["q"]["shared_text_peak_share_24h"] == 0.0
    # the peak reads a bucket's hour: the same rows in any order give the same figure
    again = _by_cluster(_timed(course | sweep | apart).reverse(), {"c": course, "f": sweep, "q": apart})
    assert {k: v["shared_text_peak_share_24h"] for k, v in again.items()} == {"c": 1.0, "f": 0.0, "q": 0.0}
    stricter = cluster_sheets(
        _timed(course),
        pl.DataFrame({"account_id": list(course), "cluster_id": ["c"] * 6}),
        END,
        DAY,
        S.sheet_min_holders,
        S.sheet_member_share,
        session_share=1.0,
    )
    assert stricter["shared_text_peak_share_24h"].item() == 1.0  # all six were together


def test_a_session_hours_sheet_keeps_a_coordinated_course_low_after_its_evening() -> None:
    evening = _frame(0.3, 0, peak=0.9)
    assert require_both_axes(_hits("medium"), evening, "cluster_id")["severity"].item() == "low"
    # no session (the peak under the bar), an extraction signal, or a harvest's volume: accused as before
    for peak, signals, per in ((0.4, 0, 5.0), (0.9, 1, 5.0), (0.9, 0, S.sheet_max_requests_per_account + 1)):
        frame = _frame(0.3, signals, per_account=per, peak=peak)
        assert require_both_axes(_hits("medium"), frame, "cluster_id")["severity"].item() == "medium"


def test_text_free_members_at_the_session_count_as_there() -> None:
    """Round 24 review: the hour's members are counted over every row, not only those in the cluster's
    hash space; six of ten participants whose gateway sends no prompt text (SimHash samples) were at
    the session too, and the four texted ones' sheet is the hour's share."""
    from detector.window.hashspace import SIMHASH

    texted = {f"t{i}": [(15 * k, k + 1) for k in range(3)] + _evening(i, 100) for i in range(4)}
    free = {f"x{i}": [(15 * k, 9_000_000 + 10 * i + k) for k in range(3)] for i in range(6)}
    rows = pl.concat(
        [
            _timed(texted).with_columns(pl.lit(False).alias(SIMHASH)),
            _timed(free).with_columns(pl.lit(True).alias(SIMHASH)),
        ]
    )
    got = _by_cluster(rows, {"c": texted | free})["c"]
    assert got["shared_text_peak_share_24h"] == 1.0  # ten of ten in the first hour; four texted at the sheet


def test_a_token_sheet_hour_is_no_cover_for_a_sweep() -> None:
    """Round 24 review: half a farm's seats sending one shared text in an otherwise quiet hour reads a
    session's share (1.0) but the shared texts are a token of its day: no low yield."""
    sweep = {f"s{i}": [(60 + 30 * k, 10_000 + 100 * i + k) for k in range(20)] for i in range(12)}
    token = {a: [(5, 42), *sent] for a, sent in list(sweep.items())[:6]} | dict(list(sweep.items())[6:])
    got = _by_cluster(_timed(token), {"f": token})["f"]
    assert got["shared_text_peak_share_24h"] == 1.0 and got["shared_text_share_24h"] == 6 / 246
    frame = _frame(got["shared_text_share_24h"], 0, per_account=246 / 12, peak=1.0)
    assert require_both_axes(_hits("medium"), frame, "cluster_id")["severity"].item() == "medium"
    # the same hour with the sheet still a twentieth of the day is the session's reading
    enough = _frame(S.yield_session_day_share, 0, per_account=246 / 12, peak=1.0)
    assert require_both_axes(_hits("medium"), enough, "cluster_id")["severity"].item() == "low"
