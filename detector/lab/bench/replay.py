"""Throughput benchmark: the polars read ceiling vs the project's decode vs replay end to end.

All figures come from one run on the same file, so ratios hold even on a noisy shared machine. Each
stage also reports its CPU cost per event and how many cores it kept busy, and the run ends with the
CPU budget per event that the replay targets leave on this machine: a stage whose cores are already
busy gets faster only by doing less work, not by spreading it over more threads or processes.
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

from detector.io.files import Chunk, iter_jsonl, iter_parquet
from detector.runtime.cpu import cores, own_seconds
from detector.schema import RAW_SCHEMA
from detector.window.state import TABLES, WindowState

#: Replay targets (issue 3): end to end from Parquet, events/s; from JSON Lines, share of the ceiling.
PARQUET_TARGET_EPS = 150_000
JSONL_TARGET_X_CEILING = 0.6
#: Replay's own reader drained alone: with the engine-only row, the two parts of Parquet replay end to end.
READER_ROW = "parquet replay reader (pieces, time guard, enrich, merge)"


def _best(fn: Callable[[], int], repeat: int) -> tuple[float, int, float]:
    """Wall seconds, events and CPU seconds of the fastest of ``repeat`` runs."""
    best, best_cpu = float("inf"), 0.0
    n = 0
    for _ in range(repeat):
        c0, t0 = own_seconds(), time.perf_counter()
        n = fn()
        secs, cpu = time.perf_counter() - t0, own_seconds() - c0
        if secs < best:
            best, best_cpu = secs, cpu
    return best, n, best_cpu


def _row(stage: str, secs: float, n: int, cpu: float, size: int) -> dict[str, float | str]:
    return {
        "stage": stage,
        "seconds": secs,
        "events_per_s": n / secs,
        "mb_per_s": size / secs / 1e6,
        "cpu_us_per_event": cpu / max(n, 1) * 1e6,
        "cores_busy": cpu / secs,
    }


def _replay_fn(path: Path) -> Callable[[], int]:
    from detector.app import build_engine
    from detector.runtime.replay import replay

    def run() -> int:
        engine = build_engine()
        with tempfile.TemporaryDirectory() as tmp:
            s = replay([path], engine, Path(tmp) / "alerts.jsonl")
        return s.records

    return run


def enriched(path: Path) -> pl.DataFrame:
    """The file's events decoded and enriched, in time order (what the engine alone is fed)."""
    from detector.app import build_engine

    engine = build_engine()
    frames = [engine.enrich(c.batch.events) for c in iter_parquet(path)]
    return pl.concat(frames, how="vertical_relaxed").sort("ts", "request_id")


def reader_only(path: Path) -> Callable[[], int]:
    """Replay's reader thread, drained with no engine: its pieces, time guard, enrichment and reorder
    buffer (the decode + enrich row reads the file in larger chunks and screens nothing)."""
    from detector.app import build_engine
    from detector.runtime.replay import ReadAhead, _streamed

    guard = build_engine()

    def take(chunk: Chunk) -> pl.DataFrame:
        events, _ = guard.time_guard.screen(chunk.batch.events, key=str(chunk.path))
        return guard.enrich(events) if events.height else events

    lateness, mb = guard.settings.windows.allowed_lateness, guard.settings.replay_inflight_mb
    return lambda: sum(p.height for p in _streamed([path], take, lateness, ReadAhead.of(mb)))


def engine_only(events: pl.DataFrame) -> Callable[[], int]:
    """A fresh engine fed ``events`` (enriched) in replay's slices, flushed: the events it handled."""
    from detector.app import build_engine
    from detector.runtime.replay import SLICE_ROWS

    def run() -> int:
        engine = build_engine()
        for start in range(0, events.height, SLICE_ROWS):
            engine.process(events.slice(start, SLICE_ROWS), enriched=True)
        engine.flush()
        return events.height

    return run


def _engine_rows(path: Path, repeat: int, size: int) -> list[dict[str, float | str]]:
    """Stage split of the Parquet replay: enrichment alone, and the engine alone on enriched events."""
    from detector.app import build_engine

    enricher = build_engine()

    def enrich_only() -> int:
        return sum(enricher.enrich(c.batch.events).height for c in iter_parquet(path))

    rows: list[dict[str, float | str]] = []
    for name, fn in (
        ("parquet decode + enrich (prompt features)", enrich_only),
        (READER_ROW, reader_only(path)),
        ("parquet engine only", engine_only(enriched(path))),
    ):
        secs, n, cpu = _best(fn, repeat)
        rows.append(_row(name, secs, n, cpu, size))
    return rows


def budget_lines(rows: list[dict[str, float | str]], n_cores: int) -> list[str]:
    """The CPU per event each replay target allows on ``n_cores`` cores, beside what replay spends.

    At ``r`` events/s on ``c`` fully busy cores, each event may cost at most ``c / r`` CPU seconds;
    what decoding and enrichment spend of that is what is left for the engine.
    """
    by = {str(r["stage"]): r for r in rows}
    out = []
    targets = []
    if "jsonl ceiling: polars read_ndjson(schema)" in by:
        ceiling = float(by["jsonl ceiling: polars read_ndjson(schema)"]["events_per_s"])
        targets.append(("jsonl", JSONL_TARGET_X_CEILING * ceiling))
    if "parquet replay end to end" in by:
        targets.append(("parquet", float(PARQUET_TARGET_EPS)))
    engine = by.get("parquet engine only")
    for fmt, target in targets:
        e2e = by.get(f"{fmt} replay end to end")
        if e2e is None:
            continue
        budget = n_cores / target * 1e6
        spent = float(e2e["cpu_us_per_event"])
        line = (
            f"{fmt} target {target:,.0f} events/s on {n_cores} cores: at most {budget:.1f} CPU µs per event; "
            f"replay spends {spent:.1f} ({spent / budget:.1f}x the budget, {float(e2e['cores_busy']):.2f} "
            f"cores busy; spread perfectly over the cores it would reach {n_cores / spent * 1e6:,.0f} "
            "events/s)"
        )
        front = by.get(f"{fmt} decode + enrich (prompt features)")
        if front is not None and engine is not None:
            left = budget - float(front["cpu_us_per_event"])
            line += (
                f". Decoding and enrichment alone spend {float(front['cpu_us_per_event']):.1f}, leaving "
                f"{left:.1f} for the engine, which spends {float(engine['cpu_us_per_event']):.1f}"
            )
        out.append(line)
    return out


