"""Window state checkpoints: every table and the derived stream start survive a save/load."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from detector.window.state import BUCKET_SCHEMA, GAP_SUM, GAP_SUMSQ, MODEL_SCHEMA, WindowState


def test_checkpoint_round_trip_restores_tables_and_stream_start(tmp_path: Path) -> None:
    st = WindowState()
    t0 = datetime(2026, 2, 10, tzinfo=UTC)
    st.models = pl.DataFrame(
        [("m-old", t0, t0), ("m-new", t0.replace(day=12), t0.replace(day=13))],
        schema=MODEL_SCHEMA,
        orient="row",
    )
    st.stream_start = t0
    st.save(tmp_path)
    back = WindowState.load(tmp_path)
    assert back.models.equals(st.models)
    assert back.stream_start == t0
    assert back.buckets.schema == st.buckets.schema


def test_a_checkpoint_with_float_gap_sums_loads_as_whole_microseconds(tmp_path: Path) -> None:
    """Gap sums were float seconds (their sum depended on the order of rows): an older checkpoint loads
    into the integer-microsecond columns, the same gaps to the microsecond."""
    old_schema = {
        **{c: d for c, d in BUCKET_SCHEMA.items() if c not in (GAP_SUM, GAP_SUMSQ)},
        "gap_sum": pl.Float64,
        "gap_sumsq": pl.Float64,
    }
    t0 = datetime(2026, 2, 10, tzinfo=UTC)
    row = {c: 0 for c in old_schema} | {"account_id": "a", "bucket": t0, "requests": 3, "gap_n": 2}
    # two gaps of 60.5 s and 59.000001 s
    row |= {"gap_sum": 60.5 + 59.000001, "gap_sumsq": 60.5**2 + 59.000001**2}
    pl.DataFrame([row], schema=old_schema).write_parquet(tmp_path / "buckets.parquet")
    back = WindowState.load(tmp_path)
    rows = back.bucket_rows()
    assert rows.schema == BUCKET_SCHEMA
    assert rows.row(0, named=True)[GAP_SUM] == 119_500_001
    assert rows.row(0, named=True)[GAP_SUMSQ] == 60_500_000**2 + 59_000_001**2
