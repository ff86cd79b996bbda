"""Offline replay: files -> decode -> enrich -> (event-time order) -> engine -> alert and dead-letter sinks.

Each file is decoded and enriched chunk by chunk (prompt text is gone before anything is kept), the
enriched events of all inputs are put in event-time order, and the engine consumes them in slices.
The engine's output depends only on the events, so two replays of the same input write byte-identical
alert files; alerts carry no ``emitted_at`` in replay.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from detector.engine import Engine
from detector.io.files import iter_file
from detector.io.sinks import JsonlSink

#: Events handed to the engine per call (the engine closes ticks by event time, not by slice).
SLICE_ROWS = 50_000


@dataclass
class ReplaySummary:
    """What a replay read, rejected and raised."""

    records: int = 0
    events: int = 0
    duplicates: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    alert_lines: int = 0
    bytes_read: int = 0


def replay(
    paths: list[Path],
    engine: Engine,
    alerts_out: Path | None,
    rejects_out: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplaySummary:
    """Run the engine over ``paths``; write alerts (and rejects) as JSON Lines; return the summary."""
    summary = ReplaySummary()
    alert_sink = JsonlSink(alerts_out) if alerts_out else None
    reject_sink = JsonlSink(rejects_out) if rejects_out else None
    enriched: list[pl.DataFrame] = []
    batch_dups = 0
    for path in paths:
        for chunk in iter_file(path):
            b = chunk.batch
            summary.records += b.records
            batch_dups += b.duplicates
            for r in b.rejects:
                summary.rejects[r.reason] += 1
                if reject_sink:
                    reject_sink.write_reject(r)
            if b.events.height:
                enriched.append(engine.enrich(b.events))
            summary.bytes_read += chunk.bytes_read
            if progress:
                progress(chunk.bytes_read)
    if enriched:
        events = pl.concat(enriched, how="vertical_relaxed")
        # event-time order across files; request_id breaks ties so the order never depends on input order
        events = events.sort("ts", "request_id")
        for start in range(0, events.height, SLICE_ROWS):
            for alert in engine.process(events.slice(start, SLICE_ROWS), enriched=True):
                summary.alerts[alert.severity] += 1
                if alert_sink:
                    alert_sink.write_alert(alert)
    for alert in engine.flush():
        summary.alerts[alert.severity] += 1
        if alert_sink:
            alert_sink.write_alert(alert)
    summary.events = engine.stats.events
    summary.duplicates = batch_dups + engine.stats.duplicates
    if alert_sink:
        summary.alert_lines = alert_sink.written
        alert_sink.close()
    if reject_sink:
        reject_sink.close()
    return summary
