"""Offline replay: files -> decode -> enrich -> (event-time order) -> engine -> alert and dead-letter sinks.

Each file is decoded and enriched chunk by chunk (prompt text is gone before anything is kept) and
the engine consumes the events in event-time order, in slices. A reader thread decodes and enriches
chunks and merges the files through the daemon's ``EventTimeMerge`` (each file a partition), while the
engine works on the previous release. The reader decodes a piece only while the released frames the
engine has not finished weigh at most ``EngineSettings.replay_inflight_mb`` (polars ``estimated_size``):
a read-ahead bounded in bytes, not in rows. The merge is a **reorder buffer bounded by event time**: it
releases an event once every file still being read has reached a time later than the event by more
than the bound (``lateness``; default the engine's ``allowed_lateness``). Memory holds the bound's worth
of events plus that read-ahead, whatever the input's size, so a month of gateway logs (nearly in time
order, in any format) replays on one machine.

Released slices are sorted by (ts, request_id), and the engine's output does not depend on how its
input is sliced, so any input whose disorder stays within the bound (a time-ordered file; a log
shuffled within 5-minute windows) writes the alerts a global sort would. An event later than the
bound is not dropped: it reaches the engine with the next slice, which counts it late and folds it
into its current tick exactly as the daemon does (``ReplaySummary.late``). (The dead-letter file holds
the same rejects whatever the bound; with several files they are written in the order the merge reads
the chunks.) The engine's output depends only on the events, so two replays of the same input write
byte-identical alert files; alerts carry no ``emitted_at`` in replay.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import queue
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from detector.contracts import Alert
from detector.decide import Decision, DecisionBook
from detector.engine import Engine
from detector.io.files import Chunk, iter_jsonl, iter_parquet
from detector.io.sinks import DeadLetter, JsonlSink, Outputs
from detector.runtime.merge import EventTimeMerge
from detector.schema import EPOCH, parse_ts
from detector.window.eventtime import rejects

#: Exit status of ``detector replay`` when it completed but rejected some inputs (records, Parquet rows
#: or whole unreadable files; each is in the rejects file with its reason and position).
EXIT_REJECTED_INPUTS = 5
#: Most events handed to the engine per call (the engine closes ticks by event time, not by slice).
SLICE_ROWS = 50_000
#: Rows of Parquet decoded and enriched at a time, each piece handed to the merge on its own (prompt
#: text gone). Decoding holds every prompt of its rows: 100,000 at once peaked at 1,041 MB with the
#: engine idle on a 964,000-event tile, 25,000 at 596 MB, for the same alerts (docs/benchmarks.md,
#: Scale). Until round 22 pieces were joined into chunks of 100,000 before the merge, and two such
#: chunks queued: ~510,000 events in flight on a busy day; the byte bound replaced both.
PIECE_ROWS = 25_000
#: Bytes read from the head of a file to learn the earliest time it starts with.
HEAD_BYTES = 1 << 20
#: Bytes per JSON Lines chunk (~50,000 events of 1.3 KB): with the Parquet chunk, what bounds memory
#: besides the reorder bound, so a file of any size is read in pieces of this size.
STREAM_BYTES = 64 << 20


@dataclass
class ReplaySummary:
    """What a replay read, rejected and raised."""

    records: int = 0
    events: int = 0
    duplicates: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    #: Alert episodes (the counting unit: one per alert_id) by the severity of their latest revision.
    episodes: Counter[str] = field(default_factory=Counter)
    #: Alert records written: each episode's first record and its updates.
    revisions: int = 0
    bytes_read: int = 0
    #: decisions by "op:action" (apply:fallback_model, lift:monitor, ...)
    decisions: Counter[str] = field(default_factory=Counter)
    #: Events older than a tick the engine had closed (out of order by more than the bound), counted
    #: and folded into the current tick as the daemon does.
    late: int = 0
    #: The most bytes (``estimated_size``) of released frames the engine had not finished at one time:
    #: at most the read-ahead bound plus one release (``replay_inflight_mb``; the reorder buffer apart).
    inflight_peak: int = 0


def replay(
    paths: list[Path],
    engine: Engine,
    alerts_out: Path | None,
    rejects_out: Path | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    outputs: Outputs | None = None,
    decider: DecisionBook | None = None,
    decisions_out: Path | None = None,
    lateness: timedelta | None = None,
    inflight_bytes: int | None = None,
) -> ReplaySummary:
    """Run the engine over ``paths``; write alerts (and rejects) as JSON Lines; return the summary.

    ``outputs``: more sinks (any ``Sink``), set up, flushed and closed here with the files' sinks.
    With a ``decider`` the alerts also become decisions and lifts (``outputs.decisions``, and
    ``decisions_out`` as JSON Lines); lifts fall due by event time, as far as the engine has closed
    its ticks.
    ``lateness``: the reorder bound (how far out of time order the input may be and still be replayed
    as if sorted); ``None``: the engine's ``windows.allowed_lateness``.
    ``inflight_bytes``: the read-ahead bound; ``None``: the engine's ``replay_inflight_mb``.
    """
    summary = ReplaySummary()
    out = outputs or Outputs()
    if alerts_out:
        out.alerts.sinks.insert(0, JsonlSink[Alert](alerts_out))
    if rejects_out:
        out.dead_letters.sinks.insert(0, JsonlSink[DeadLetter](rejects_out))
    if decisions_out:
        out.decisions.sinks.insert(0, JsonlSink[Decision](decisions_out))
    out.setup()
    batch_dups = 0
    latest: dict[str, str] = {}  # alert_id -> severity of its latest revision
    bound = engine.settings.windows.allowed_lateness if lateness is None else lateness
    gate = (
        ReadAhead.of(engine.settings.replay_inflight_mb)
        if inflight_bytes is None
        else ReadAhead(inflight_bytes)
    )

    def take(chunk: Chunk) -> pl.DataFrame:
        """Count a decoded chunk, write its rejects, return its enriched events."""
        nonlocal batch_dups
        b = chunk.batch
        summary.records += b.records
        batch_dups += b.duplicates
        for r in b.rejects:
            summary.rejects[r.reason] += 1
            out.dead_letters.add(DeadLetter(r))
        summary.bytes_read += chunk.bytes_read
        if progress:
            progress(chunk.bytes_read)
        # no ingest clock here: an event far ahead of its file's recent events is a future timestamp
        events, screened = engine.time_guard.screen(b.events, key=str(chunk.path))
        for r in rejects(screened, lambda row: f"{chunk.path}: request {row['request_id']}"):
            summary.rejects[r.reason] += 1
            out.dead_letters.add(DeadLetter(r))
        return engine.enrich(events) if events.height else events

    def decide(decisions: list[Decision]) -> None:
        for d in decisions:
            summary.decisions[f"{d.op}:{d.action}"] += 1
            out.decisions.add(d)

    def emit(alerts: list[Alert]) -> None:
        for alert in alerts:
            summary.revisions += 1
            latest[alert.alert_id] = alert.severity.value
            out.alerts.add(alert)
        if decider is not None:
            decide(decider.on_alerts(alerts))
            if engine.closed_through is not None:
                decide(decider.advance(engine.closed_through))

    try:
        parts = _streamed(paths, take, bound, gate)
        with contextlib.closing(parts):  # an engine error stops the reader thread at once
            for part in parts:
                for start in range(0, part.height, SLICE_ROWS):
                    emit(engine.process(part.slice(start, SLICE_ROWS), enriched=True))
                del part  # not alive while the next one is awaited (the gate no longer counts it)
        emit(engine.flush())
        out.flush()
    finally:
        out.close()
    summary.events = engine.stats.events
    summary.duplicates = batch_dups + engine.stats.duplicates
    summary.late = engine.stats.late
    summary.inflight_peak = gate.peak
    summary.episodes = Counter(latest.values())
    return summary


class ReadAhead:
    """The bytes of released frames that the engine has not finished, and a wait for room under a bound.

    The reader ``wait``s before decoding each piece and ``add``s each frame it releases; the engine's side
    ``done``s a frame once every slice of it is processed. A frame is added after a wait that found at
    most ``limit`` in flight, so at most ``limit`` plus one release is ever in flight (``peak``); a limit
    under one frame means one frame at a time. The engine never waits on the reader's bound: when its
    queue is empty nothing is in flight, so the reader always has room.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0
        self._cond = threading.Condition()

    @classmethod
    def of(cls, mb: float) -> ReadAhead:
        """A gate of ``mb`` MB (``EngineSettings.replay_inflight_mb``)."""
        return cls(int(mb * (1 << 20)))

    def add(self, nbytes: int) -> None:
        with self._cond:
            self.held += nbytes
            self.peak = max(self.peak, self.held)

    def done(self, nbytes: int) -> None:
        with self._cond:
            self.held -= nbytes
            self._cond.notify_all()

    def wait(self, stop: threading.Event) -> None:
        """Return once at most ``limit`` bytes are in flight (or ``stop`` is set)."""
        with self._cond:
            while self.held > self.limit and not stop.is_set():
                self._cond.wait(0.1)


