"""The cluster-stage benchmark (``benchmarks/cluster_stage.py``): it records the engine's own
``build_clusters`` calls, and its churn counts what changed between two key tables."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import polars as pl

from detector.lab.simulate import simulate
from detector.settings import LinkSettings
from detector.window import link
from detector.window.link import build_clusters
from detector.window.tables import KEY_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _bench() -> ModuleType:
    path = ROOT / "benchmarks" / "cluster_stage.py"
    spec = importlib.util.spec_from_file_location("cluster_stage_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cluster_stage_bench"] = module
    spec.loader.exec_module(module)
    return module


def _keys(rows: list[tuple[str, str, str, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(a, f, k, T0 + timedelta(minutes=m), u) for a, f, k, m, u in rows], schema=KEY_SCHEMA, orient="row"
    )


def test_churn_counts_changed_gone_moved_and_crossed_keys() -> None:
    bench = _bench()
    before = _keys(
        [
            ("a1", "client", "c1", 0, 1),
            ("a2", "client", "c1", 0, 1),
            ("a1", "payment", "p1", 0, 1),
            ("a3", "template", "t1", 0, 2),
            ("a4", "template", "t1", 0, 1),
            ("a4", "ip", "n1", 0, 1),
        ]
    )
    after = _keys(
        [
            ("a1", "client", "c1", 30, 2),  # a later use: changed
            ("a2", "client", "c1", 0, 1),
            ("a1", "payment", "p1", 0, 1),
            ("a2", "payment", "p1", 30, 1),  # new: p1 now has two holders (crossed)
            ("a3", "template", "t1", 0, 2),
            ("a4", "template", "t1", 0, 1),
            ("a5", "template", "t1", 30, 1),  # new: t1 moved from 2 to 3 holders (linking before and after)
            # a4's n1 is gone (left the link window)
        ]
    )
    c = bench.churn(before, after, (4, 5), LinkSettings())
    assert (c["rows"], c["changed"], c["gone"]) == (7, 3, 1)
    assert c["accounts_changed"] == 4  # a1, a2, a5 changed; a4 lost a row
    assert (c["keys"], c["keys_moved"], c["keys_crossed"]) == (3, 2, 1)  # p1 and t1 moved; p1 crossed 2
    assert c["accounts_crossed"] == 4  # p1's holders a1 and a2 changed already
    assert c["accounts_moved"] == 5  # t1's a3 too
    unchanged = bench.churn(after, after, (5, 5), LinkSettings())
    assert unchanged["changed"] == unchanged["gone"] == unchanged["keys_moved"] == 0


def test_record_keeps_every_call_of_the_engine_in_tick_order(tmp_path: Path) -> None:
    bench = _bench()
    simulate(tmp_path / "day", days=0.15, seed=3, scale=0.1)
    calls, engine = bench.record(tmp_path / "day" / "events.parquet", models=False)
    assert len(calls) >= 3 and engine.clusters is calls[-1].clusters
    latest = [call.keys["last_seen"].max() for call in calls]
    assert latest == sorted(latest) and latest[0] < latest[-1]
    # the recorded inputs give the clusters the engine had
    cfg = engine.settings.link
    for call in calls:
        again = build_clusters(call.keys, call.accounts, cfg)
        assert again.members.equals(call.clusters.members) and again.links.equals(call.clusters.links)
    # each statement of build_clusters timed, once each, with its line in window/link.py
    rows = bench.steps(calls, cfg, 1)
    source = Path(link.__file__).read_text().splitlines()
    assert len({line for line, _, _ in rows}) == len(rows) > 20
    assert all(source[line - 1].strip() == text and sec >= 0 for line, text, sec in rows)
    assert any(text.startswith("pairs = (") for _, text, _ in rows)
