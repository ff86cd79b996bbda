"""The scale benchmark's inputs and its capped child replays (``benchmarks/scale.py``): a tile is K copies
of one world (new ids, the same times, addresses and prompts), time-ordered in Parquet and shuffled only
within 5-minute windows in JSON Lines; a replay stopped by its cap still reports what it did."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import polars as pl
import pytest

from detector.io.files import iter_jsonl

ROOT = Path(__file__).resolve().parents[1]


def _scale() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale_bench", ROOT / "benchmarks" / "scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_a_tile_is_copies_of_one_world_in_time_order(tmp_path: Path) -> None:
    scale = _scale()
    day = scale.simulate_day(tmp_path / "day", 0.05, 0.1, 3)
    base = pl.read_parquet(day)
    rows = scale.tile(day, 3, tmp_path / "t.parquet", tmp_path / "t.jsonl")
    tiled = pl.read_parquet(tmp_path / "t.parquet")
    assert rows == tiled.height == 3 * base.height
    for column in ("request_id", "account_id"):
        assert tiled[column].n_unique() == 3 * base[column].n_unique()
    # the same times and addresses, each three times; the Parquet in time order
    assert tiled["ts"].sort().to_list() == base["ts"].extend(base["ts"]).extend(base["ts"]).sort().to_list()
    assert tiled["ts"].is_sorted()
    assert set(tiled["client"].struct.field("ip").to_list()) == set(
        base["client"].struct.field("ip").to_list()
    )
    # the JSON Lines hold the same records, none rejected, out of order only within 5-minute windows
    events = pl.concat([c.batch.events for c in iter_jsonl(tmp_path / "t.jsonl", 1 << 20)])
    assert sorted(events["request_id"].to_list()) == sorted(tiled["request_id"].to_list())
    windows = events["ts"].dt.truncate("5m")
    assert windows.is_sorted() and not events["ts"].is_sorted()


def test_a_capped_child_reports_the_part_it_replayed(tmp_path: Path) -> None:
    scale = _scale()
    day = scale.simulate_day(tmp_path / "day", 0.05, 0.1, 3)
    full = scale.measure(day, tmp_path / "a.jsonl", False, cap=300, rss_cap_mb=8000)
    assert full["complete"] and full["capped"] is None
    assert full["events"] == pl.read_parquet(day).height
    assert full["peak_rss_mb"] > 100 and full["state_bytes_per_account"] > 0
    assert 100 < full["rss_end_mb"] <= full["peak_rss_mb"]  # after the replay, at most the peak
    capped = scale.measure(day, tmp_path / "b.jsonl", False, cap=300, rss_cap_mb=1)
    assert not capped["complete"] and capped["capped"] == "rss over 1 MB" and capped["exit"] != 0
    assert capped["rss_end_mb"] is None  # no end to report


def test_ab_variants_reach_the_child_environment(tmp_path: Path) -> None:
    scale = _scale()
    assert scale.variant("decay0:_RJEM_MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0;X=a=b") == (
        "decay0",
        {"_RJEM_MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0", "X": "a=b"},
    )
    assert scale.variant("default:") == ("default", {}) == scale.variant("default")
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        scale.env_pairs(["no-equals-sign"])
    day = scale.simulate_day(tmp_path / "day", 0.05, 0.1, 3)
    bad = scale.measure(day, tmp_path / "a.jsonl", False, 300, 8000, env={"DETECTOR_WINDOWS__TICK": "soon"})
    assert not bad["complete"] and bad["exit"] != 0 and bad["env"] == {"DETECTOR_WINDOWS__TICK": "soon"}
