"""Window state checkpoints: every table and the derived stream start survive a save/load."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from detector.window.state import MODEL_SCHEMA, WindowState


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
