"""Issue 17, round 23: the reasoning sample keeps the two smallest texts a (member, bucket), read on the
cluster axis only.

One text a bucket split a class's holders of its sheet's first exercises (docs/detection.md, "Round 22:
a sheet holder count the sampling cannot dilute, measured"), so the reasoning sample keeps the
``REASONING_KEEP`` smallest texts, each kept row weighing its own sends and the bucket's requests on
texts not kept going to its smallest text's row. Checked here: the table is the same in any order and
slicing (against a plain-Python reference); the account axis (``account_sheets``, ``wide_texts``, the
population context) reads exactly what it read with one text a bucket, on built tables and over a
simulated day through the engine; the cluster axis does read the second text; a checkpoint whose table
holds one row a bucket (as ``main`` writes it) loads, runs on, and its account features are those of a
run that never changed. On ``main`` these fail: no ``REASONING_KEEP`` nor ``one_a_bucket``.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import detector.window.sheets as sheets
from detector.app import build_engine
from detector.checkpoint import load_engine, save_engine
from detector.contracts import Alert, Kind
from detector.engine import Engine, Observers
from detector.schema import UTC_US
from detector.window.sheets import (
    SHEET_SCHEMA,
    SHEET_STORE,
    account_sheets,
    cluster_sheets,
    merge_sheets,
    one_a_bucket,
    sheet_rows,
    wide_texts,
)

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 2, tzinfo=UTC)
DAY = timedelta(hours=24)
ACCOUNTS = ["a", "b", "c"]
#: An event: (account, minute, text_fp, kind); kinds: reasoning asked in the prompt, through a thinking
#: budget, plain, and a tool-heavy turn (never sampled).
KINDS = ("cot", "thinking", "plain", "tools")


def _events(rows: list[tuple[str, int, int, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "account_id": [r[0] for r in rows],
            "bucket": [T0 + timedelta(minutes=r[1] // 15 * 15) for r in rows],
            "text_fp": [r[2] for r in rows],
            "cot_elicit": [r[3] == "cot" for r in rows],
            "is_thinking": [r[3] == "thinking" for r in rows],
            "is_tools_heavy": [r[3] == "tools" for r in rows],
        },
        schema={
            "account_id": pl.String,
            "bucket": UTC_US,
            "text_fp": pl.UInt64,
            "cot_elicit": pl.Boolean,
            "is_thinking": pl.Boolean,
            "is_tools_heavy": pl.Boolean,
        },
    )


def _codes(accounts: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"account_id": accounts, "account_code": list(range(len(accounts)))},
        schema={"account_id": pl.String, "account_code": pl.UInt32},
    )


def _reference(
    rows: list[tuple[str, int, int, str]], keep: int
) -> list[tuple[int, datetime, bool, int, int, int]]:
    """The sample in plain Python: per (account, bucket, kind) the ``keep`` smallest texts of the
    reasoning requests (the plain requests' one), each with its sends as requests, the smallest with
    every request of the bucket on a text not kept too; (code, bucket, plain, text, requests, sends)."""
    groups: dict[tuple[int, datetime, bool], Counter[int]] = {}
    for account, minute, text, kind in rows:
        if kind == "tools":
            continue
        key = (ACCOUNTS.index(account), T0 + timedelta(minutes=minute // 15 * 15), kind == "plain")
        groups.setdefault(key, Counter())[text] += 1
    out = []
    for key, sent in groups.items():
        texts = sorted(sent)[: 1 if key[2] else keep]
        unkept = sum(sent.values()) - sum(sent[t] for t in texts)
        for i, t in enumerate(texts):
            out.append((*key, t, sent[t] + (unkept if i == 0 else 0), sent[t]))
    return sorted(out)


def _table(frame: pl.DataFrame) -> list[tuple[int, datetime, bool, int, int, int]]:
    return sorted(frame.select("account_code", "bucket", "plain", "text_fp", "requests", "sends").rows())


_event = st.tuples(st.sampled_from(ACCOUNTS), st.integers(0, 44), st.integers(1, 6), st.sampled_from(KINDS))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_event, min_size=1, max_size=40), st.randoms(use_true_random=False), st.data())
def test_the_reasoning_sample_keeps_the_two_smallest_texts_in_any_order_and_slicing(
    rows: list[tuple[str, int, int, str]], rnd: object, data: st.DataObject
) -> None:
    """Any events, shuffled and cut into ticks anywhere, merged: the reference's table; a bucket's
    requests add up to its sampled requests; folded to one text a bucket, the reference with one."""
    import random

    assert isinstance(rnd, random.Random)
    codes = _codes(ACCOUNTS)
    whole = merge_sheets(sheet_rows(_events(rows), codes))
    assert whole.schema == SHEET_STORE
    assert _table(whole) == _reference(rows, 2)
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    cuts = sorted(data.draw(st.lists(st.integers(1, max(1, len(rows) - 1)), max_size=5)))
    bounds = [0, *cuts, len(rows)]
    parts = [sheet_rows(_events(shuffled[a:b]), codes) for a, b in itertools.pairwise(bounds) if b > a]
    rnd.shuffle(parts)
    assert_frame_equal(merge_sheets(pl.concat(parts)), whole)
    # merged twice, or merged partly and then with the rest: the same (what ``compact`` does every 8 ticks)
    half = max(1, len(parts) // 2)
    assert_frame_equal(merge_sheets(pl.concat([merge_sheets(pl.concat(parts[:half])), *parts[half:]])), whole)
    sampled = Counter((ACCOUNTS.index(a), m // 15, k == "plain") for a, m, _, k in rows if k != "tools")
    got: Counter[tuple[int, int, bool]] = Counter()
    for code, bucket, plain, _, requests, _ in _table(whole):
        got[(code, (bucket - T0) // timedelta(minutes=15), plain)] += requests
    assert got == sampled
    named = whole.join(codes, on="account_code").select(SHEET_SCHEMA.keys())
    folded = one_a_bucket(named).join(codes, on="account_id")
    assert _table(folded) == _reference(rows, 1)
    # unmerged parts fold to the same one row a bucket
    raw = pl.concat(parts).join(codes, on="account_code").select(SHEET_SCHEMA.keys())
    assert _table(one_a_bucket(raw).join(codes, on="account_id")) == _reference(rows, 1)


def test_a_bucket_with_three_texts_keeps_two_and_weighs_the_third_on_the_smallest() -> None:
    ev = _events(
        [
            ("a", 1, 50, "cot"),
            ("a", 2, 7, "thinking"),
            ("a", 3, 7, "cot"),  # the smallest text sent twice
            ("a", 4, 30, "cot"),  # the second smallest: kept, its own request
            ("a", 5, 3, "plain"),
            ("a", 6, 2, "plain"),  # the plain sample keeps one text, as before
            ("a", 7, 1, "tools"),  # a tool-heavy turn: never sampled
        ]
    )
    got = merge_sheets(sheet_rows(ev, _codes(ACCOUNTS)))
    assert got.select("plain", "text_fp", "requests", "sends").rows() == [
        (False, 7, 3, 2),  # its two sends and text 50's request, not kept
        (False, 30, 1, 1),
        (True, 2, 2, 1),
    ]


def _course() -> list[tuple[str, int, int, str]]:
    """A class of 18 sending a sheet's six exercises (texts 100-105), each participant two neighbouring
    ones in one bucket (three participants a pair, the last pair 105 and 100): every exercise is sent by
    6 of 18, a third, but with one text a bucket 100 is held by 6 and the others by 3 each."""
    pairs = [(100 + i, 100 + (i + 1) % 6) for i in range(6)]
    return [
        (f"m{3 * i + j}", 1 + k, t, "cot")
        for i, p in enumerate(pairs)
        for j in range(3)
        for k, t in enumerate(p)
    ]


def _named(rows: list[tuple[str, int, int, str]], keep: int, monkeypatch: pytest.MonkeyPatch) -> pl.DataFrame:
    accounts = sorted({r[0] for r in rows})
    codes = _codes(accounts)
    monkeypatch.setattr(sheets, "REASONING_KEEP", keep)
    table = merge_sheets(sheet_rows(_events(rows), codes))
    monkeypatch.setattr(sheets, "REASONING_KEEP", 2)
    return table.join(codes, on="account_code").select(SHEET_SCHEMA.keys())


def test_the_account_axis_reads_one_text_a_bucket_and_the_cluster_axis_two(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = _course()
    one, two = _named(rows, 1, monkeypatch), _named(rows, 2, monkeypatch)
    assert two.filter(~pl.col("plain")).height > one.filter(~pl.col("plain")).height  # a second text kept
    assert_frame_equal(one_a_bucket(two).sort(pl.all()), one.sort(pl.all()))
    now = T0 + timedelta(hours=1)
    points = pl.DataFrame(
        {"account_id": sorted({r[0] for r in rows}), "tick_end": now},
        schema={"account_id": pl.String, "tick_end": UTC_US},
    )
    for lag in (timedelta(0), timedelta(minutes=15)):  # without and with the population context's lag
        by = ["account_id", "tick_end"]
        read = [account_sheets(t, points, DAY, 5, 1 / 3, lag).sort(by) for t in (one, two)]
        assert_frame_equal(read[1], read[0], check_exact=True)
        assert (read[0]["sheet_share_24h"] > 0).any()  # the account axis finds the sheet: not vacuous
    for as_of in (now, now - timedelta(minutes=15)):
        assert_frame_equal(wide_texts(two, as_of, DAY, 5), wide_texts(one, as_of, DAY, 5))
    members = points.select("account_id").with_columns(pl.lit(1).alias("cluster_id"))
    share = [cluster_sheets(t, members, now, DAY, 3, 1 / 3)["sheet_share_24h"].item() for t in (one, two)]
    assert share[0] < 0.5 < share[1]  # one text a bucket splits the holders; two read the sheet


# ---- through the engine: a simulated day -------------------------------------------------------------


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """A small day of dev draw 965 (a reasoning course among the personas; 5 seats a campaign), enriched:
    without the account axis's fold its sheet features read the second texts (checked when built)."""
    from detector.io.files import iter_file
    from detector.lab.knobs import draw_params
    from detector.lab.simulate import simulate

    out = tmp_path_factory.mktemp("holders")
    _, params = draw_params(965, 5, 0.3, None)
    simulate(out, days=1.0, seed=965, scale=0.3, params=params)
    raw = pl.concat([c.batch.events for c in iter_file(out / "events.parquet")]).sort("ts", "request_id")
    return build_engine(ROOT / "rules").enrich(raw)


#: The alerts, the feature frames by kind, and the buckets whose reasoning sample kept a second text.
Run = tuple[list[dict[str, object]], dict[str, pl.DataFrame], int]


def _engine(frames: dict[str, list[pl.DataFrame]], lag: bool) -> Engine:
    def observe(kind: Kind, frame: pl.DataFrame, _: object) -> None:
        frames[kind].append(frame)

    engine = build_engine(ROOT / "rules", observers=Observers(on_features=observe))
    engine.settings = engine.settings.model_copy(update={"context_lag": lag})
    return engine


def _finish(
    engine: Engine, events: pl.DataFrame, frames: dict[str, list[pl.DataFrame]], start: list[Alert]
) -> Run:
    alerts = [*start]
    for a in range(0, events.height, 4_000):
        alerts += engine.process(events.slice(a, 4_000), enriched=True)
    alerts += engine.flush()
    keys = {"account": ["account_id", "tick_end"], "cluster": ["cluster_id", "tick_end"]}
    feats = {k: pl.concat(v, how="vertical").sort(keys[k]) for k, v in frames.items()}
    engine.state.compact()
    reasoning = engine.state.sheets.filter(~pl.col("plain"))
    second = reasoning.height - reasoning.select("account_code", "bucket").n_unique()
    return [orjson.loads(orjson.dumps(a.to_json_dict())) for a in alerts], feats, second


def _run(events: pl.DataFrame, keep: int, lag: bool, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setattr(sheets, "REASONING_KEEP", keep)
    frames: dict[str, list[pl.DataFrame]] = {"account": [], "cluster": []}
    try:
        return _finish(_engine(frames, lag), events, frames, [])
    finally:
        monkeypatch.setattr(sheets, "REASONING_KEEP", 2)


def _accounts(alerts: list[dict[str, object]]) -> list[dict[str, object]]:
    return [a for a in alerts if a["kind"] == "account"]


@pytest.mark.parametrize("lag", [False, True])
def test_the_engine_reads_the_account_axis_as_with_one_text_a_bucket(
    day: pl.DataFrame, lag: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A simulated day, with the reasoning sample's one text a bucket and with two (the table keeps a
    second text in many buckets): every account feature and account alert the same, byte for byte; the
    clusters' sheet features read the second texts."""
    one, two = _run(day, 1, lag, monkeypatch), _run(day, 2, lag, monkeypatch)
    assert one[2] == 0 and two[2] > 50  # second texts kept: the account axis had something to fold
    assert_frame_equal(two[1]["account"], one[1]["account"], check_exact=True)
    assert (one[1]["account"]["sheet_share_24h"] > 0).any()
    assert _accounts(two[0]) == _accounts(one[0]) and _accounts(one[0])
    cols = ["cluster_id", "tick_end", "sheet_share_24h"]
    assert not two[1]["cluster"].select(cols).equals(one[1]["cluster"].select(cols))


def test_a_checkpoint_with_one_text_a_bucket_loads_and_runs_on(
    day: pl.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half the day with one text a bucket (the table ``main`` writes: same columns), checkpointed; a
    build keeping two loads it and runs the rest: its tables take second texts from then on, and its
    account features and alerts are those of a run that kept one text all day (the fold of a one-row
    bucket and its later rows is the one row of their union)."""
    whole = _run(day, 1, False, monkeypatch)
    cut = day.height // 2 + 777
    monkeypatch.setattr(sheets, "REASONING_KEEP", 1)
    frames: dict[str, list[pl.DataFrame]] = {"account": [], "cluster": []}
    first = _engine(frames, False)
    before = first.process(day.slice(0, cut), enriched=True)
    first.state.compact()
    old = first.state.sheets
    assert not old.select("account_code", "bucket", "plain").is_duplicated().any()  # one row a bucket
    save_engine(first, tmp_path / "ckpt")
    monkeypatch.setattr(sheets, "REASONING_KEEP", 2)
    second = _engine(frames, False)
    load_engine(second, tmp_path / "ckpt")
    assert_frame_equal(second.state.sheets, old)
    got = _finish(second, day.slice(cut), frames, before)
    assert got[2] > 0  # two texts a bucket from the load on
    assert_frame_equal(got[1]["account"], whole[1]["account"], check_exact=True)
    assert _accounts(got[0]) == _accounts(whole[0])
