"""Decoding polled records, on the processing thread or ahead of it in a worker process.

A poll's record values go through ``decode_poll``: JSON decoding and validation (rejects keep their
record's position), then the first, stateless stage of enrichment (``detector.enrich.enrich_prompt``:
the prompt-structure features, which read the prompt text and drop it). It is a
pure function of the values, so it can run anywhere: with ``decode_workers`` set, the consumer thread
hands each poll to a worker process as soon as it is polled and the processing thread later takes the
result in poll order, so decoding the next polls overlaps with the engine working on this one (the
processing thread's Python holds the GIL; a process does not share it). The rest of enrichment (IP
intelligence, request flags) stays in the engine, which skips the prompt features it finds done.

Nothing about offsets, commits or rebalances changes: a decoded poll is used, or dropped as stale,
exactly where the raw poll would have been (a stale poll's decode is cancelled if not yet started). A
worker that dies breaks the pool: the batch waiting on it fails and the daemon stops without a
checkpoint, or, if the consumer thread's next hand-off fails first, the daemon stops after checkpointing
only what it fully processed. Either way a restart reads the rest again. Workers ignore the signals a
terminal or service manager sends the whole process group, and exit when the daemon dies
(``detector.runtime.workers``). Workers run polars on its default thread pool (the one-thread setting
was withdrawn; an operator may set ``POLARS_MAX_THREADS=1`` for the whole daemon: docs/benchmarks.md).
"""

from __future__ import annotations

from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import polars as pl

from detector.deadletter import summarize
from detector.decode import DecodedBatch, Reject, decode_lines
from detector.enrich import enrich_prompt
from detector.enrich.prompt.hashing import TextKey
from detector.enrich.prompt_features import markers
from detector.io.sinks import DeadLetter, SinkGroup
from detector.runtime.cpu import pid_seconds
from detector.runtime.merge import OFF, PART
from detector.runtime.stream.source import Records, header_ms
from detector.runtime.workers import pool_pids, spawn_pool

#: Column of each event's Kafka record timestamp (ms since the epoch, CreateTime or LogAppendTime; 0:
#: none), read by the event-time guard (``EventTimeGuard.screen(stamp=...)``) and dropped after it.
STAMP = "_stamp"


def decode_poll(
    topic: str,
    values: list[bytes],
    parts: list[int],
    offs: list[int],
    stamps: list[int] | None = None,
    text_key: TextKey | None = None,
) -> DecodedBatch:
    """Decode one poll's values: events with their partition, offset and broker timestamp columns and
    prompt features (no prompt text; ``text_fp`` under ``text_key``, the engine's), and the rejects
    (``index``: the value's position in ``values``)."""
    batch = decode_lines(values, position_of=lambda i: f"{topic}/{parts[i]}@{offs[i]}")
    if batch.records == 0:  # only null or blank values: decoding sees no record, so none is rejected
        done = {r.index for r in batch.rejects}
        detail = "empty record (null or blank value)"
        batch.rejects += [
            Reject("not_json", None, detail, f"{topic}/{parts[i]}@{offs[i]}", summarize(v), i)
            for i, v in enumerate(values)
            if i not in done
        ]
    # the same columns whether or not any record was good: polls are concatenated and filtered on them
    idx = batch.events["_pos"]
    batch.events = enrich_prompt(
        batch.events.with_columns(
            pl.Series(PART, parts, pl.Int32).gather(idx),
            pl.Series(OFF, offs, pl.Int64).gather(idx),
            pl.Series(STAMP, stamps if stamps is not None else [0] * len(offs), pl.Int64).gather(idx),
        ).drop("_pos"),
        text_key,
    )
    return batch


@dataclass
class Poll:
    """One poll's records as the processing thread needs them, and their decoding (done or under way)."""

    parts: list[int]
    offs: list[int]
    keys: list[bytes | None]
    #: Per partition: the first and last offset in the poll (in order within a partition).
    spans: dict[int, tuple[int, int]]
    #: Newest ``produced_at`` header among the poll's records (ms since the epoch; 0: none).
    produced_at: int
    decoded: Future[DecodedBatch]

    @property
    def ready(self) -> bool:
        """Whether ``result`` returns without waiting for a worker (inline decoding never waits)."""
        return isinstance(self.decoded, _DeferredFuture) or self.decoded.done()

    def result(self) -> DecodedBatch:
        """The decoded poll (waits for the worker)."""
        return self.decoded.result()

    def cancel(self) -> None:
        """Drop a decode not yet started (the poll went stale in a rebalance)."""
        self.decoded.cancel()


