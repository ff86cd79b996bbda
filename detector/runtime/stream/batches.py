"""The daemon's batch path: what the processing thread does with one batch of decoded polls.

Screen event times (future or implausible ones go to the dead-letter sink), hand the events to the
event-time merge, feed what the merge releases to the engine and emit its alerts (and response decisions)
to the sinks; at the end of input, drain. ``Daemon`` (``daemon.py``) inherits ``BatchPath`` and holds the
state it reads (the attributes declared below); the run loop, the probes and the commit stay there. Also
here: what one run reports (``RunSummary``) and the benchmarks' timing hooks (``RunProbe``), both
imported from ``daemon`` too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

from detector.contracts import Alert
from detector.decide import DecisionBook, Policy
from detector.io.sinks import DeadLetter, Outputs
from detector.runtime.merge import OFF, PART, EventTimeMerge
from detector.runtime.stream.decoding import STAMP, Poll, take_polls
from detector.runtime.stream.settings import StreamSettings
from detector.window.eventtime import rejects as rejects_of

if TYPE_CHECKING:
    from detector.engine import Engine
    from detector.runtime.metrics import Metrics

__all__ = ["SYNC_EVERY_S", "BatchPath", "RunProbe", "RunSummary"]

#: Gauges copied from the engine (state size, accounts...) at most this often.
SYNC_EVERY_S = 1.0


@dataclass
class RunSummary:
    """What one daemon run read, counted and raised."""

    records: int = 0
    events_fed: int = 0
    rejects: int = 0
    alerts: int = 0
    commits: int = 0
    #: Every alert as sent (``keep_alerts``).
    alert_docs: list[dict[str, Any]] = field(default_factory=list)
    #: Batches dropped because a rebalance happened after they were polled (read again afterwards).
    stale_batches: int = 0
    rule_reloads: int = 0
    #: Partition assignments received (empty ones included) and memberships lost (the group evicted
    #: this replica, or a restarted broker forgot it): each loss drops the engine until the next one.
    assignments: int = 0
    losses: int = 0


class RunProbe(Protocol):
    """Timing hooks for benchmarks (``detector.lab.bench``); the daemon runs without one."""

    def records_read(self) -> None:
        """A batch with records is about to be processed."""

    def batch_read(self, newest_produced_ms: int) -> None:
        """Its records are decoded (``produced_at`` of the newest, ms; 0: none); the engine is next."""

    def batch_done(self) -> None:
        """The batch went through the merge and the engine."""

    def alerts_sent(self, count: int) -> None:
        """``count`` alerts were handed to the sinks."""

    def drained(self) -> None:
        """``drain_when_idle``: caught up, drained and committed."""


class BatchPath:
    """The batch path of ``Daemon``: its methods, and the daemon's state they read and change."""

    s: StreamSettings
    metrics: Metrics
    probe: RunProbe | None
    engine: Engine | None
    merge: EventTimeMerge
    summary: RunSummary
    outputs: Outputs | None
    _policy: Policy | None
    decider: DecisionBook | None
    lock: threading.RLock
    assigned: list[int]
    hw: dict[int, int | None]
    _dirty: bool
    _last_sync: float

    def highwater(self) -> dict[int, int | None]:
        """High-water offsets of the assigned partitions, as the consumer thread last saw them."""
        mine = set(self.assigned)
        return {p: h for p, h in self.hw.items() if p in mine}

    def _handle(self, polls: list[Poll]) -> None:
        if not polls:
            self._feed(self.merge.release(self.highwater()))
            return
        t0 = time.perf_counter()
        if self.probe is not None:
            self.probe.records_read()
        assert self.outputs is not None
        taken = take_polls(polls, self.merge.next_offset, self.s.input_topic, self.outputs.dead_letters)
        records, reasons, newest = taken.records, taken.reasons, taken.newest_produced
        if self.engine is not None and records:  # future or implausible event times never reach the clock
            topic = self.s.input_topic
            kept, screened = self.engine.time_guard.screen(
                taken.events, PART, ingest_now=datetime.now(UTC), stamp=STAMP
            )
            for (part, off), rej in zip(
                screened.select(PART, OFF).iter_rows(),
                rejects_of(screened, _kafka_position(topic)),
                strict=True,
            ):
                self.outputs.dead_letters.add(DeadLetter(rej, None, (topic, part, off)))
                reasons.append(rej.reason)
            taken.events = kept
        if not records:
            return
        if self.probe is not None:
            self.probe.batch_read(newest)
        events = taken.events.drop(STAMP, strict=False)  # the broker timestamps served the guard only
        self.merge.add(events, taken.consumed)
        self._feed(self.merge.release(self.highwater()))
        self._dirty = True
        self.summary.records += records
        self.summary.rejects += len(reasons)
        if self.probe is not None:
            self.probe.batch_done()
        self.metrics.record_batch(
            consumed=records,
            decoded=events.height,
            rejects=reasons,
            seconds=time.perf_counter() - t0,
        )

    def _feed(self, ready: pl.DataFrame | None) -> None:
        if ready is None or self.engine is None:
            return
        self.summary.events_fed += ready.height
        self._dirty = True
        self._emit(self.engine.process(ready.drop(PART, OFF)))

    def _emit(self, alerts: list[Alert]) -> None:
        assert self.outputs is not None
        for a in alerts:
            self.outputs.alerts.add(a.model_copy(update={"emitted_at": datetime.now(UTC)}))
        if self.decider is not None and self.engine is not None:
            decided = self.decider.on_alerts(alerts)
            if self.engine.closed_through is not None:
                decided += self.decider.advance(self.engine.closed_through)
            for d in decided:
                self.outputs.decisions.add(d)
            self.metrics.record_decisions(decided)
        self.summary.alerts += len(alerts)
        if alerts and self.probe is not None:
            self.probe.alerts_sent(len(alerts))
        self.metrics.record_alerts(alerts)

    def restore_decisions(self, extra: dict[str, Any]) -> None:
        """The decisions in force as of the checkpoint just loaded (a fresh book without one)."""
        if self._policy is not None:
            self.decider = DecisionBook(self._policy, dry_run=self.s.decisions_dry_run)
            self.decider.restore(extra.get("decisions") or {})

    def withdraw(self, alert_id: str) -> int:
        """An analyst's false positive: lift the alert's decisions in force now (event time: the last
        closed tick); the lifts go out with the next commit. Returns how many were lifted."""
        with self.lock:
            if self.decider is None or self.engine is None or self.outputs is None:
                return 0
            lifts = self.decider.withdraw(alert_id, self.engine.closed_through or datetime.now(UTC))
            for d in lifts:
                self.outputs.decisions.add(d)
            self.metrics.record_decisions(lifts)
            self._dirty = self._dirty or bool(lifts)
            return len(lifts)

    def _caught_up(self) -> bool:
        high = self.highwater()
        return bool(high) and all(
            h is not None and self.merge.next_offset.get(p, 0) >= h for p, h in high.items()
        )

    def _drain(self) -> None:
        """End of input on request: release everything held and close every pending tick."""
        assert self.engine is not None
        self._feed(self.merge.drain())
        self._emit(self.engine.flush())
        self._dirty = True

    def _maybe_sync(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_sync < SYNC_EVERY_S:
            return
        self._last_sync = now
        high = self.highwater()
        self.metrics.set_lag({p: max(0, h - self.merge.next_offset.get(p, 0)) for p, h in high.items() if h})
        if self.engine is None:
            return
        self.metrics.sync_engine(self.engine)
        newest = self.engine.max_event_ts
        if newest is not None:
            mark = newest - self.engine.settings.windows.allowed_lateness
            self.metrics.watermark_delay.set((datetime.now(UTC) - mark).total_seconds())


def _kafka_position(topic: str) -> Callable[[dict[str, object]], str]:
    return lambda row: f"{topic}/{row[PART]}@{row[OFF]}"
