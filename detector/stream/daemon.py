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
checkpointing (exit 3) so that a restart raises those alerts again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from kafka import ConsumerRebalanceListener

from detector.checkpoint import load_engine, save_engine
from detector.contracts import Alert
from detector.decode import decode_lines
from detector.stream.assignor import SingleOwnerAssignor
from detector.stream.merge import OFF, PART, EventTimeMerge
from detector.stream.settings import StreamSettings
from detector.stream.sinks import SinkError, StreamSinks

if TYPE_CHECKING:
    from detector.engine import Engine
    from detector.metrics import Metrics

log = logging.getLogger("detector.stream")

#: The loop must come round within this long for ``/healthz`` to say alive (an engine tick can be slow).
LIVENESS_S = 120.0
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
    alert_docs: list[dict[str, Any]] = field(default_factory=list)
    #: Per batch that raised alerts: wall seconds from the produce of its newest record (``produced_at``
    #: header, when the producer sets one) to the alerts' hand-off to the sinks.
    alert_latency_s: list[float] = field(default_factory=list)
    #: Monotonic clock at the first record read and at the end of the run (throughput figures).
    first_record_at: float | None = None
    finished_at: float | None = None


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
    ) -> None:
        self.s = settings
        self._factory = engine_factory
        self.metrics = metrics
        self.stop = stop or threading.Event()
        self._on_alert = on_alert
        self.drain_when_idle = drain_when_idle
        self._keep_alerts = keep_alerts
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
        self._my_ckpt: str | None = None
        self._last_commit = time.monotonic()
        self._last_loop = time.monotonic()
        self._last_sync = 0.0
        self._newest_produced = 0

    # ------------------------------------------------------------------------------------------ probes
    def live(self) -> bool:
        """Liveness: the poll loop came round recently."""
        return time.monotonic() - self._last_loop < LIVENESS_S

    def ready(self) -> bool:
        """Readiness: joined the group (owner with state restored, or standby) and not stopping."""
        return self._joined and not self.stop.is_set() and self._fatal is None

    # ------------------------------------------------------------------------------------------ run
    def run(self) -> RunSummary:
        """Consume until ``stop`` is set (or, with ``drain_when_idle``, until caught up); then leave."""
        from kafka import KafkaConsumer, KafkaProducer

        common = self.s.kafka_common()
        log.info("starting", extra={"settings": self.s.redacted()})
        producer = KafkaProducer(
            **common,
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
        consumer = KafkaConsumer(
            **common,
            group_id=self.s.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.s.max_poll_records,
            max_partition_fetch_bytes=self.s.max_partition_fetch_bytes,
            fetch_max_bytes=max(self.s.max_partition_fetch_bytes, 50 << 20),
            session_timeout_ms=self.s.session_timeout_ms,
            heartbeat_interval_ms=self.s.heartbeat_interval_ms,
            max_poll_interval_ms=self.s.max_poll_interval_ms,
            partition_assignment_strategy=[SingleOwnerAssignor(lambda: self._owner)],
        )
        self._consumer = consumer
        consumer.subscribe([self.s.input_topic], listener=_Listener(self))
        failed = False
        try:
            while not self.stop.is_set():
                records = consumer.poll(
                    timeout_ms=self.s.poll_timeout_ms, max_records=self.s.max_poll_records
                )
                self._last_loop = time.monotonic()
                if self._fatal is not None:
                    raise self._fatal
                if self.engine is None or not self._assigned:
                    continue  # standby, or mid-rebalance: records are read again after the seek
                self._handle(records)
                self._maybe_sync()
                if self._dirty and time.monotonic() - self._last_commit >= self.s.commit_interval_s:
                    self.commit("interval")
                if self.drain_when_idle and self._caught_up():
                    self._drain()
                    self.commit("drain")
                    self.summary.finished_at = time.monotonic()
                    break
        except SinkError:
            failed = True
            log.exception("a sink failed; stopping without a checkpoint so a restart raises the alerts again")
            raise
        finally:
            try:
                if not failed and self.engine is not None:
                    self.commit("shutdown")
            finally:
                consumer.close(autocommit=False)
                producer.close(timeout=self.s.flush_timeout_s)
                self._sinks.close()
                log.info(
                    "stopped",
                    extra={"records": self.summary.records, "alerts": self.summary.alerts},
                )
        return self.summary

    def _collect(self, doc: dict[str, Any]) -> None:
        if self._keep_alerts:
            self.summary.alert_docs.append(doc)
        if self._on_alert:
            self._on_alert(doc)

    # ------------------------------------------------------------------------------------------ batches
    def _highwater(self) -> dict[int, int | None]:
        return {tp.partition: self._consumer.highwater(tp) for tp in self._assigned}

    def _handle(self, records: dict[Any, list[Any]]) -> None:
        if not records:
            self._feed(self.merge.release(self._highwater()))
            return
        t0 = time.perf_counter()
        if self.summary.first_record_at is None:
            self.summary.first_record_at = time.monotonic()
        topic = self.s.input_topic
        values: list[bytes] = []
        keys: list[bytes | None] = []
        parts: list[int] = []
        offs: list[int] = []
        consumed: dict[int, int] = {}
        for tp, recs in records.items():
            for r in recs:
                values.append(r.value if r.value is not None else b"")
                keys.append(r.key)
                parts.append(tp.partition)
                offs.append(r.offset)
            consumed[tp.partition] = recs[-1].offset + 1
            self._newest_produced = max(self._newest_produced, _produced_at(recs[-1]))
        batch = decode_lines(values, position_of=lambda i: f"{topic}/{parts[i]}@{offs[i]}")
        assert self._sinks is not None
        for rej in batch.rejects:
            i = rej.index
            self._sinks.reject(rej, keys[i] if i >= 0 else None, (topic, parts[i], offs[i]))
        events = batch.events
        if events.height:
            idx = events["_pos"]
            events = events.with_columns(
                pl.Series(PART, parts, pl.Int32).gather(idx), pl.Series(OFF, offs, pl.Int64).gather(idx)
            )
        self.merge.add(events, consumed)
        self._feed(self.merge.release(self._highwater()))
        self._dirty = True
        self.summary.records += len(values)
        self.summary.rejects += len(batch.rejects)
        self.metrics.record_batch(
            consumed=len(values),
            decoded=events.height,
            rejects=[r.reason for r in batch.rejects],
            seconds=time.perf_counter() - t0,
        )

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

        kafka-python runs rebalance listeners on its IO thread, where a blocking commit is not allowed:
        there the offsets are committed asynchronously (step 3 is for visibility only).
        """
        if self.engine is None or self._sinks is None or not self._dirty:
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
            "saved_at": datetime.now(UTC).isoformat(),
        }
        try:
            folder = save_engine(self.engine, self.s.state_dir, extra)  # 2
        except OSError:
            self.metrics.record_checkpoint(time.perf_counter() - t0, ok=False)
            log.exception("checkpoint failed; offsets not committed")
            return
        self._my_ckpt = folder.name
        self._dirty = False
        self._last_commit = time.monotonic()
        self.summary.commits += 1
        try:  # 3
            from kafka import OffsetAndMetadata, TopicPartition

            request = {
                TopicPartition(self.s.input_topic, p): OffsetAndMetadata(o, "", -1)
                for p, o in offsets.items()
            }
            if in_listener:
                self._consumer.commit_async(request)
            else:
                self._consumer.commit(request)
        except Exception as exc:  # the checkpoint is authoritative; the group offset is for visibility
            log.warning("offset commit failed", extra={"error": type(exc).__name__})
        self.metrics.record_checkpoint(time.perf_counter() - t0, ok=True)
        self._maybe_sync(force=True)
        log.debug("committed", extra={"reason": reason, "offsets": extra["offsets"]})

    # ------------------------------------------------------------------------------------------ rebalance
    def on_revoked(self, revoked: list[Any]) -> None:
        """Before the group moves partitions: commit, so the next owner starts from our checkpoint."""
        if self.engine is None:
            return
        if self._dirty:
            self._my_ckpt = None  # set again only if this commit succeeds (then memory equals the checkpoint)
        try:
            self.commit("rebalance", in_listener=True)
        except SinkError as exc:
            self._fatal = exc
            self.engine = None
        self._assigned = []
        log.info("partitions revoked", extra={"partitions": sorted(tp.partition for tp in revoked)})

    def on_assigned(self, assigned: list[Any]) -> None:
        """After the group assigned partitions: restore the shared checkpoint and seek to its offsets."""
        self._joined = True
        mine = sorted((tp for tp in assigned if tp.topic == self.s.input_topic), key=lambda tp: tp.partition)
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
            self.engine = engine
        else:
            extra = {"topic": self.s.input_topic, "offsets": self._checkpoint_offsets(root)}
        offsets: dict[str, int] = extra.get("offsets", {}) if extra.get("topic") == self.s.input_topic else {}
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
        log.info(
            "partitions assigned",
            extra={
                "partitions": [tp.partition for tp in mine],
                "from": {str(p): o for p, o in start.items()},
            },
        )

    @staticmethod
    def _checkpoint_offsets(root: Path) -> dict[str, int]:
        import json

        folder = root / (root / "CURRENT").read_text().strip()
        meta = json.loads((folder / "meta.json").read_text())
        offsets: dict[str, int] = meta.get("extra", {}).get("offsets", {})
        return offsets


def _produced_at(record: Any) -> int:
    """The ``produced_at`` header (ms since the epoch) of a record, 0 if absent."""
    for key, value in record.headers or ():
        if key == "produced_at":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """kafka-python rebalance callbacks, forwarded to the daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def on_partitions_revoked(self, revoked: list[Any]) -> None:
        self.daemon.on_revoked(revoked)

    def on_partitions_assigned(self, assigned: list[Any]) -> None:
        self.daemon.on_assigned(assigned)