def _enriched(path: Path, take: Callable[[Chunk], pl.DataFrame]) -> Iterator[pl.DataFrame]:
    """A file's enriched events (``take``), piece by piece: Parquet ``PIECE_ROWS`` rows at a time,
    JSON Lines ``STREAM_BYTES`` at a time."""
    if path.suffix != ".parquet":
        yield from (take(chunk) for chunk in iter_jsonl(path, STREAM_BYTES))
        return
    yield from (take(chunk) for chunk in iter_parquet(path, PIECE_ROWS))


def _starts_at(path: Path) -> datetime | None:
    """The earliest event time among a file's first records (``None``: none could be read).

    A file that starts later than the merge has reached holds nothing back until then, so a folder of
    daily logs is read one file after another, not one chunk of every file at once (memory would grow
    with the number of files). Files that overlap in time are still read side by side.
    """
    try:
        if path.suffix == ".parquet":
            head = pl.scan_parquet(path).select(pl.col("ts").cast(pl.String)).head(1_000).collect()
        else:
            with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as fh:
                data = fh.read(HEAD_BYTES)
            data = data[: data.rfind(b"\n") + 1]
            head = pl.read_ndjson(io.BytesIO(data), schema={"ts": pl.String}, ignore_errors=True)
        first = head.select(parse_ts(pl.col("ts")).min()).item()
    except Exception:  # an unreadable head: the file is read from the start like any other
        return None
    return first if isinstance(first, datetime) else None


