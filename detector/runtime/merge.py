"""Event-time merge of the assigned partitions, and the offsets that are safe to checkpoint.

Kafka orders records within a partition only; a consumer may read one partition far ahead of another.
The engine closes a tick once its watermark (newest event minus the allowed lateness) passes it, so
feeding it a partition that runs ahead would make the other partitions' events late. The merge holds
events back until every partition that still has records to give has reached them: the merge watermark
is the minimum over the busy partitions of the newest event time read from each. A partition is idle
(does not hold the merge back) once it is caught up and has been quiet for ``idle_after_s``.

Held events are not in the engine, so the checkpoint must not count them: the safe offset of a
partition is the offset of its oldest held event (or the next offset to read when none is held). After
a restart those records are read again; anything read again that the engine had already counted is
dropped by its request-id de-duplication.

Replay uses the same merge over files (each file a partition, chunks for records): a file that is read
to its end is caught up, and with ``strict`` the merge releases only events strictly before the
watermark, so a time-ordered file's next chunk can never bring an event that sorts before a released
one (its events at the watermark's instant may still be coming). For files that are not in time order,
``lateness`` turns the merge into a reorder buffer bounded by event time: it releases only events older
than the watermark minus ``lateness``, so events up to that much out of order still reach the engine in
time order, and memory holds ``lateness`` worth of events (plus a chunk), whatever the input's size. An
event later than that is released with the next slice: the engine counts it late and folds it into its
current tick, as it does for the daemon.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

import polars as pl

PART = "_part"
OFF = "_off"


class EventTimeMerge:
    """Holds decoded events (with ``_part`` and ``_off`` columns) until the merge watermark passes them."""

    def __init__(
        self,
        idle_after_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        strict: bool = False,
        lateness: timedelta = timedelta(0),
    ) -> None:
        self.idle_after_s = idle_after_s
        self._clock = clock
        self.strict = strict
        #: How far out of time order a partition's events may be and still be released in order.
        self.lateness = lateness
        self._held: list[pl.DataFrame] = []
        self.next_offset: dict[int, int] = {}
        self.newest: dict[int, datetime] = {}
        self._last_record: dict[int, float] = {}

    def reset(self, partitions: dict[int, int]) -> None:
        """Forget everything; ``partitions`` maps each assigned partition to its starting offset."""
        self._held = []
        self.next_offset = dict(partitions)
        self.newest = {}
        self._last_record = {}

    def add(self, events: pl.DataFrame, consumed: dict[int, int], part: int | None = None) -> None:
        """Take decoded events and, per partition, the offset after the last record read (rejects too).

        ``part``: every event is from this partition (no ``_part`` column needed; replay's files).
        """
        now = self._clock()
        for p, nxt in consumed.items():
            self.next_offset[p] = max(nxt, self.next_offset.get(p, 0))
            self._last_record[p] = now
        if events.height == 0:
            return
        self._held.append(events)
        if part is not None:
            newest_ts = events.get_column("ts").max()
            assert isinstance(newest_ts, datetime)
            rows: list[tuple[int, datetime]] = [(part, newest_ts)]
        else:
            rows = list(events.group_by(PART).agg(pl.col("ts").max()).iter_rows())
        for p, newest in rows:
            old = self.newest.get(p)
            self.newest[p] = newest if old is None else max(old, newest)

    def held(self) -> int:
        """Events held back."""
        return sum(f.height for f in self._held)

    def watermark(self, highwater: dict[int, int | None]) -> datetime | bool | None:
        """The merge watermark: a time, ``True`` (every partition idle: release all) or ``None`` (wait)."""
        now = self._clock()
        busy: list[datetime] = []
        for part, high in highwater.items():
            caught_up = high is not None and self.next_offset.get(part, 0) >= high
            quiet = now - self._last_record.get(part, float("-inf")) >= self.idle_after_s
            if caught_up and quiet:
                continue
            newest = self.newest.get(part)
            if newest is None:
                return None
            busy.append(newest)
        return min(busy) if busy else True

    def release(self, highwater: dict[int, int | None]) -> pl.DataFrame | None:
        """Events at or before the merge watermark, in event-time order; the rest stay held."""
        if not self._held:
            return None
        mark = self.watermark(highwater)
        if mark is None:
            return None
        held = pl.concat(self._held, how="vertical_relaxed") if len(self._held) > 1 else self._held[0]
        if mark is True:
            ready, rest = held, held.clear()
        else:
            assert isinstance(mark, datetime)
            mark -= self.lateness
            cond = pl.col("ts") < mark if self.strict else pl.col("ts") <= mark
            ready, rest = held.filter(cond), held.filter(~cond)
        self._held = [rest] if rest.height else []
        return ready.sort("ts", "request_id") if ready.height else None

    def drain(self) -> pl.DataFrame | None:
        """Everything held (shutdown with an explicit drain)."""
        return self.release({})

    def safe_offsets(self) -> dict[int, int]:
        """Per partition, the offset from which a restart must read so that no held event is lost."""
        safe = dict(self.next_offset)
        for frame in self._held:
            for part, oldest in frame.group_by(PART).agg(pl.col(OFF).min()).iter_rows():
                safe[part] = min(safe.get(part, oldest), oldest)
        return safe
