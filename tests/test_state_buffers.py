"""Issue 13, round 15: the state keeps no decoded input alive.

A polars string past 12 bytes is a view into a buffer shared with the column it came from, so an
account id or key name filtered or grouped out of a decoded chunk kept that chunk's whole column
buffer: 72 MB of a 6-copy tile's input behind 0.2 MB of key names (docs/benchmarks.md, Round 15).
``compact.owned`` copies the state's strings into buffers of their own at every eviction.
"""

from __future__ import annotations

import gc
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from detector.app import build_engine
from detector.runtime.replay import replay
from detector.window.compact import owned

ROOT = Path(__file__).resolve().parents[1]


def _arrow_backed(rows: int = 50_000) -> pl.DataFrame:
    """A frame whose string column lives in pyarrow's pool, as a decoded Parquet chunk's does."""
    long = [f"account-{i:08d}-" + "x" * 40 if i % 7 else None for i in range(rows)]
    ids = pa.array(long, pa.large_string())
    short = pa.array([f"s{i % 50}" for i in range(rows)], pa.large_string())
    frame = pl.from_arrow(pa.table({"id": ids, "short": short, "n": list(range(rows))}))
    assert isinstance(frame, pl.DataFrame)
    return frame


def test_owned_strings_let_the_buffer_they_were_gathered_from_go() -> None:
    gc.collect()
    base = pa.total_allocated_bytes()
    source = _arrow_backed()
    kept = source.filter(pl.col("n") % 1_000 < 2)
    del source
    gc.collect()
    assert pa.total_allocated_bytes() - base > 2 << 20  # 100 rows keep the whole 3 MB column
    own = owned(kept)
    assert own.equals(kept) and own.schema == kept.schema  # same values, nulls and types
    del kept
    gc.collect()
    assert pa.total_allocated_bytes() - base < 64 << 10
    numbers = pl.DataFrame({"n": [1, 2]})
    assert owned(numbers) is numbers


@pytest.fixture(scope="module")
def parquet_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from detector.lab.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    simulate(out, days=0.25, seed=5, scale=0.2)
    return out / "events.parquet"


def test_a_replayed_engine_holds_none_of_the_decoded_input(parquet_day: Path, tmp_path: Path) -> None:
    """Every decoded chunk lives in pyarrow's pool: once the replay is done, dropping the engine frees
    nothing there, so its state holds no byte of it. (Before ``owned``, this day's engine held 0.6 MB
    there.)"""
    engine = build_engine(ROOT / "rules", models=False)
    summary = replay([parquet_day], engine, tmp_path / "alerts.jsonl")
    assert summary.events > 5_000 and engine.state.key_names.height > 100
    gc.collect()
    with_engine = pa.total_allocated_bytes()
    del engine
    gc.collect()
    assert with_engine - pa.total_allocated_bytes() == 0
