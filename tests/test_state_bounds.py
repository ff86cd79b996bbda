"""Bounded state (issue 14, items 6 and 12): every table evicted by event time and capped by count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from prometheus_client import CollectorRegistry

from detector.app import build_engine
from detector.decode_parquet import decode_frame
from detector.runtime.metrics import Metrics
from detector.settings import StateCaps
from detector.window.state import TABLES, WindowState

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    from detector.lab.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    simulate(out, days=1.0, seed=9, scale=0.15)
    decoded = decode_frame(pl.read_parquet(out / "events.parquet"), lambda i: f"row{i}")
    return decoded.events.drop("_pos").sort("ts", "request_id")


def test_every_table_stays_under_its_cap_and_drops_are_counted(events: pl.DataFrame) -> None:
    engine = build_engine(ROOT / "rules", models=False)
    caps = StateCaps(accounts=60, buckets=400, templates=300, keys=250, seen=2_000, models=2)
    engine.settings.state_caps = caps
    for start in range(0, events.height, 2_000):
        engine.process(events.slice(start, 2_000))
        if engine.clock.last_closed is not None:
            for table in TABLES:
                # ids: one row per account held by buckets, templates or keys; key names, per key held
                if table not in ("ids", "key_names"):
                    assert getattr(engine.state, table).height <= getattr(caps, table), table
            assert engine.state.seen_hashes().len() <= caps.seen  # request ids, not ticks
    engine.flush()
    for table in ("accounts", "buckets", "templates", "keys", "seen"):
        assert engine.stats.evicted[f"{table}/cap"] > 0, table
    kept = engine.state.accounts
    assert kept.height == 60
    # the accounts kept are the most recently seen; their rows were not dropped by another's eviction
    assert set(engine.state.bucket_rows()["account_id"].unique()) <= set(kept["account_id"])
    assert engine.state.ids.height <= kept.height
    assert engine.state.key_names.height <= engine.state.keys.height
    registry = CollectorRegistry()
    Metrics(registry).sync_engine(engine)
    got = registry.get_sample_value(
        "detector_state_evicted_rows_total", {"table": "accounts", "cause": "cap"}
    )
    assert got == engine.stats.evicted["accounts/cap"]


def test_models_are_evicted_by_event_time_and_the_stream_start_survives(tmp_path: Path) -> None:
    st = WindowState()
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    frame = pl.DataFrame(
        {"model": ["old", "new"], "ts": [t0, t0 + timedelta(days=9)], "_tick": [t0, t0 + timedelta(days=9)]},
        schema={"model": pl.String, "ts": pl.Datetime("us", "UTC"), "_tick": pl.Datetime("us", "UTC")},
    )
    st.mark_new_models(frame, timedelta(hours=6), timedelta(hours=72))
    assert st.models["model"].to_list() == ["new", "old"] and st.stream_start == t0
    dropped = st.evict(
        t0 + timedelta(days=9), timedelta(days=1), timedelta(days=7), timedelta(days=7), timedelta(days=7)
    )
    assert st.models["model"].to_list() == ["new"] and dropped["models/age"] == 1
    st.save(tmp_path)
    again = WindowState.load(tmp_path)
    assert again.stream_start == t0  # not the earliest model left
    assert again.models.equals(st.models)


def test_a_checkpoint_from_before_model_eviction_still_loads(tmp_path: Path) -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    pl.DataFrame(
        {"model": ["m"], "first_seen": [t0]},
        schema={"model": pl.String, "first_seen": pl.Datetime("us", "UTC")},
    ).write_parquet(tmp_path / "models.parquet")
    st = WindowState.load(tmp_path)
    assert st.stream_start == t0 and st.models["last_seen"].to_list() == [t0]