def parts_lines(rows: list[dict[str, float | str]]) -> list[str]:
    """Parquet replay end to end beside the sum of its parts (reader and engine, CPU per event): what
    the stages do not account for. Replay's reader runs on its own thread while the engine works, so
    CPU adds up where wall time need not."""
    by = {str(r["stage"]): r for r in rows}
    names = ("parquet replay end to end", READER_ROW, "parquet engine only")
    e2e, reader, engine = (by.get(k) for k in names)
    if e2e is None or reader is None or engine is None:
        return []
    whole, read, work = (float(r["cpu_us_per_event"]) for r in (e2e, reader, engine))
    parts = read + work
    return [
        f"parquet replay end to end {whole:.1f} CPU µs per event; reader {read:.1f} + engine {work:.1f}"
        f" = {parts:.1f}; not accounted for "
        f"{whole - parts:+.1f} ({whole / parts:.2f}x the parts)"
    ]


def state_breakdown(state: WindowState) -> dict[str, Any]:
    """Bytes per tracked account of every state table and column (polars ``estimated_size``), and rows
    per tracked account of every table: where the state's bytes are."""
    n = max(state.accounts.height, 1)
    out: dict[str, Any] = {}
    for t in TABLES:
        frame = getattr(state, t)
        out[t] = {
            "rows_per_account": round(frame.height / n, 2),
            "bytes_per_account": round(frame.estimated_size() / n, 1),
            "columns": {c: round(frame.get_column(c).estimated_size() / n, 1) for c in frame.columns},
        }
    return out


def _state_memory(path: Path) -> dict[str, Any]:
    """Window-state size after replaying ``path``: total, per table, per tracked account."""
    from detector.app import build_engine
    from detector.runtime.replay import replay

    engine = build_engine()
    replay([path], engine, None)
    tables = engine.state.size_bytes()
    total = sum(tables.values())
    n = max(engine.state.accounts.height, 1)
    return {"accounts": n, "bytes": total, "bytes_per_account": total / n, "tables": tables}


def run_bench(
    jsonl: Path | None, parquet: Path | None, repeat: int = 3, console: Console | None = None
) -> list[dict[str, float | str]]:
    """Measure and print to ``console`` (default: stdout; ``detector bench --json`` passes a silent one);
    returns the rows (for tests and docs/benchmarks.md)."""
    out = console or Console()
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if jsonl is None:
        from detector.lab.simulate import simulate

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

    from detector.app import build_engine

    enricher = build_engine()

    def decode_enrich() -> int:
        return sum(enricher.enrich(c.batch.events).height for c in iter_jsonl(jsonl))

    n_events = 0
    for name, fn in (
        ("jsonl ceiling: polars read_ndjson(schema)", ceiling),
        ("jsonl decode (validation, rejects)", decode),
        ("jsonl decode + enrich (prompt features)", decode_enrich),
        ("jsonl replay end to end", _replay_fn(jsonl)),
    ):
        secs, n, cpu = _best(fn, repeat)
        n_events = n_events or n
        rows.append(_row(name, secs, n, cpu, size))
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
            secs, n, cpu = _best(fn, repeat)
            rows.append(_row(name, secs, n, cpu, psize))
        rows += _engine_rows(parquet, repeat, size=psize)
    t = Table(title=f"{n_events} events, {size / max(n_events, 1):.0f} bytes/event (JSONL), best of {repeat}")
    for col in ("stage", "events/s", "MB/s", "x ceiling", "CPU µs/event", "cores busy"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    ceil = {str(r["stage"]).split()[0]: r["events_per_s"] for r in rows if "ceiling" in str(r["stage"])}
    for r in rows:
        fmt = str(r["stage"]).split()[0]
        ratio = float(r["events_per_s"]) / float(ceil[fmt])
        r["x_ceiling"] = ratio
        t.add_row(
            str(r["stage"]),
            f"{float(r['events_per_s']):,.0f}",
            f"{float(r['mb_per_s']):.1f}",
            f"{ratio:.2f}",
            f"{float(r['cpu_us_per_event']):.1f}",
            f"{float(r['cores_busy']):.2f}",
        )
    out.print(t)
    for line in budget_lines(rows, cores()) + parts_lines(rows):
        out.print(line)
    mem = _state_memory(parquet if parquet is not None and parquet.exists() else jsonl)
    out.print(
        f"state after the run: {mem['accounts']:,} accounts tracked, {mem['bytes'] / 1e6:.1f} MB "
        f"({mem['bytes_per_account']:,.0f} bytes per tracked account; "
        + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in mem["tables"].items())
        + ")"
    )
    if tmp is not None:
        tmp.cleanup()
    return rows
