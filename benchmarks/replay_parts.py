"""Parquet replay end to end beside its parts, alternating in one interpreter (issue 13, round 18).

Three stages, run in turn ``--rounds`` times so that each sees the same load: replay end to end (a
fresh engine, alerts to a temporary file), replay's reader alone (its thread's work drained with no
engine: pieces, time guard, enrichment, reorder buffer) and the engine alone on the same events
decoded and enriched beforehand, fed as ``detector bench`` feeds them (``SLICE_ROWS`` slices of one
sorted frame). Each run also counts ``Engine.process`` calls, ``Engine._close_ticks`` passes and the
ticks those passes close, so the two engine paths' tick work can be compared. CPU per event is the
process's CPU time (all threads) over the events read.

    .venv/bin/python benchmarks/replay_parts.py FILE.parquet [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from detector.app import build_engine
from detector.engine import Engine
from detector.lab.bench.replay import engine_only, enriched, reader_only
from detector.runtime.replay import replay

CALLS: Counter[str] = Counter()


def _counted() -> None:
    """Count process() calls, close passes and the ticks they close (the engine's code is unchanged)."""
    process, close = Engine.process, Engine._close_ticks

    def counted_process(self: Engine, events: pl.DataFrame, **kw: Any) -> Any:
        CALLS["process"] += 1
        return process(self, events, **kw)

    def counted_close(self: Engine, first: datetime, last: datetime, **kw: Any) -> Any:
        CALLS["passes"] += 1
        CALLS["ticks"] += (last - first) // self.settings.windows.tick + 1
        return close(self, first, last, **kw)

    setattr(Engine, "process", counted_process)  # noqa: B010 - patched for counting only
    setattr(Engine, "_close_ticks", counted_close)  # noqa: B010


def stages(path: Path) -> dict[str, Callable[[], int]]:
    """The three stages, each returning the events it handled (the reader and the engine as ``bench``
    times them)."""

    def end_to_end() -> int:
        with tempfile.TemporaryDirectory() as tmp:
            return replay([path], build_engine(), Path(tmp) / "alerts.jsonl").records

    reader, engine = reader_only(path), engine_only(enriched(path))
    return {"replay end to end": end_to_end, "reader alone": reader, "engine alone": engine}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("file", type=Path, help="A Parquet file of gateway events.")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    _counted()
    runs: dict[str, list[float]] = {}
    plan = stages(args.file)
    for r in range(args.rounds):
        for name, fn in plan.items():
            CALLS.clear()
            c0, t0 = time.process_time(), time.perf_counter()
            n = fn()
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            runs.setdefault(name, []).append(cpu / n * 1e6)
            print(
                f"round {r} {name}: {cpu / n * 1e6:.1f} CPU µs/event, {n / wall:,.0f} events/s, "
                f"process() {CALLS['process']}, close passes {CALLS['passes']}, ticks {CALLS['ticks']}",
                flush=True,
            )
    best = {k: min(v) for k, v in runs.items()}
    parts = best["reader alone"] + best["engine alone"]
    print(
        f"best of {args.rounds}: replay {best['replay end to end']:.1f} CPU µs/event; reader "
        f"{best['reader alone']:.1f} + engine {best['engine alone']:.1f} = {parts:.1f} "
        f"({best['replay end to end'] / parts:.2f}x the parts)"
    )


if __name__ == "__main__":
    main()
