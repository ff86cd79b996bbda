"""The streaming runner: Kafka -> decode -> event-time merge -> engine -> sinks, with one commit function.

The daemon and ``detector replay`` feed the same ``Engine`` through the same merge and sink protocol;
only the source differs. The runner alone knows offsets. The parts, each in its own module:

- ``consumer``: the consumer thread (polling, prefetch, coalescing, offset commits);
- ``decoding``: polls decoded (and prompt features computed) in worker processes, ahead of the engine;
- ``commit``: the numbered commit protocol (flush sinks, write the checkpoint with offsets, commit
  offsets) and fencing;
- ``rebalance``: what happens when the group revokes, loses or assigns partitions;
- ``reload``: rule reloads (SIGHUP or changed files);
- this module: the processing loop.

A crash anywhere replays from the last checkpoint: events after it are read again and counted once
(the checkpoint did not count them), and the alerts they raise carry the same ``alert_id`` and
``revision`` (episodes are in the checkpoint), so the alerts topic holds each (id, revision) at least
once and nothing is lost. A send that fails makes the commit raise; the daemon then stops without
checkpointing (exit 3) so that a restart raises those alerts again. Any other error inside a batch
(the engine may have counted part of it) also stops it without a checkpoint.

Threads. The processing thread (the caller of ``run``) owns the merge, the engine and the sinks; the
consumer thread hands it batches through a bounded queue. The rebalance listener runs inside ``poll``
and takes the processing lock, so it waits for the batch being processed to finish.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

from detector.checkpoint import CheckpointFolder
from detector.contracts import Alert
from detector.decide import DecisionBook, load_policy
from detector.io.sinks import CallbackSink, DeadLetter, Outputs, SinkError
from detector.runtime.merge import OFF, PART, EventTimeMerge
from detector.runtime.stream.commit import Checkpoint, CheckpointFailed, Fenced
from detector.runtime.stream.consumer import Batch, ConsumerThread, make_source
from detector.runtime.stream.decoding import STAMP, Decoder, Poll, take_polls
from detector.runtime.stream.faults import InputTopicWatch, fault_metrics, reset_partitions
from detector.runtime.stream.rebalance import Rebalance
from detector.runtime.stream.reload import RuleReloader
from detector.runtime.stream.settings import StreamSettings
from detector.runtime.stream.statecheck import check_state
from detector.window.eventtime import rejects as rejects_of

if TYPE_CHECKING:
    from detector.detect.rules import RuleWatcher
    from detector.engine import Engine, EngineFactory
    from detector.runtime.metrics import Metrics

__all__ = ["Batch", "Daemon", "Fenced", "RunProbe", "RunSummary"]

log = logging.getLogger("detector.stream")

#: The loop must come round within this long for ``/healthz`` to say alive (an engine tick can be slow).
LIVENESS_S = 120.0
#: Gauges copied from the engine (state size, accounts...) at most this often.
SYNC_EVERY_S = 1.0
#: How long ``run`` waits for the consumer thread to commit and close on the way out.
CLOSE_WAIT_S = 30.0


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


class Daemon:
    """One replica: a consumer in the group; the owner of the input partitions runs the engine."""

    def __init__(
        self,
        settings: StreamSettings,
        engine_factory: EngineFactory,
        metrics: Metrics,
        *,
        stop: threading.Event | None = None,
        on_alert: Callable[[dict[str, Any]], None] | None = None,
        drain_when_idle: bool = False,
        keep_alerts: bool = False,
        rules: RuleWatcher | None = None,
        outputs: Callable[[], Outputs] | None = None,
        probe: RunProbe | None = None,
        reset_state: bool = False,
    ) -> None:
        from detector.runtime.stream.outputs import stream_outputs

        self.s = settings
        self.factory = engine_factory
        self.metrics = metrics
        self.observers = metrics.observers()
        self.stop = stop or threading.Event()
        self._on_alert = on_alert
        self.drain_when_idle = drain_when_idle
        self._keep_alerts = keep_alerts
        self.reloader = RuleReloader(rules, metrics) if rules is not None else None
        self.faults = fault_metrics(metrics.registry)
        self._make_outputs = outputs or partial(stream_outputs, settings, self.faults)
        self.probe = probe
        self.engine: Engine | None = None
        self.merge = EventTimeMerge(settings.idle_partition_s)
        self.summary = RunSummary()
        self.outputs: Outputs | None = None
        #: Response decisions (with a decisions topic or webhook); their state rides in the checkpoint.
        self._policy = (
            load_policy(settings.policy)
            if (settings.decisions_topic or settings.decisions_webhook_url)
            else None
        )
        self.decider: DecisionBook | None = None
        self.decoder: Decoder | None = None
        self.folder = CheckpointFolder(settings.state_dir, metrics.checkpoint_fallbacks.inc)
        #: ``--reset-state``: the state is moved aside at start, and the first assignment may read
        #: from the beginning despite the group's offsets (until this daemon's first checkpoint)
        self.reset_pending = reset_state
        self.checkpoint = Checkpoint(self.folder, settings.input_topic, metrics)
        self.assigned: list[int] = []
        self.owner = False
        self.joined = False
        self._dirty = False
        self.fatal: BaseException | None = None
        self.no_commit = False
        self.my_ckpt: str | None = None
        self._last_commit = time.monotonic()
        self._last_loop = time.monotonic()
        self._last_sync = 0.0
        # threads: the processing lock guards engine, merge, sinks and the fields above; the epoch
        # changes (under the lock) at every revocation and assignment
        self.lock = threading.RLock()
        self.epoch = 0
        self._owner_epoch = 0
        self.source = make_source(settings, lambda: self.owner)
        self.hw: dict[int, int | None] = {}
        reset = partial(reset_partitions, self)
        self.watch = InputTopicWatch(
            settings.input_topic, settings.on_topic_reset, self.faults, reset, self._set_fatal
        )
        self.consumer = ConsumerThread(
            settings, lambda: self.decoder, lambda: self.epoch, self.source, Rebalance(self), self.watch
        )

    # ------------------------------------------------------------------------------------------ probes
    def live(self) -> bool:
        """Liveness: the processing loop came round recently, and checkpoints have not been failing
        for ``checkpoint_stale_intervals`` commit intervals."""
        now = time.monotonic()
        failing = self.checkpoint.failing_since
        stale = self.s.commit_interval_s * self.s.checkpoint_stale_intervals
        return now - self._last_loop < LIVENESS_S and (failing is None or now - failing < stale)

    def ready(self) -> bool:
        """Readiness: joined the group (owner with state restored, or standby), not stopping, the broker
        reachable, no output topic missing, the event-time clock plausible with no pile of late events
        (``Engine.time_healthy``), and the last checkpoint written (not failed)."""
        clock_ok = self.engine is None or self.engine.time_healthy(datetime.now(UTC))
        saved = self.checkpoint.failing_since is None
        sinks_ok = self.outputs is None or not any(getattr(x, "failed", False) for x in self.outputs.all())
        up = self.joined and not self.stop.is_set() and self.fatal is None and self.consumer.error is None
        up = up and self.watch.connected
        return up and sinks_ok and clock_ok and saved

    def _set_fatal(self, exc: BaseException) -> None:  # the run loop raises it
        self.fatal = exc

    # ------------------------------------------------------------------------------------------ run
    def run(self) -> RunSummary:
        """Consume until ``stop`` is set (or, with ``drain_when_idle``, until caught up); then leave.

        The calling thread is the processing thread; a consumer thread is started and stopped here.
        Raises ``NoGoodCheckpoint`` before joining when the state directory holds no checkpoint that
        verifies (or none while the group has offsets), and ``CheckpointFailed`` at the end when the
        last checkpoint failed (the state on disk is behind: not a clean stop).
        """
        log.info("starting", extra={"settings": self.s.redacted()})
        self.reset_pending = check_state(self.folder, self.s, self.reset_pending)
        outputs = self.outputs = self._make_outputs()
        if self._on_alert or self._keep_alerts:
            outputs.alerts.sinks.append(CallbackSink[Alert](self._collect))
        try:
            outputs.setup()
        except BaseException:
            outputs.close()
            raise
        decoder = self.decoder = Decoder(self.s.input_topic, self.s.decode_workers)
        self.consumer.start()
        failed = False
        in_batch = False
        try:
            while not self.stop.is_set():
                self._last_loop = time.monotonic()
                item = self.consumer.next_batch(self.s.poll_timeout_ms / 1000)
                if self.fatal is not None:
                    raise self.fatal
                if self.consumer.error is not None:
                    raise RuntimeError("the consumer thread failed") from self.consumer.error
                self._maybe_reload_rules()
                in_batch = True
                if item is not None and self._step(item):
                    break
                in_batch = False
        except (SinkError, Fenced) as exc:
            failed = True
            self.no_commit = True  # not even from the revocation that closing the consumer triggers
            if isinstance(exc, SinkError):
                log.exception(
                    "a sink failed; stopping without a checkpoint so a restart raises the alerts again"
                )
            else:
                log.error("fenced by a newer owner; stopping without writing a checkpoint")
            raise
        except BaseException:
            if in_batch:  # the engine may hold part of the batch, its alerts not all handed to the sinks
                failed = True
                self.no_commit = True
                log.exception("processing failed mid-batch; stopping without a checkpoint")
            raise
        finally:
            try:
                if not failed:
                    with self.lock:
                        if self.engine is not None:
                            try:
                                self.commit("shutdown")
                            except BaseException:
                                # a failed flush cleared the sinks' failures: the revocation that
                                # closing the consumer triggers must not retry and checkpoint past them
                                self.no_commit = True
                                log.exception("shutdown commit failed; no checkpoint written")
                                raise
            finally:
                self.consumer.close(CLOSE_WAIT_S)
                decoder.close()
                outputs.close()
                log.info(
                    "stopped",
                    extra={"records": self.summary.records, "alerts": self.summary.alerts},
                )
        if self.checkpoint.failing_since is not None:
            raise CheckpointFailed(
                f"stopped with the last checkpoint failed ({self.checkpoint.failures} in a row); "
                "the state directory holds the last good one, and a restart reads the events since "
                "it again. Fix the volume (full, read-only, unmounted?) before restarting",
                str(self.s.state_dir),
            )
        return self.summary

    def _step(self, item: Batch) -> bool:
        """Process one batch from the consumer thread; True when the run is finished (drained)."""
        with self.lock:
            if item.epoch != self.epoch:
                self.summary.stale_batches += 1
                return False  # polled before a rebalance: read again from the checkpoint's offsets
            if self.engine is None or not self.assigned:
                return False  # standby, or between revocation and assignment
            self.hw = item.highwater
            self._handle(item.polls)
            self._maybe_sync()
            if self._dirty and time.monotonic() - self._last_commit >= self.s.commit_interval_s:
                self.commit("interval")
            if self.drain_when_idle and self._caught_up():
                self._drain()
                self.commit("drain")
                if self.probe is not None:
                    self.probe.drained()
                return True
        return False

    def _maybe_reload_rules(self) -> None:
        """Swap in a new rule set when the watcher has one; keep state (see ``reload``)."""
        new = self.reloader.poll() if self.reloader is not None else None
        if new is None:
            return
        with self.lock:  # between batches: a tick never sees two rule sets
            if self.engine is not None:
                self.engine.rules = new
        self.summary.rule_reloads += 1
        log.info("rules swapped in", extra={"rules": len(new)})

    def _collect(self, doc: dict[str, Any]) -> None:
        if self._keep_alerts:
            self.summary.alert_docs.append(doc)
        if self._on_alert:
            self._on_alert(doc)

    # ------------------------------------------------------------------------------------------ batches
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

    # ------------------------------------------------------------------------------------------ commit
    def commit(self, reason: str, *, in_listener: bool = False) -> None:
        """The commit protocol (``commit.Checkpoint``) on what the engine and the merge hold now.

        Called with the processing lock held (processing thread or rebalance listener). Inside a
        listener the offsets are committed asynchronously right there (the consumer is mid-``poll``);
        otherwise the consumer thread commits them before its next poll. Raises ``SinkError`` when a
        sink failed and ``Fenced`` when a newer owner wrote the current checkpoint.
        """
        if self.engine is None or self.outputs is None or not self._dirty or self.no_commit:
            return
        send = self.consumer.commit_now if in_listener else partial(self.consumer.request_commit, self.epoch)
        offsets = self.merge.safe_offsets()
        state: dict[str, Any] = {"input_topic_id": self.watch.expected}
        if self.decider is not None:
            state["decisions"] = self.decider.state()
        folder = self.checkpoint.commit(
            self.engine, self.outputs, offsets, self._owner_epoch, self.source.generation, send, state
        )
        if folder is None:
            self._last_commit = time.monotonic()  # failed: try again one interval later
            return
        self.reset_pending = False
        self.my_ckpt = folder.name
        self._dirty = False
        self._last_commit = time.monotonic()
        self.summary.commits += 1
        self._maybe_sync(force=True)
        log.debug("committed", extra={"reason": reason, "offsets": {str(p): o for p, o in offsets.items()}})


def _kafka_position(topic: str) -> Callable[[dict[str, object]], str]:
    return lambda row: f"{topic}/{row[PART]}@{row[OFF]}"
