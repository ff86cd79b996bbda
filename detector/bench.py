"""Throughput benchmark: the polars read ceiling vs the project's decode vs replay end to end.

All figures come from one run on the same file, so ratios hold even on a noisy shared machine.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from detector.io.files import iter_jsonl, iter_parquet
from detector.schema import RAW_SCHEMA


def _best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    best = float("inf")
    n = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - t0)
    return best, n


def _replay_fn(path: Path) -> Callable[[], int]:
    from detector.cli import build_engine
    from detector.replay import replay

    def run() -> int:
        engine = build_engine()
        with tempfile.TemporaryDirectory() as tmp:
            s = replay([path], engine, Path(tmp) / "alerts.jsonl")
        return s.records

    return run


def _enriched(path: Path) -> pl.DataFrame:
    from detector.cli import build_engine

    engine = build_engine()
    frames = [engine.enrich(c.batch.events) for c in iter_parquet(path)]
    return pl.concat(frames, how="vertical_relaxed").sort("ts", "request_id")


def _engine_rows(path: Path, repeat: int, ceil_eps: float, size: int) -> list[dict[str, float | str]]:
    """Stage split of the Parquet replay: enrichment alone, and the engine alone on enriched events."""
    from detector.cli import build_engine
    from detector.replay import SLICE_ROWS

    def enrich_only() -> int:
        engine = build_engine()
        return sum(engine.enrich(c.batch.events).height for c in iter_parquet(path))

    events = _enriched(path)

    def engine_only() -> int:
        engine = build_engine()
        for start in range(0, events.height, SLICE_ROWS):
            engine.process(events.slice(start, SLICE_ROWS), enriched=True)
        engine.flush()
        return events.height

    rows: list[dict[str, float | str]] = []
    for name, fn in (
        ("parquet decode + enrich (prompt features)", enrich_only),
        ("parquet engine only", engine_only),
    ):
        secs, n = _best(fn, repeat)
        rows.append({"stage": name, "seconds": secs, "events_per_s": n / secs, "mb_per_s": size / secs / 1e6})
    return rows


def _state_memory(path: Path) -> dict[str, Any]:
    """Window-state size after replaying ``path``: total, per table, per tracked account."""
    from detector.cli import build_engine
    from detector.replay import replay

    engine = build_engine()
    replay([path], engine, None)
    tables = engine.state.size_bytes()
    total = sum(tables.values())
    n = max(engine.state.accounts.height, 1)
    return {"accounts": n, "bytes": total, "bytes_per_account": total / n, "tables": tables}


def run_bench(jsonl: Path | None, parquet: Path | None, repeat: int = 3) -> list[dict[str, float | str]]:
    """Measure and print; returns the rows (for tests and the README)."""
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if jsonl is None:
        from detector.simulate import simulate

        tmp = tempfile.TemporaryDirectory()
        simulate(Path(tmp.name), days=1.0, seed=7, scale=1.0)
        jsonl = Path(tmp.name) / "events.jsonl"
        parquet = parquet or Path(tmp.name) / "events.parquet"
    rows: list[dict[str, float | str]] = []
    size = jsonl.stat().st_size

    def ceiling() -> int:
        return pl.read_ndjson(jsonl, schema=RAW_SCHEMA).height

    def decode() -> int:
        return sum(c.batch.records for c in iter_jsonl(jsonl))

    n_events = 0
    for name, fn in (
        ("jsonl ceiling: polars read_ndjson(schema)", ceiling),
        ("jsonl decode (validation, rejects)", decode),
        ("jsonl replay end to end", _replay_fn(jsonl)),
    ):
        secs, n = _best(fn, repeat)
        n_events = n_events or n
        rows.append({"stage": name, "seconds": secs, "events_per_s": n / secs, "mb_per_s": size / secs / 1e6})
    if parquet is not None and parquet.exists():
        psize = parquet.stat().st_size

        def pceiling() -> int:
            return pl.read_parquet(parquet).height

        def pdecode() -> int:
            return sum(c.batch.records for c in iter_parquet(parquet))

        for name, fn in (
            ("parquet ceiling: polars read_parquet", pceiling),
            ("parquet decode", pdecode),
            ("parquet replay end to end", _replay_fn(parquet)),
        ):
            secs, n = _best(fn, repeat)
            rows.append(
                {"stage": name, "seconds": secs, "events_per_s": n / secs, "mb_per_s": psize / secs / 1e6}
            )
        rows += _engine_rows(parquet, repeat, ceil_eps=float(rows[3]["events_per_s"]), size=psize)
    t = Table(title=f"{n_events} events, {size / max(n_events, 1):.0f} bytes/event (JSONL), best of {repeat}")
    for col in ("stage", "events/s", "MB/s", "x ceiling"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    ceil = {"jsonl": rows[0]["events_per_s"], "parquet": rows[3]["events_per_s"] if len(rows) > 3 else 1.0}
    for r in rows:
        fmt = str(r["stage"]).split()[0]
        ratio = float(r["events_per_s"]) / float(ceil[fmt])
        r["x_ceiling"] = ratio
        t.add_row(
            str(r["stage"]), f"{float(r['events_per_s']):,.0f}", f"{float(r['mb_per_s']):.1f}", f"{ratio:.2f}"
        )
    Console().print(t)
    mem = _state_memory(parquet if parquet is not None and parquet.exists() else jsonl)
    Console().print(
        f"state after the run: {mem['accounts']:,} accounts tracked, {mem['bytes'] / 1e6:.1f} MB "
        f"({mem['bytes_per_account']:,.0f} bytes per tracked account; "
        + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in mem["tables"].items())
        + ")"
    )
    if tmp is not None:
        tmp.cleanup()
    return rows
