"""Issue 13, round 17: the account stage's per-tick summary (``window/summary.py``).

The record round-trips through bytes (any rows of its kinds' types), splits by account and merges back,
and damaged bytes give one ``ValueError``. The fold it carries is the state's: two account stages'
summaries of a simulated day, folded into a fresh state tick by tick (``apply_summary``) and evicted as
the engine evicts, give the tables one engine fed every event holds (buckets, templates, sheet and
opener rows summed per key, accounts, keys, models): what the cluster stage's population work reads.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from detector.app import build_engine
from detector.engine import Engine
from detector.runtime.shards import shard_of
from detector.schema import UTC_US
from detector.window.framing import Budget, OverBudget, decoded_limit
from detector.window.openers import merge_openers
from detector.window.sheets import merge_sheets
from detector.window.state import WindowState
from detector.window.summary import KINDS, AccountSummary, SummarizingState, apply_summary

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 2, 10, 15, tzinfo=UTC)


def _values(dtype: pl.DataType) -> st.SearchStrategy[object]:
    if dtype == pl.String:
        return st.text(max_size=6)
    if dtype == UTC_US:
        return st.datetimes(
            min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        ).map(lambda d: d.replace(microsecond=d.microsecond))
    if dtype == pl.Boolean:
        return st.booleans()
    bits = {pl.UInt16: 16, pl.UInt32: 32, pl.UInt64: 64, pl.Int64: 63, pl.Int128: 127}
    for d, b in bits.items():
        if dtype == d:
            low = 0 if d in (pl.UInt16, pl.UInt32, pl.UInt64) else -(2**b)
            return st.integers(low, 2**b - 1)
    raise AssertionError(f"no strategy for {dtype}")


@st.composite
def _summaries(draw: st.DrawFn) -> AccountSummary:
    accounts = draw(st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=3, unique=True))
    kinds = {}
    for name, schema in KINDS.items():
        n = draw(st.integers(0, 4))
        cols = {c: [draw(st.none() | _values(d)) for _ in range(n)] for c, d in schema.items()}
        cols["account_id"] = [draw(st.sampled_from(accounts)) for _ in range(n)]
        kinds[name] = pl.DataFrame(cols, schema=schema)
    mark = draw(st.integers(0, 10**6))
    return AccountSummary(T0, T0 + timedelta(microseconds=mark), **kinds)


def _same(a: AccountSummary, b: AccountSummary) -> None:
    assert (a.tick_end, a.watermark) == (b.tick_end, b.watermark)
    for name in KINDS:
        left, right = getattr(a, name), getattr(b, name)
        assert_frame_equal(left.sort(pl.all()), right.sort(pl.all()))


@settings(max_examples=60, deadline=None)
@given(_summaries())
def test_a_summary_round_trips_through_bytes_and_through_its_accounts(s: AccountSummary) -> None:
    back = AccountSummary.from_bytes(s.to_bytes())
    _same(back, s)
    assert back.rows() == s.rows()
    parts = s.per_account()
    assert all(set(getattr(p, n)["account_id"].to_list()) <= {a} for a, p in parts.items() for n in KINDS)
    if parts:
        _same(AccountSummary.merged(list(parts.values())), s)


@settings(max_examples=80, deadline=None)
@given(_summaries(), st.data())
def test_damaged_summary_bytes_give_a_value_error(s: AccountSummary, data: st.DataObject) -> None:
    raw = s.to_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(ValueError, match="account summary"):
        AccountSummary.from_bytes(raw[:cut])
    at = data.draw(st.integers(0, len(raw) - 1))
    flipped = raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1 :]
    try:
        back = AccountSummary.from_bytes(flipped)
    except ValueError:
        return
    assert back.rows() >= 0  # a flip inside a value can still read back: it must read as a summary


def test_a_compressed_summary_bomb_is_refused_before_it_is_decoded() -> None:
    """A summary is read off a topic as a context is, so its kinds are decoded under the same budget
    (``framing.read_ipc``): a small record of a million identical template rows is refused, a real one
    read; the control reads the bomb in full under an unbounded budget."""
    rows = 1_000_000
    templates = pl.DataFrame(
        {
            "account_id": ["a"] * rows,
            "bucket": [T0] * rows,
            "template_fp": [7] * rows,
            "requests": [1] * rows,
        },
        schema=KINDS["templates"],
    )
    empty = {n: pl.DataFrame(schema=s) for n, s in KINDS.items() if n != "templates"}
    raw = AccountSummary(T0, T0, templates=templates, **empty).to_bytes()
    measured = Budget(1 << 40, "test")
    assert AccountSummary.from_bytes(raw, measured).templates.height == rows
    limit = decoded_limit(len(raw))
    assert measured.used > limit > 40 * len(raw)
    with pytest.raises(OverBudget, match=f"account summary: decodes to over {limit} bytes"):
        AccountSummary.from_bytes(raw)
    small = AccountSummary(T0, T0, templates=templates.head(3), **empty)
    assert AccountSummary.from_bytes(small.to_bytes()).templates.height == 3


def test_merging_records_of_two_ticks_is_refused() -> None:
    empty = {n: pl.DataFrame(schema=s) for n, s in KINDS.items()}
    one, two = AccountSummary(T0, T0, **empty), AccountSummary(T0 + timedelta(minutes=15), T0, **empty)
    with pytest.raises(ValueError, match="ticks"):
        AccountSummary.merged([one, two])


@pytest.fixture(scope="module")
def day(decoded_day: pl.DataFrame) -> pl.DataFrame:
    return decoded_day


def _feed(engine: Engine, events: pl.DataFrame, step: int = 3_000) -> None:
    for start in range(0, events.height, step):
        engine.process(events.slice(start, step))
    engine.flush()


def _tables(state: WindowState) -> dict[str, pl.DataFrame]:
    """What readers get, one row per key (the state may hold a key's rows apart until it compacts)."""
    buckets = state.bucket_rows()
    sums = [c for c in buckets.columns if c not in ("account_id", "bucket")]
    templates = state.template_rows()
    return {
        "buckets": buckets.group_by("account_id", "bucket").agg(pl.col(sums).sum()),
        "templates": templates.group_by("account_id", "bucket", "template_fp").agg(pl.col("requests").sum()),
        "sheets": merge_sheets(state.sheet_rows().rename({"account_id": "account_code"})),
        "openers": merge_openers(state.opener_rows(), account="account_id"),
        "accounts": state.accounts,
        "keys": state.key_rows(),
        "models": state.models,
    }


def test_two_account_stages_summaries_fold_into_the_one_engines_tables(day: pl.DataFrame) -> None:
    def engine(state: WindowState) -> Engine:
        e = build_engine(ROOT / "rules", models=False)
        e.stage = "account"  # the fold is the same whatever the stage; no cluster verdicts to build
        e.state = state
        return e

    single = engine(WindowState())
    _feed(single, day)
    shard = shard_of(day["account_id"], 2)
    stages = [engine(SummarizingState()) for _ in range(2)]
    for i, stage in enumerate(stages):
        _feed(stage, day.filter(shard == i))
    records = [s for stage in stages for s in stage.state.summaries]  # type: ignore[attr-defined]
    assert len({r.tick_end for r in records}) >= 90  # a day of 15-minute ticks, most with events
    # merged over the stages, a tick's watermark is its newest event (the single engine's ``detected``)
    ticks = day.group_by((pl.col("ts").dt.truncate("15m") + timedelta(minutes=15)).alias("t"))
    newest = dict(ticks.agg(pl.col("ts").max()).iter_rows())
    marks: dict[datetime, datetime] = {}
    for r in records:
        marks[r.tick_end] = max(marks.get(r.tick_end, r.watermark), r.watermark)
    assert marks == newest
    # the cluster stage: every stage's records of a tick, through bytes, then the engine's eviction
    w = single.settings.windows

    def fold(records: list[AccountSummary]) -> WindowState:
        state = WindowState()
        for tick in sorted({r.tick_end for r in records}):
            for r in records:
                if r.tick_end == tick:
                    apply_summary(state, AccountSummary.from_bytes(r.to_bytes()))
            state.evict(tick, w.long + w.tick, w.link, w.account_idle, w.dedup, single.settings.state_caps)
        return state

    want, got = _tables(single.state), _tables(fold(records))
    assert want["buckets"].height > 1_000 and want["keys"].height > 1_000 and want["sheets"].height > 100
    for name, frame in want.items():
        assert_frame_equal(got[name].sort(pl.all()), frame.sort(pl.all()), check_row_order=False)
    # the check can fail: one stage's records alone hold fewer accounts' rows
    half = _tables(fold(stages[0].state.summaries))  # type: ignore[attr-defined]
    assert 0 < half["accounts"].height < want["accounts"].height


def test_stage_cpu_prices_the_summaries_from_one_runs_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """``benchmarks/stage_cpu.py``: the projection is the fold of summaries plus the population work,
    against the account stages without the recording plus the emission."""
    import importlib.util

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # its ``_worktree``
    spec = importlib.util.spec_from_file_location("stage_cpu_bench", ROOT / "benchmarks" / "stage_cpu.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    summ = {"record_s": 1.0, "encode_s": 0.5, "per_account_encode_s": 20.0, "fold_s": 3.0}
    summ |= {"decode_s": 1.0, "apply_s": 1.5, "evict_s": 0.5, "ticks": 10, "rows": 300_000}
    summ |= {"bytes": 8_000_000, "records": 20, "account_ticks": 25_000}
    row = {
        "single_nolag": (10.0, 100_000),
        "single_lag": (12.0, 100_000),
        "cluster": (11.0, 100_000),
        "accounts": [(5.5, 50_000), (5.5, 50_000)],
        "population": {"population_sheets": 2.0, "_cluster_verdicts": 3.0},
        "summaries": summ,
    }
    fig = bench._figures(row)
    assert fig["accounts_before_us"] == pytest.approx(100.0)  # 11 s less the 1 s recording
    assert fig["projected_us"] == pytest.approx(30.0 + 50.0)
    assert fig["after_cluster_vs_accounts"] == pytest.approx(80.0 / (100.0 + 15.0))
    assert fig["before_cluster_vs_accounts"] == pytest.approx(1.1)
    assert fig["events_per_account_tick"] == pytest.approx(4.0)
    assert fig["fold_ms_per_tick"] == pytest.approx(300.0)