def _streamed(
    paths: list[Path], take: Callable[[Chunk], pl.DataFrame], lateness: timedelta, gate: ReadAhead
) -> Generator[pl.DataFrame]:
    """Files merged on a reader thread, through a reorder buffer ``lateness`` deep; yields released
    frames as they are ready, the reader staying at most ``gate``'s bytes ahead of the engine.

    The merge is the daemon's (``EventTimeMerge``): each file is a partition, and a file read to its end
    is caught up (its high-water mark is known) and so holds nothing back.
    """
    # unbounded in frames: the gate bounds it in bytes
    out: queue.Queue[tuple[pl.DataFrame, int] | BaseException | None] = queue.Queue()
    stop = threading.Event()

    def put(item: tuple[pl.DataFrame, int] | BaseException | None) -> None:
        out.put(item)

    def read() -> None:
        try:
            readers = {i: _enriched(p, take) for i, p in enumerate(paths)}
            merge = EventTimeMerge(idle_after_s=0.0, strict=True, lateness=lateness)
            merge.reset(dict.fromkeys(readers, 0))
            for i, p in enumerate(paths):  # a file brings nothing before it starts (minus the bound)
                if (start := _starts_at(p)) is not None:
                    merge.newest[i] = start
            # a file still being read has no high-water mark yet; a finished one is caught up
            highwater: dict[int, int | None] = dict.fromkeys(readers)
            while readers and not stop.is_set():
                # read from the file that is furthest behind, so the merge watermark keeps moving
                i = min(readers, key=lambda j: (merge.newest.get(j, EPOCH), j))
                gate.wait(stop)
                if stop.is_set():
                    break
                events = next(readers[i], None)
                if events is None:
                    del readers[i]
                    highwater[i] = merge.next_offset[i]
                else:
                    merge.add(events, {i: merge.next_offset[i] + 1}, part=i)
                del events  # the merge holds it until released (a filtered copy then)
                ready = merge.release(highwater)
                if ready is not None:
                    nbytes = int(ready.estimated_size())
                    gate.add(nbytes)
                    put((ready, nbytes))
                del ready  # the engine's now: counted in flight until it is done with it
            put(None)
        except BaseException as exc:  # handed to the engine thread, which raises it
            put(exc)

    thread = threading.Thread(target=read, name="replay-reader", daemon=True)
    thread.start()
    try:
        while (item := out.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            frame, nbytes = item
            del item
            yield frame
            del frame  # the engine is done with it (it asks for the next)
            gate.done(nbytes)
    finally:
        stop.set()
        thread.join()
