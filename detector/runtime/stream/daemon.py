"""The streaming runner: Kafka -> decode -> event-time merge -> engine -> sinks, with one commit function.

The daemon and ``detector replay`` feed the same ``Engine`` through the same merge and sink protocol;
only the source differs. The runner alone knows offsets. The parts, each in its own module:

- ``consumer``: the consumer thread (polling, prefetch, coalescing, offset commits);
- ``decoding``: polls decoded (and prompt features computed) in worker processes, ahead of the engine;
- ``commit``: the numbered commit protocol (flush sinks, write the checkpoint with offsets, commit
  offsets) and fencing;
- ``rebalance``: what happens when the group revokes, loses or assigns partitions;
- ``reload``: rule reloads (SIGHUP or changed files);
- ``batches``: the batch path (screen, merge, engine, emit alerts and decisions), which ``Daemon``
  inherits, and ``RunSummary`` and ``RunProbe`` (imported from here too);
- this module: the processing loop, the probes and the commit.

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
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from detector.checkpoint import CheckpointFolder
from detector.contracts import Alert
from detector.decide import DecisionBook, load_policy
from detector.io.sinks import CallbackSink, Outputs, SinkError
from detector.runtime.merge import EventTimeMerge
from detector.runtime.stream.batches import BatchPath, RunProbe, RunSummary
from detector.runtime.stream.commit import Checkpoint, CheckpointFailed, Fenced
from detector.runtime.stream.consumer import Batch, ConsumerThread, make_source
from detector.runtime.stream.contexts import WaitInterrupted
from detector.runtime.stream.decoding import Decoder
from detector.runtime.stream.drain import GroupDrain
from detector.runtime.stream.faults import InputTopicWatch, fault_metrics, reset_partitions
from detector.runtime.stream.rebalance import Rebalance
from detector.runtime.stream.reload import RuleReloader
from detector.runtime.stream.settings import StreamSettings
from detector.runtime.stream.stages import Stage, assignment_folder
from detector.runtime.stream.statecheck import check_account_state, check_assignment, check_state

if TYPE_CHECKING:
    from detector.detect.rules import RuleWatcher
    from detector.engine import Engine, EngineFactory
    from detector.runtime.metrics import Metrics

__all__ = ["Batch", "Daemon", "Fenced", "RunProbe", "RunSummary"]

log = logging.getLogger("detector.stream")

#: The loop must come round within this long for ``/healthz`` to say alive (an engine tick can be slow).
LIVENESS_S = 120.0
#: How long ``run`` waits for the consumer thread to commit and close on the way out.
CLOSE_WAIT_S = 30.0


class Daemon(BatchPath):
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

        settings = settings.for_stage()  # a split stage's own group and state directory
        self.s = settings
        #: the two-stage split (``stages``; ``all``: one engine, nothing added)
        self.stage = Stage(settings, metrics.registry)
        self.rebalancing = threading.Event()  # a rebalance listener waits for the lock (``rebalance``)
        self.stop = stop or threading.Event()
        if self.stage.reader is not None:  # a rebalance or a stop gives a context wait up
            self.stage.reader.interrupted = lambda: self.rebalancing.is_set() or self.stop.is_set()
        self.factory = self.stage.factory(engine_factory)
        self.metrics = metrics
        self.observers = self.stage.observers(metrics.observers())
        self._on_alert = on_alert
        self.drain_when_idle = drain_when_idle
        #: ``--drain`` in the account stage: a member ends when every partition is drained (``drain``)
        self.group_drain = GroupDrain(settings) if drain_when_idle and settings.stage == "account" else None
        #: its share is drained and marked: it reads nothing more and waits for the group
        self.share_drained = False
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
        if self.s.stage != "account":
            self.reset_pending = check_state(self.folder, self.s, self.reset_pending)
        else:  # its state is per assignment: each folder is checked as it is used (``use_assignment``)
            check_account_state(self.s, self.reset_pending)
        outputs = self.outputs = self._make_outputs()
        if self._on_alert or self._keep_alerts:
            outputs.alerts.sinks.append(CallbackSink[Alert](self._collect))
        try:
            outputs.setup()
            self.stage.setup(outputs.dead_letters.add)  # the contexts topic; the set-aside records' sink
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
                if self.group_drain is not None:
                    self.group_drain.close()
                decoder.close()
                self.stage.close()
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
                return self._group_drained()  # standby, or between revocation and assignment
            self.hw = item.highwater
            try:
                return self._process(item)
            except WaitInterrupted:  # mid-batch: drop the state, as when lost; a checkpoint is read again
                self.engine, self.my_ckpt, self._dirty, self.share_drained = None, None, False, False
                if self.stop.is_set():
                    log.info("stopping mid-wait: the batch is dropped, read again from the checkpoint")
                else:
                    log.info("a rebalance is waiting: the batch is dropped, read again from the checkpoint")
                return False

    def _process(self, item: Batch) -> bool:
        """``_step``'s work on a batch, under the lock; True when drained."""
        if self.share_drained:  # the account stage's share is drained: read nothing, wait for the group
            return self._group_drained()
        if self.group_drain is not None:  # the log ends the wait will compare with, before reading to them
            self.group_drain.snapshot()
        self._handle(item.polls)
        self._maybe_sync()
        if self._dirty and time.monotonic() - self._last_commit >= self.s.commit_interval_s:
            self.commit("interval")
        if self.drain_when_idle and self._caught_up():
            self._drain()
            self.commit("drain")
            if self.group_drain is not None:
                if self._dirty:  # the checkpoint was not written: drain and commit again next batch
                    return False
                mine = set(self.assigned)  # the checkpoint is written: mark it
                self.group_drain.mark({p: o for p, o in self.merge.safe_offsets().items() if p in mine})
                self.share_drained = True
                return self._group_drained()
            if self.probe is not None:
                self.probe.drained()
            return True
        return False

    def _group_drained(self) -> bool:
        """The account stage under ``--drain``: whether every partition of the group is drained (a
        member whose share is drained, or that holds none, waits for that; ``drain``)."""
        if self.group_drain is None or not self.joined or not self.group_drain.done():
            return False
        log.info("the group's partitions are drained")
        if self.probe is not None:
            self.probe.drained()
        return True

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

    def use_assignment(self, partitions: list[int]) -> None:
        """An account stage's state for ``partitions``: their own folder (a new set starts empty),
        checked as it is taken (``check_assignment``: reset while ``--reset-state`` is pending)."""
        root = assignment_folder(self.s.state_dir, partitions)
        if self.folder.root != root:
            folder = CheckpointFolder(root, self.metrics.checkpoint_fallbacks.inc)
            check_assignment(folder, self.s, self.reset_pending)
            self.folder = folder
            self.checkpoint = Checkpoint(self.folder, self.s.input_topic, self.metrics)
            self.engine, self.my_ckpt, self._owner_epoch = None, None, 0

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
        self.stage.before_checkpoint(self.s.flush_timeout_s)  # the contexts out before the state moves on
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
