"""The streaming runner: Kafka -> decode -> event-time merge -> engine -> sinks, with one commit function.

The daemon and ``detector replay`` feed the same ``Engine``; only the source differs. The runner alone
knows offsets.

Commit order (``Daemon.commit``), and why:

1. **flush the sinks** (wait for the alert and dead-letter acknowledgements, post webhooks). The
   checkpoint is about to say "these events are counted"; their alerts must be delivered first, or a
   crash right after the checkpoint would lose them (the restored engine would not raise them again).
2. **write the checkpoint**, window state, open alert episodes, buffered events, the clock *and the
   consumed offsets per partition* in one atomic folder switch, so state and offsets can never
   disagree. The offsets are the merge's safe offsets: events the merge still holds are not counted.
3. **commit the offsets to Kafka**, for lag dashboards and tooling only. On start or assignment the
   daemon seeks to the checkpoint's offsets, never to the group's committed ones; a crash between 2
   and 3 therefore costs nothing.

A crash anywhere replays from the last checkpoint: events after it are read again and counted once
(the checkpoint did not count them), and the alerts they raise carry the same ``alert_id`` and
``revision`` (episodes are in the checkpoint), so the alerts topic holds each (id, revision) at least
once and nothing is lost. A send that fails makes the commit raise; the daemon then stops without
checkpointing (exit 3) so that a restart raises those alerts again. Any other error inside a batch
(the engine may have counted part of it) also stops it without a checkpoint.

Threads. kafka-python consumers are not thread-safe, so one *consumer thread* owns the
``KafkaConsumer``: it creates, subscribes, polls, pauses/resumes, commits offsets and closes it, and
nothing else touches it. It hands each polled batch (records plus a high-water snapshot, tagged with the
assignment *epoch*) to the *processing thread* (the caller of ``run``) through a bounded queue, so
fetching and parsing the next records overlaps with decoding and the engine. Each poll's values go to a
decoding worker process as soon as they are polled (``decode_workers``; ``detector.runtime.stream.decoding``),
so decoding overlaps too. The processing thread owns the merge, the engine and the sinks; it asks for
offset commits through a command queue that the consumer thread executes between polls. The rebalance
listener runs inside ``poll`` (kafka-python 3 runs it on the client's IO thread while the consumer
thread waits in ``poll``); it takes the processing lock, so it waits for the batch being processed to
finish, then bumps the epoch (batches still queued were polled under the old assignment: they are
dropped, not counted, and read again from the checkpoint's offsets), commits (flush, checkpoint of
exactly what the engine and the merge hold) and only then lets the rebalance go on.
``on_partitions_lost`` (the group already evicted this member) drops the in-memory state without writing
a checkpoint: another owner may already be writing.

Fencing. Each owner takes an *owner epoch* one above the one in the current checkpoint when it is
assigned the partitions, writes it at once (a claim checkpoint) and stores it in every checkpoint's
``extra``; a commit that finds a newer epoch in the current checkpoint refuses to write (``Fenced``,
exit 4): a paused owner that the group replaced cannot overwrite its successor's state.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from kafka import ConsumerRebalanceListener
from prometheus_client import Counter

from detector.checkpoint import load_engine, save_engine
from detector.contracts import Alert
from detector.io.kafka import SinkError, StreamSinks
from detector.runtime.cpu import own_seconds
from detector.runtime.merge import OFF, PART, EventTimeMerge
from detector.runtime.stream.assignor import SingleOwnerAssignor
from detector.runtime.stream.decoding import Decoder, Poll
from detector.runtime.stream.settings import StreamSettings

if TYPE_CHECKING:
    from detector.detect.rules import RuleWatcher
    from detector.engine import Engine
    from detector.runtime.metrics import Metrics

log = logging.getLogger("detector.stream")

#: The loop must come round within this long for ``/healthz`` to say alive (an engine tick can be slow).
LIVENESS_S = 120.0
#: Gauges copied from the engine (state size, accounts...) at most this often.
SYNC_EVERY_S = 1.0
#: While the prefetch queue is full the consumer thread still polls (all partitions paused) this often.
KEEPALIVE_S = 1.0
#: How long ``run`` waits for the consumer thread to commit and close on the way out.
CLOSE_WAIT_S = 30.0


class Fenced(RuntimeError):
    """A newer owner (higher owner epoch) wrote the current checkpoint; this replica must not write."""


@dataclass
class RunSummary:
    """What one daemon run read, counted and raised."""

    records: int = 0
    events_fed: int = 0
    rejects: int = 0
    alerts: int = 0
    commits: int = 0
    alert_docs: list[dict[str, Any]] = field(default_factory=list)
    #: Per batch that raised alerts: wall seconds from the produce of its newest record (``produced_at``
    #: header, when the producer sets one) to the alerts' hand-off to the sinks.
    alert_latency_s: list[float] = field(default_factory=list)
    #: Per non-empty batch: wall seconds from the produce of its newest record to the end of its
    #: processing (decoded, merged, released events through the engine).
    batch_latency_s: list[float] = field(default_factory=list)
    #: Monotonic clock at the first record read and at the end of the run (throughput figures), and
    #: the CPU seconds of the process (all threads) and its decoding workers at the same two moments.
    first_record_at: float | None = None
    finished_at: float | None = None
    first_record_cpu: float | None = None
    finished_cpu: float | None = None
    #: Batches dropped because a rebalance happened after they were polled (read again afterwards).
    stale_batches: int = 0
    rule_reloads: int = 0


@dataclass
class _Batch:
    """Polled records (one poll, or several coalesced), handed from the consumer thread to the
    processing thread; no polls: an idle marker (the merge's timing still moves)."""

    epoch: int
    polls: list[Poll]
    #: High-water offset per assigned partition, read on the consumer thread right after the poll.
    highwater: dict[int, int | None]

    @property
    def records(self) -> int:
        return sum(len(p.offs) for p in self.polls)


class Daemon:
    """One replica: a consumer in the group; the owner of the input partitions runs the engine."""

    def __init__(
        self,
        settings: StreamSettings,
        engine_factory: Callable[[], Engine],
        metrics: Metrics,
        *,
        stop: threading.Event | None = None,
        on_alert: Callable[[dict[str, Any]], None] | None = None,
        drain_when_idle: bool = False,
        keep_alerts: bool = False,
        rules: RuleWatcher | None = None,
    ) -> None:
        self.s = settings
        self._factory = engine_factory
        self.metrics = metrics
        self.stop = stop or threading.Event()
        self._on_alert = on_alert
        self.drain_when_idle = drain_when_idle
        self._keep_alerts = keep_alerts
        self.rules = rules
        self.engine: Engine | None = None
        self.merge = EventTimeMerge(settings.idle_partition_s)
        self.summary = RunSummary()
        self._consumer: Any = None
        self._sinks: StreamSinks | None = None
        self._assigned: list[Any] = []
        self._owner = False
        self._joined = False
        self._dirty = False
        self._fatal: BaseException | None = None
        self._no_commit = False
        self._my_ckpt: str | None = None
        self._last_commit = time.monotonic()
        self._last_loop = time.monotonic()
        self._last_sync = 0.0
        self._newest_produced = 0
        # threads: the processing lock guards engine, merge, sinks and the fields above; the epoch
        # changes (under the lock) at every revocation and assignment
        self._lock = threading.RLock()
        self._epoch = 0
        self._owner_epoch = 0
        self._assignor = SingleOwnerAssignor(lambda: self._owner)
        self._batches: queue.Queue[_Batch] = queue.Queue()
        #: A batch taken from the queue while coalescing but left for the next turn (another epoch, an
        #: idle marker, or polls still being decoded).
        self._held: _Batch | None = None
        self._taken = threading.Event()
        self._commands: queue.Queue[tuple[int, dict[int, int]]] = queue.Queue()
        self._closing = threading.Event()
        self._consumer_error: BaseException | None = None
        self._hw: dict[int, int | None] = {}
        self._decoder: Decoder | None = None
        self._reloads = (
            Counter(
                "detector_rule_reloads_total",
                "Rule reloads (SIGHUP or changed files) by result.",
                ["result"],
                registry=metrics.registry,
            )
            if rules is not None
            else None
        )
        if self._reloads is not None:
            for result in ("ok", "failed"):
                self._reloads.labels(result=result)

    # ------------------------------------------------------------------------------------------ probes
    def live(self) -> bool:
        """Liveness: the processing loop came round recently."""
        return time.monotonic() - self._last_loop < LIVENESS_S

    def ready(self) -> bool:
        """Readiness: joined the group (owner with state restored, or standby) and not stopping."""
        return self._joined and not self.stop.is_set() and self._fatal is None

    # ------------------------------------------------------------------------------------------ run
    def run(self) -> RunSummary:
        """Consume until ``stop`` is set (or, with ``drain_when_idle``, until caught up); then leave.

        The calling thread is the processing thread; a consumer thread is started and stopped here.
        """
        from kafka import KafkaProducer

        log.info("starting", extra={"settings": self.s.redacted()})
        producer = KafkaProducer(
            **self.s.kafka_common(),
            acks="all",
            linger_ms=20,
            max_request_size=8 << 20,
            retries=2**31 - 1,
            # at-least-once with (alert_id, revision) as the identity; idempotent producer ids do not
            # survive a broker that lost its state (the embedded broker keeps everything in memory)
            enable_idempotence=False,
        )
        sink_cb = self._collect if (self._on_alert or self._keep_alerts) else None
        self._sinks = StreamSinks(
            producer,
            self.s.alerts_topic,
            self.s.dead_letter_topic,
            self.s.alerts_file,
            self.s.webhook_url,
            self.s.webhook_timeout_s,
            sink_cb,
        )
        self._closing.clear()
        self._decoder = Decoder(self.s.input_topic, self.s.decode_workers)
        consumer_thread = threading.Thread(target=self._consume, name="detector-consumer", daemon=True)
        consumer_thread.start()
        failed = False
        in_batch = False
        try:
            while not self.stop.is_set():
                self._last_loop = time.monotonic()
                try:
                    if self._held is not None:
                        first, self._held = self._held, None
                    else:
                        first = self._batches.get(timeout=self.s.poll_timeout_ms / 1000)
                    item: _Batch | None = self._coalesce(first)
                    self._taken.set()
                except queue.Empty:
                    item = None
                if self._fatal is not None:
                    raise self._fatal
                if self._consumer_error is not None:
                    raise RuntimeError("the consumer thread failed") from self._consumer_error
                self._maybe_reload_rules()
                in_batch = True
                if item is not None and self._step(item):
                    break
                in_batch = False
        except (SinkError, Fenced) as exc:
            failed = True
            self._no_commit = True  # not even from the revocation that closing the consumer triggers
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
                self._no_commit = True
                log.exception("processing failed mid-batch; stopping without a checkpoint")
            raise
        finally:
            try:
                if not failed:
                    with self._lock:
                        if self.engine is not None:
                            try:
                                self.commit("shutdown")
                            except BaseException:
                                # a failed flush cleared the sinks' failures: the revocation that
                                # closing the consumer triggers must not retry and checkpoint past them
                                self._no_commit = True
                                log.exception("shutdown commit failed; no checkpoint written")
                                raise
            finally:
                self._closing.set()
                consumer_thread.join(CLOSE_WAIT_S)
                self._decoder.close()
                producer.close(timeout=self.s.flush_timeout_s)
                self._sinks.close()
                log.info(
                    "stopped",
                    extra={"records": self.summary.records, "alerts": self.summary.alerts},
                )
        return self.summary

    def _coalesce(self, item: _Batch) -> _Batch:
        """``item`` plus the decoded batches queued behind it from the same epoch, as one batch (fewer,
        larger engine calls), up to ``prefetch_batches`` polls' worth of records. Polls stay in order;
        the high-water marks are the newest poll's. A batch from another epoch, or one whose decoding
        is not finished, waits for the next turn."""
        if not item.polls:
            return item
        polls = list(item.polls)
        count = item.records
        highwater = item.highwater
        cap = self.s.max_poll_records * self.s.prefetch_batches
        while count < cap and self._held is None and self._batches.qsize():
            try:
                nxt = self._batches.get_nowait()
            except queue.Empty:
                break
            if nxt.epoch != item.epoch or not nxt.polls or not all(p.ready for p in nxt.polls):
                # handled on its own next turn (stale, an idle marker, or still being decoded: the
                # engine starts on what is decoded while the workers go on)
                self._held = nxt
                break
            polls += nxt.polls
            count += nxt.records
            highwater = nxt.highwater
        return _Batch(item.epoch, polls, highwater)

    def _step(self, item: _Batch) -> bool:
        """Process one batch from the consumer thread; True when the run is finished (drained)."""
        with self._lock:
            if item.epoch != self._epoch:
                self.summary.stale_batches += 1
                return False  # polled before a rebalance: read again from the checkpoint's offsets
            if self.engine is None or not self._assigned:
                return False  # standby, or between revocation and assignment
            self._hw = item.highwater
            self._handle(item.polls)
            self._maybe_sync()
            if self._dirty and time.monotonic() - self._last_commit >= self.s.commit_interval_s:
                self.commit("interval")
            if self.drain_when_idle and self._caught_up():
                self._drain()
                self.commit("drain")
                self.summary.finished_at = time.monotonic()
                self.summary.finished_cpu = self._cpu_seconds()
                return True
        return False

    def _maybe_reload_rules(self) -> None:
        """Swap in a new rule set when the watcher has one (SIGHUP or changed files); keep state.

        A rule set that does not load is logged by the watcher, counted here, and the running rules
        stay; the same broken files are not tried again until they change.
        """
        if self.rules is None:
            return
        before = self.rules.errors
        new = self.rules.poll()
        assert self._reloads is not None
        if new is None:
            if self.rules.errors and self.rules.errors is not before:
                self._reloads.labels(result="failed").inc()
            return
        with self._lock:  # between batches: a tick never sees two rule sets
            if self.engine is not None:
                self.engine.rules = new
        self.summary.rule_reloads += 1
        self._reloads.labels(result="ok").inc()
        log.info("rules swapped in", extra={"rules": len(new)})

    def _collect(self, doc: dict[str, Any]) -> None:
        if self._keep_alerts:
            self.summary.alert_docs.append(doc)
        if self._on_alert:
            self._on_alert(doc)

    # ------------------------------------------------------------------------------------------ consumer
    def _consume(self) -> None:
        """The consumer thread: the only thread that calls the ``KafkaConsumer``."""
        from kafka import KafkaConsumer

        consumer: Any = None
        topic = self.s.input_topic
        try:
            consumer = KafkaConsumer(
                **self.s.consumer_config(),
                group_id=self.s.group_id,
                session_timeout_ms=self.s.session_timeout_ms,
                heartbeat_interval_ms=self.s.heartbeat_interval_ms,
                max_poll_interval_ms=self.s.max_poll_interval_ms,
                partition_assignment_strategy=[self._assignor],
            )
            self._consumer = consumer
            consumer.subscribe([topic], listener=_Listener(self))
            last_poll = 0.0
            while not self._closing.is_set():
                self._run_commands(consumer, sync=False)
                if self._batches.qsize() >= self.s.prefetch_batches:
                    # back-pressure: wait for the processing thread; poll now and then with every
                    # partition paused so that the group (and a pending rebalance) is served
                    self._taken.wait(0.05)
                    self._taken.clear()
                    if time.monotonic() - last_poll < KEEPALIVE_S:
                        continue
                    mine = [tp for tp in consumer.assignment() if tp.topic == topic]
                    if mine:
                        consumer.pause(*mine)
                    records = consumer.poll(timeout_ms=0, max_records=self.s.max_poll_records)
                else:
                    paused = consumer.paused()
                    if paused:
                        consumer.resume(*paused)
                    records = consumer.poll(
                        timeout_ms=self.s.poll_timeout_ms, max_records=self.s.max_poll_records
                    )
                last_poll = time.monotonic()
                # read after the poll: a rebalance inside it bumped the epoch, and these records
                # were fetched from the positions its assignment set
                epoch = self._epoch
                if records or self._batches.empty():  # empty batches only while idle (merge timing)
                    mine = [tp for tp in consumer.assignment() if tp.topic == topic]
                    high = {tp.partition: consumer.highwater(tp) for tp in mine}
                    assert self._decoder is not None
                    polls = [self._decoder.start(records)] if records else []
                    self._batches.put(_Batch(epoch, polls, high))
        except BaseException as exc:
            self._consumer_error = exc
            log.exception("consumer thread failed")
        finally:
            if consumer is not None:
                try:
                    self._run_commands(consumer, sync=True)
                finally:
                    consumer.close(autocommit=False)  # revokes: the listener may commit once more

    def _run_commands(self, consumer: Any, *, sync: bool) -> None:
        """Offset commits asked for by the processing thread (for lag dashboards; see module doc)."""
        from kafka import OffsetAndMetadata, TopicPartition

        while True:
            try:
                epoch, offsets = self._commands.get_nowait()
            except queue.Empty:
                return
            if epoch != self._epoch:
                continue  # a rebalance since: these partitions may belong to someone else now
            topic = self.s.input_topic
            request = {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
            try:
                if sync:
                    consumer.commit(request)
                else:
                    consumer.commit_async(request, callback=_log_commit_failure)
            except Exception as exc:  # the checkpoint is authoritative; the group offset is for visibility
                log.warning("offset commit failed", extra={"error": type(exc).__name__})

    def _discard_queued(self) -> None:
        while True:
            try:
                stale = self._batches.get_nowait()
            except queue.Empty:
                return
            for poll in stale.polls:
                poll.cancel()  # no worker time for records that will be read again
            self.summary.stale_batches += 1
            self._taken.set()

    # ------------------------------------------------------------------------------------------ batches
    def _highwater(self) -> dict[int, int | None]:
        """High-water offsets of the assigned partitions, as the consumer thread last saw them."""
        mine = {tp.partition for tp in self._assigned}
        return {p: h for p, h in self._hw.items() if p in mine}

    def _handle(self, polls: list[Poll]) -> None:
        if not polls:
            self._feed(self.merge.release(self._highwater()))
            return
        t0 = time.perf_counter()
        if self.summary.first_record_at is None:
            self.summary.first_record_at = time.monotonic()
            self.summary.first_record_cpu = self._cpu_seconds()
        topic = self.s.input_topic
        assert self._sinks is not None
        nxt = dict(self.merge.next_offset)
        frames: list[pl.DataFrame] = []
        reasons: list[str] = []
        consumed: dict[int, int] = {}
        records = 0
        newest = 0
        for poll in polls:
            batch = poll.result()
            events, rejects, count = batch.events, batch.rejects, len(poll.offs)
            # never count a record twice (defensive: seeks are per epoch)
            if any(first < nxt.get(p, 0) for p, (first, _) in poll.spans.items()):
                floor = pl.col(PART).replace_strict(nxt, default=0, return_dtype=pl.Int64)
                events = events.filter(pl.col(OFF) >= floor)
                rejects = [r for r in rejects if poll.offs[r.index] >= nxt.get(poll.parts[r.index], 0)]
                count = sum(o >= nxt.get(p, 0) for p, o in zip(poll.parts, poll.offs, strict=True))
            if not count:
                continue
            for rej in rejects:
                i = rej.index
                self._sinks.reject(
                    rej, poll.keys[i] if i >= 0 else None, (topic, poll.parts[i], poll.offs[i])
                )
            reasons += [r.reason for r in rejects]
            for p, (_, last) in poll.spans.items():
                if last >= nxt.get(p, 0):
                    nxt[p] = consumed[p] = last + 1
            frames.append(events)
            records += count
            newest = max(newest, poll.produced_at)
        if not records:
            return
        self._newest_produced = max(self._newest_produced, newest)
        events = pl.concat(frames, how="vertical_relaxed") if len(frames) > 1 else frames[0]
        self.merge.add(events, consumed)
        self._feed(self.merge.release(self._highwater()))
        self._dirty = True
        self.summary.records += records
        self.summary.rejects += len(reasons)
        if newest > 0:
            self.summary.batch_latency_s.append(time.time() - newest / 1000.0)
        self.metrics.record_batch(
            consumed=records,
            decoded=events.height,
            rejects=reasons,
            seconds=time.perf_counter() - t0,
        )

    def _cpu_seconds(self) -> float:
        """CPU seconds used so far by this process and its decoding workers."""
        return own_seconds() + (self._decoder.worker_cpu_seconds() if self._decoder is not None else 0.0)

    def _feed(self, ready: pl.DataFrame | None) -> None:
        if ready is None or self.engine is None:
            return
        self.summary.events_fed += ready.height
        self._dirty = True
        self._emit(self.engine.process(ready.drop(PART, OFF)))

    def _emit(self, alerts: list[Alert]) -> None:
        assert self._sinks is not None
        for a in alerts:
            self._sinks.alert(a)
        self.summary.alerts += len(alerts)
        if alerts and self._newest_produced > 0:
            self.summary.alert_latency_s.append(time.time() - self._newest_produced / 1000.0)
        self.metrics.record_alerts(alerts)

    def _caught_up(self) -> bool:
        high = self._highwater()
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
        high = self._highwater()
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
        """1. flush sinks, 2. checkpoint state with offsets, 3. commit offsets to Kafka (see module doc).

        Called with the processing lock held (processing thread or rebalance listener). Inside a
        listener the offsets are committed asynchronously right there (the consumer is mid-``poll``);
        otherwise the consumer thread commits them before its next poll. Raises ``Fenced`` when a newer
        owner wrote the current checkpoint.
        """
        if self.engine is None or self._sinks is None or not self._dirty or self._no_commit:
            return
        t0 = time.perf_counter()
        try:
            self._sinks.flush(self.s.flush_timeout_s)  # 1
        except SinkError:
            self.metrics.record_checkpoint(time.perf_counter() - t0, ok=False)
            raise
        offsets = self.merge.safe_offsets()
        extra = {
            "topic": self.s.input_topic,
            "offsets": {str(p): o for p, o in sorted(offsets.items())},
            "owner_epoch": self._owner_epoch,
            "group_generation": self._assignor.generation,
            "saved_at": datetime.now(UTC).isoformat(),
        }
        try:
            stored = int(_current_extra(self.s.state_dir).get("owner_epoch", 0))
            if stored > self._owner_epoch:
                self.metrics.record_checkpoint(time.perf_counter() - t0, ok=False)
                raise Fenced(f"checkpoint owner epoch {stored} is newer than ours ({self._owner_epoch})")
            folder = save_engine(self.engine, self.s.state_dir, extra)  # 2
        except OSError:
            self.metrics.record_checkpoint(time.perf_counter() - t0, ok=False)
            log.exception("checkpoint failed; offsets not committed")
            return
        self._my_ckpt = folder.name
        self._dirty = False
        self._last_commit = time.monotonic()
        self.summary.commits += 1
        if in_listener:  # 3
            try:
                from kafka import OffsetAndMetadata, TopicPartition

                request = {
                    TopicPartition(self.s.input_topic, p): OffsetAndMetadata(o, "", -1)
                    for p, o in offsets.items()
                }
                self._consumer.commit_async(request, callback=_log_commit_failure)
            except Exception as exc:  # the checkpoint is authoritative; the group offset is for visibility
                log.warning("offset commit failed", extra={"error": type(exc).__name__})
        else:
            self._commands.put((self._epoch, offsets))
        self.metrics.record_checkpoint(time.perf_counter() - t0, ok=True)
        self._maybe_sync(force=True)
        log.debug("committed", extra={"reason": reason, "offsets": extra["offsets"]})

    # ------------------------------------------------------------------------------------------ rebalance
    # The listener methods run inside the consumer's ``poll`` (or ``close``), while the consumer thread
    # waits there; they take the processing lock, so the processing thread is between batches.
    def on_revoked(self, revoked: list[Any]) -> None:
        """Before the group moves partitions: commit, so the next owner starts from our checkpoint."""
        with self._lock:
            self._epoch += 1
            self._discard_queued()
            if self.engine is not None and not self._no_commit:
                if self._dirty:
                    self._my_ckpt = None  # set again only if this commit succeeds (memory == checkpoint)
                try:
                    self.commit("rebalance", in_listener=True)
                except (SinkError, Fenced) as exc:
                    self._fatal = exc
                    self._no_commit = True
                    self.engine = None
            self._assigned = []
        log.info("partitions revoked", extra={"partitions": sorted(tp.partition for tp in revoked)})

    def on_lost(self, lost: list[Any]) -> None:
        """The group evicted us (session expired): another owner may be writing; drop, never write."""
        with self._lock:
            self._epoch += 1
            self._discard_queued()
            self.engine = None
            self._my_ckpt = None
            self._dirty = False
            self._assigned = []
        log.warning("partitions lost", extra={"partitions": sorted(tp.partition for tp in lost)})

    def on_assigned(self, assigned: list[Any]) -> None:
        """After the group assigned partitions: restore the shared checkpoint, seek, claim ownership."""
        with self._lock:
            self._epoch += 1
            self._discard_queued()
            self._joined = True
            mine = sorted(
                (tp for tp in assigned if tp.topic == self.s.input_topic), key=lambda tp: tp.partition
            )
            self._assigned = mine
            if not mine:
                self._owner = False
                self.engine = None
                log.info("standby: no partitions assigned")
                return
            self._owner = True
            root = self.s.state_dir
            current = (root / "CURRENT").read_text().strip() if (root / "CURRENT").exists() else None
            if self.engine is None or current != self._my_ckpt:
                engine = self._factory()
                extra = load_engine(engine, root) or {}
                if self.rules is not None:
                    engine.rules = self.rules.current
                self.engine = engine
            else:
                extra = _current_extra(root)
            offsets: dict[str, int] = (
                extra.get("offsets", {}) if extra.get("topic") == self.s.input_topic else {}
            )
            start: dict[int, int] = {}
            for tp in mine:
                off = offsets.get(str(tp.partition))
                if off is None:
                    self._consumer.seek_to_beginning(tp)
                    start[tp.partition] = 0
                else:
                    self._consumer.seek(tp, off)
                    start[tp.partition] = off
            self.merge.reset(start)
            self._hw = {}
            # claim: one epoch above any owner before us, written now so a paused predecessor is fenced
            self._owner_epoch = max(int(extra.get("owner_epoch", 0)), self._owner_epoch) + 1
            self._dirty = True
            try:
                self.commit("claim", in_listener=True)
            except (SinkError, Fenced) as exc:
                self._fatal = exc
                self._no_commit = True
                self.engine = None
        log.info(
            "partitions assigned",
            extra={
                "partitions": [tp.partition for tp in mine],
                "from": {str(p): o for p, o in start.items()},
                "owner_epoch": self._owner_epoch,
                "generation": self._assignor.generation,
            },
        )


def _current_extra(root: Path) -> dict[str, Any]:
    """The ``extra`` of the current checkpoint under ``root`` ({} when there is none)."""
    pointer = root / "CURRENT"
    if not pointer.exists():
        return {}
    meta_path = root / pointer.read_text().strip() / "meta.json"
    if not meta_path.exists():
        return {}
    extra: dict[str, Any] = json.loads(meta_path.read_text()).get("extra", {})
    return extra


def _log_commit_failure(offsets: Any, response: Any) -> None:
    if isinstance(response, BaseException):
        log.warning("offset commit failed", extra={"error": type(response).__name__})


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """kafka-python rebalance callbacks, forwarded to the daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def on_partitions_revoked(self, revoked: list[Any]) -> None:
        self.daemon.on_revoked(revoked)

    def on_partitions_lost(self, lost: list[Any]) -> None:
        self.daemon.on_lost(lost)

    def on_partitions_assigned(self, assigned: list[Any]) -> None:
        self.daemon.on_assigned(assigned)
