"""Batch slicing is invisible: the same events cut into batches anywhere give the same feature frames and
the same alert bytes as closing one tick at a time (the engine's semantics). The engine closes every tick
a batch completes in one pass, so this holds only if every reader at tick T sees the state as it stood
at T (``window.asof``) and every window sum is the same in any order (integer gap sums)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from detector.app import build_engine
from detector.contracts import Kind
from detector.detect.allowlist import AllowEntry, AllowList
from detector.engine import Observers

ROOT = Path(__file__).resolve().parents[1]
KEYS: dict[str, list[str]] = {"account": ["account_id", "tick_end"], "cluster": ["cluster_id", "tick_end"]}


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """A small simulated day, enriched once (enrichment is per event: slicing cannot change it)."""
    from detector.io.files import iter_file
    from detector.lab.simulate import simulate

    out = tmp_path_factory.mktemp("slicing")
    simulate(out, days=1.0, seed=5, scale=0.1)
    raw = pl.concat([c.batch.events for c in iter_file(out / "events.parquet")]).sort("ts", "request_id")
    return build_engine(ROOT / "rules").enrich(raw)


def _allowlist(events: pl.DataFrame) -> AllowList:
    """Cards and network prefixes of a few accounts: the allow-list reads the key table per tick too."""
    some = events.filter(pl.col("payment_fingerprint").is_not_null()).get_column("account_id").unique().sort()
    picked = events.filter(pl.col("account_id").is_in(some.gather_every(7).implode()))
    cards = picked.get_column("payment_fingerprint").drop_nulls().unique().sort().to_list()
    prefixes = picked.get_column("ip_prefix").drop_nulls().unique().sort().head(5).to_list()
    return AllowList(
        entries=[AllowEntry(type="payment", value=v, reason="test") for v in cards]
        + [AllowEntry(type="prefix", value=v, reason="test") for v in prefixes]
    )


def _run(
    events: pl.DataFrame, cuts: list[int], feature_batch: int | None = None
) -> tuple[list[bytes], dict[str, pl.DataFrame], int]:
    """Feed ``events`` cut at ``cuts``; return the alert bytes, every feature frame (sorted) and the
    number of allow-listed suppressions. ``feature_batch``: ``EngineSettings.feature_batch_points``."""
    frames: dict[str, list[pl.DataFrame]] = {"account": [], "cluster": []}

    def observe(kind: Kind, frame: pl.DataFrame, _: object) -> None:
        frames[kind].append(frame)

    engine = build_engine(ROOT / "rules", observers=Observers(on_features=observe))
    engine.allowlist = _allowlist(events)
    if feature_batch is not None:
        engine.settings = engine.settings.model_copy(update={"feature_batch_points": feature_batch})
    alerts = []
    bounds = [0, *sorted(set(cuts)), events.height]
    for a, b in itertools.pairwise(bounds):
        alerts += engine.process(events.slice(a, b - a), enriched=True)
    alerts += engine.flush()
    feats = {k: pl.concat(v, how="vertical").sort(KEYS[k]) for k, v in frames.items()}
    return [orjson.dumps(a.to_json_dict()) for a in alerts], feats, sum(engine.stats.suppressed.values())


@pytest.fixture(scope="module")
def one_tick_at_a_time(events: pl.DataFrame) -> tuple[list[bytes], dict[str, pl.DataFrame], int]:
    """The reference: a batch per 15-minute tick, so every call closes exactly one tick."""
    tick = events.get_column("ts").dt.truncate("15m")
    return _run(events, (tick != tick.shift(1)).arg_true().to_list()[1:])


# a replay costs seconds: a few examples, and no shrinking (the failing cuts are reported as drawn)
@settings(
    max_examples=4,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(cuts=st.lists(st.integers(min_value=0), max_size=12))
@example(cuts=[])  # the whole day in one batch: every tick closed in one pass
def test_features_and_alerts_do_not_depend_on_batch_boundaries(
    events: pl.DataFrame,
    one_tick_at_a_time: tuple[list[bytes], dict[str, pl.DataFrame], int],
    cuts: list[int],
) -> None:
    alerts, feats, suppressed = _run(events, [1 + c % (events.height - 1) for c in cuts])
    ref_alerts, ref_feats, ref_suppressed = one_tick_at_a_time
    assert ref_alerts and ref_feats["cluster"].height and ref_suppressed  # the run exercises every reader
    # ... the opener table too (``window.openers``): agentic clusters' turns per opener, shared openers
    opened = ref_feats["cluster"]
    assert (opened["tools_heavy_turns_per_open_24h"] > 0).any()
    assert (opened["opener_shared_share_24h"] > 0).any()
    for kind, ref in ref_feats.items():
        assert_frame_equal(feats[kind], ref, check_exact=True)
    assert (suppressed, alerts) == (ref_suppressed, ref_alerts)


def test_accounts_back_after_their_idle_span_are_new_however_sliced(events: pl.DataFrame) -> None:
    """Accounts unseen for ``account_idle`` (7 days) that come back are new again when ticks close one at
    a time (eviction forgot them: ``observed_hours`` restarts); a batch holding both the lapse and the
    return closes in parts, evicting in between, so one batch gives the same features and alerts."""
    t0 = events.get_column("ts").min()
    assert isinstance(t0, datetime)
    week = events.filter(pl.col("ts") < t0 + timedelta(hours=6))
    back = week.filter(pl.col("ts") < t0 + timedelta(hours=3)).with_columns(
        pl.col("ts") + timedelta(days=7, hours=2), pl.col("request_id") + "-back"
    )
    again = pl.concat([week, back]).sort("ts", "request_id")
    tick = again.get_column("ts").dt.truncate("15m")
    ref_alerts, ref_feats, _ = _run(again, (tick != tick.shift(1)).arg_true().to_list()[1:])
    returned = ref_feats["account"].filter(pl.col("tick_end") > t0 + timedelta(days=7))
    hours = returned.get_column("observed_hours")
    assert hours.min() < 4 < 7 * 24 < hours.max()  # some came back new, some never left for 7 days
    for cuts in ([], [week.height]):  # one batch; the return in one batch with the lapse
        alerts, feats, _ = _run(again, cuts)
        for kind, ref in ref_feats.items():
            assert_frame_equal(feats[kind], ref, check_exact=True)
        assert alerts == ref_alerts


def test_an_upgrade_inside_a_batch_is_read_from_its_tick_on(events: pl.DataFrame) -> None:
    """Accounts upgraded and verified half way through the day: the ticks before read the old tier and
    flag, the ticks after the new ones, whether the day comes in one batch or one tick at a time."""
    busy = events.group_by("account_id").len().sort("len", "account_id", descending=True).head(5)
    half = events.get_column("ts").min() + timedelta(hours=12)  # type: ignore[operator]
    upgraded = pl.col("account_id").is_in(busy.get_column("account_id").implode()) & (pl.col("ts") >= half)
    day = events.with_columns(
        pl.when(upgraded).then(pl.lit("enterprise")).otherwise(pl.col("tier")).alias("tier"),
        pl.when(upgraded).then(pl.lit(True)).otherwise(pl.col("verified")).alias("verified"),
    )
    tick = day.get_column("ts").dt.truncate("15m")
    ref_alerts, ref_feats, _ = _run(day, (tick != tick.shift(1)).arg_true().to_list()[1:])
    tiers = ref_feats["account"].filter(pl.col("account_id").is_in(busy.get_column("account_id").implode()))
    assert tiers.get_column("tier").n_unique() > 1  # the reference reads both tiers
    alerts, feats, _ = _run(day, [])
    for kind, ref in ref_feats.items():
        assert_frame_equal(feats[kind], ref, check_exact=True)
    assert alerts == ref_alerts


def test_account_features_in_small_batches_are_the_same(
    events: pl.DataFrame, one_tick_at_a_time: tuple[list[bytes], dict[str, pl.DataFrame], int]
) -> None:
    """The whole day in one call, its account features and sheet test computed 7 points at a time
    (hundreds of parts): the same features, verdicts and alerts as one tick at a time with one part per
    tick. A sheet text's holders are counted over every account, not the part's (round 19): a part that
    counted only its own accounts would find fewer holders and fewer sheets."""
    ref_alerts, ref_feats, ref_suppressed = one_tick_at_a_time
    assert ref_feats["account"].height > 100 * 7  # the one call's points span many parts
    assert (ref_feats["account"]["sheet_share_24h"] > 0).sum() > 7  # sheets held across parts
    alerts, feats, suppressed = _run(events, [], feature_batch=7)
    for kind, ref in ref_feats.items():
        assert_frame_equal(feats[kind], ref, check_exact=True)
    assert (suppressed, alerts) == (ref_suppressed, ref_alerts)


def test_parts_give_the_verdicts_of_one_part(events: pl.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole day in one call, its account features and sheet test in parts of 50 points (the pass's
    per-account working set follows the part, round 21) and in one part: the same account features, every
    (account, tick) point exactly once, and the same alert bytes. A split that dropped or repeated an
    account would lose or double its points' rows."""
    import detector.window.batches as batches

    sizes: list[list[int]] = []
    split = batches.account_batches

    def counted(points: pl.DataFrame, batch: int) -> list[pl.DataFrame]:
        parts = split(points, batch)
        sizes.append([p.height for p in parts])
        return parts

    monkeypatch.setattr(batches, "account_batches", counted)
    monkeypatch.setattr("detector.detect.context.account_batches", counted)
    one_alerts, one_feats, one_suppressed = _run(events, [], feature_batch=10**9)
    assert all(len(s) == 1 for s in sizes)
    sizes.clear()
    alerts, feats, suppressed = _run(events, [], feature_batch=50)
    assert max(len(s) for s in sizes) > 10  # the pass ran in many parts
    points = feats["account"].select("account_id", "tick_end")
    assert not points.is_duplicated().any()
    assert_frame_equal(points, one_feats["account"].select("account_id", "tick_end"), check_exact=True)
    for kind, ref in one_feats.items():
        assert_frame_equal(feats[kind], ref, check_exact=True)
    assert one_alerts and (suppressed, alerts) == (one_suppressed, one_alerts)