@dataclass
class Taken:
    """Decoded polls as the merge takes them: their events, per partition the offset after the last
    record read, the records counted, the reject reasons and the newest ``produced_at`` (ms; 0: none)."""

    events: pl.DataFrame
    consumed: dict[int, int]
    records: int
    reasons: list[str]
    newest_produced: int


def take_polls(
    polls: list[Poll], next_offset: dict[int, int], topic: str, dead: SinkGroup[DeadLetter]
) -> Taken:
    """The decoded ``polls`` (waits for their workers), each rejected record added to ``dead``.

    Records before ``next_offset`` (already read) are dropped, never counted twice (defensive: seeks
    are per epoch).
    """
    nxt = dict(next_offset)
    frames: list[pl.DataFrame] = []
    reasons: list[str] = []
    consumed: dict[int, int] = {}
    records = 0
    newest = 0
    for poll in polls:
        batch = poll.result()
        events, rejects, count = batch.events, batch.rejects, len(poll.offs)
        if any(first < nxt.get(p, 0) for p, (first, _) in poll.spans.items()):
            floor = pl.col(PART).replace_strict(nxt, default=0, return_dtype=pl.Int64)
            events = events.filter(pl.col(OFF) >= floor)
            rejects = [r for r in rejects if poll.offs[r.index] >= nxt.get(poll.parts[r.index], 0)]
            count = sum(o >= nxt.get(p, 0) for p, o in zip(poll.parts, poll.offs, strict=True))
        if not count:
            continue
        for rej in rejects:
            i = rej.index
            key = poll.keys[i] if i >= 0 else None
            dead.add(DeadLetter(rej, key, (topic, poll.parts[i], poll.offs[i])))
        reasons += [r.reason for r in rejects]
        for p, (_, last) in poll.spans.items():
            if last >= nxt.get(p, 0):
                nxt[p] = consumed[p] = last + 1
        frames.append(events)
        records += count
        newest = max(newest, poll.produced_at)
    if not frames:
        return Taken(pl.DataFrame(), consumed, 0, reasons, newest)
    events = pl.concat(frames, how="vertical_relaxed") if len(frames) > 1 else frames[0]
    return Taken(events, consumed, records, reasons, newest)


class Decoder:
    """Runs ``decode_poll`` in ``workers`` processes (0: inline, when the result is asked for)."""

    def __init__(self, topic: str, workers: int, text_key: TextKey | None = None) -> None:
        self.topic = topic
        #: The owning engine's secret key on ``text_fp`` (set at each assignment); each job carries it to
        #: its worker in memory (never through the environment or a file).
        self.text_key = text_key
        self._pool: ProcessPoolExecutor | None = None
        if workers > 0:
            self._pool = spawn_pool(workers, _warm)  # spawns (and so sets up) every worker now

    def start(self, records: Records) -> Poll:
        """Take a poll (from a ``KafkaSource``) and start decoding it."""
        values, parts, offs = records.values, records.parts, records.offs
        stamps = [t if t > 0 else 0 for t in records.timestamps] if records.timestamps else None
        decoded: Future[DecodedBatch]
        if self._pool is not None and values:
            decoded = self._pool.submit(decode_poll, self.topic, values, parts, offs, stamps, self.text_key)
        else:
            decoded = _DeferredFuture((self.topic, values, parts, offs, stamps, self.text_key))
        return Poll(parts, offs, records.keys, records.spans, records.produced_at, decoded)

    def worker_cpu_seconds(self) -> float:
        """CPU seconds used so far by the live worker processes (benchmarks add it to the daemon's)."""
        if self._pool is None:
            return 0.0
        return sum(pid_seconds(pid) or 0.0 for pid in pool_pids(self._pool))

    def close(self) -> None:
        """Stop the worker processes (pending decodes are cancelled)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


_Args = tuple[str, list[bytes], list[int], list[int], list[int] | None, TextKey | None]


class _DeferredFuture(Future[DecodedBatch]):
    """A future that decodes when its result is first asked for, on the asking thread."""

    def __init__(self, args: _Args) -> None:
        super().__init__()
        self._args: _Args | None = args

    def result(self, timeout: float | None = None) -> DecodedBatch:
        if self._args is not None and not self.cancelled():
            args, self._args = self._args, None
            try:
                self.set_result(decode_poll(*args))
            except BaseException as exc:
                self.set_exception(exc)
        return super().result(timeout)


def _warm() -> None:
    markers()


def produced_at(record: Any) -> int:
    """The ``produced_at`` header (ms since the epoch) of a record, 0 if absent."""
    return header_ms(record.headers)
