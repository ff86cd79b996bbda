"""Broker and topic faults the daemon notices (issue 14, item 4), so that none loses data silently.

- **A recreated input topic.** A broker restarted empty, or a topic deleted and created again, starts
  its partitions at offset 0 again; the daemon's offsets (from its checkpoint) point into the *old*
  log. Where they are still valid offsets of the new log, the daemon would skip the new log's first
  records without a sign. The daemon therefore remembers the input topic's id (a new UUID for every
  creation, KIP-516; kept in the checkpoint) and compares it after every poll; an offset outside the
  log (beyond its end, or before its start after retention deleted records not yet read) raises
  ``OffsetOutOfRangeError`` instead of the silent reset kafka-python would otherwise do. What then
  happens is ``StreamSettings.on_topic_reset``: ``earliest`` (the default) reads the affected
  partitions again from their first offset, logging one error line and counting the reset and any
  records skipped (``detector_input_topic_resets_total{cause}``, ``detector_input_gap_records_total``);
  ``fail`` stops the daemon with one error line (``TopicRecreated``).
- **A missing or recreated output topic.** Some brokers (the embedded Tansu) acknowledge a send to a
  topic that was deleted, and create a topic on any metadata request: the alerts are acknowledged and
  gone. ``TopicGuard``, a sink placed after each Kafka sink, checks with the admin client that its
  topic exists at start (a missing one: ``ConfigError``), and again at the first send after each
  check and after every flush: a topic that is missing at the flush, or has another id than at the
  first send, raises ``SinkError``, so the commit writes no checkpoint, the
  daemon stops with exit 3, and a restart raises those alerts again (into the topic, once it is back).
  Counted in ``detector_output_topic_failures_total{stream}``; readiness fails.
- **The broker connection.** The source's ``reachable`` (the group coordinator is known and a broker
  connection is up) is sampled by the consumer thread every second, and a ``poll`` that raises
  ``SourceUnavailable`` marks it down; ``/readyz`` fails while it is down.

The input checks need the source's ``FaultAware`` methods: the kafka-python source has them all; the
confluent source has ``topic_id`` (an admin request, at most every second while the id is known),
``log_start`` and ``log_end``, not ``reachable`` (it counts as always reachable), and librdkafka resets
an offset outside the log by itself (``auto.offset.reset=earliest``), so ``OffsetsOutOfRange`` never
comes from it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, NoReturn, Protocol
from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as PCounter

from detector.errors import ConfigError, ServiceError
from detector.io.sinks import SinkError, SinkUnverified

log = logging.getLogger("detector.stream")

#: Causes of an input topic reset (metric label values: a closed set).
TOPIC_ID, OUT_OF_RANGE = "topic_id", "offset_out_of_range"


class TopicRecreated(ServiceError):
    """The input topic was recreated (or its log moved past our offsets) and the policy is ``fail``."""


class FaultMetrics:
    """The counters and gauge of this module, once per registry."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.resets = PCounter(
            "detector_input_topic_resets_total",
            "Input partitions read again from their first offset: topic recreated or offsets out of range.",
            ["cause"],
            registry=r,
        )
        for cause in (TOPIC_ID, OUT_OF_RANGE):
            self.resets.labels(cause=cause)
        self.gap = PCounter(
            "detector_input_gap_records_total",
            "Input records never read: deleted from the log (retention) before the daemon got to them.",
            registry=r,
        )
        self.output = PCounter(
            "detector_output_topic_failures_total",
            "Flushes failed because an output topic was missing or recreated.",
            ["stream"],
            registry=r,
        )
        for stream in ("alerts", "dead_letter", "decisions"):
            self.output.labels(stream=stream)
        self.connected = Gauge(
            "detector_broker_connected", "1 while the consumer reaches the broker.", registry=r
        )


_BY_REGISTRY: WeakKeyDictionary[CollectorRegistry, FaultMetrics] = WeakKeyDictionary()


def fault_metrics(registry: CollectorRegistry) -> FaultMetrics:
    """This module's metrics on ``registry`` (created on first use)."""
    found = _BY_REGISTRY.get(registry)
    if found is None:
        found = _BY_REGISTRY[registry] = FaultMetrics(registry)
    return found


# ---------------------------------------------------------------------------------------- input topic
class OffsetsOutOfRange(ServiceError):
    """``KafkaSource.poll``: these partitions' positions lie outside their logs ({partition: offset})."""

    def __init__(self, positions: dict[int, int]) -> None:
        super().__init__(f"positions outside the input topic's logs: {positions}")
        self.positions = positions


class SourceUnavailable(ServiceError):
    """``KafkaSource.poll``: the broker cannot be reached now (the consumer thread retries)."""


class FaultAware(Protocol):
    """What a ``KafkaSource`` offers for the checks here (a source without ``topic_id`` gets no
    topic-id check; one without ``reachable`` counts as always reachable)."""

    def topic_id(self) -> str | None:
        """The input topic's id in the client's metadata (None: not known)."""

    def reachable(self) -> bool:
        """Whether the group coordinator is known and a broker connection is up."""

    def log_start(self, partitions: list[int]) -> dict[int, int]:
        """First offsets of ``partitions``."""

    def log_end(self, partitions: list[int]) -> dict[int, int]:
        """End offsets of ``partitions``."""


class InputTopicWatch:
    """Runs on the consumer thread: notices a recreated input topic and applies the policy.

    ``reset`` (``reset_partitions`` on the daemon) takes ``{partition: first offset}`` and is called on
    the consumer thread, outside ``poll``; it drops what was polled under the old topic and seeks.
    """

    def __init__(
        self,
        topic: str,
        policy: str,
        metrics: FaultMetrics,
        reset: Callable[[dict[int, int], str | None], None],
        fail: Callable[[BaseException], None],
    ) -> None:
        self.topic = topic
        self.policy = policy
        self.metrics = metrics
        self._reset = reset
        self._fail = fail
        #: The topic id the daemon's offsets refer to (from the checkpoint, else the first one seen).
        self.expected: str | None = None
        self._lock = threading.Lock()
        self.connected = False
        #: The policy is ``fail`` and it failed: the daemon is stopping; nothing more to report.
        self.failed = False

    def adopt(self, topic_id: str | None) -> None:
        """The id the restored offsets refer to (set on assignment; None: not known yet)."""
        with self._lock:
            self.expected = topic_id

    def sample(self, source: Any) -> None:
        """Broker reachability, for readiness and the gauge."""
        check = getattr(source, "reachable", None)
        try:
            self.connected = bool(check()) if check is not None else True
        except Exception:  # a client mid-reconnect: not reachable now
            self.connected = False
        self.metrics.connected.set(1 if self.connected else 0)

    def down(self, error: str) -> None:
        """``poll`` raised ``SourceUnavailable``: not reachable now (the consumer thread retries)."""
        if self.connected:
            log.warning("broker unreachable; retrying", extra={"error": error})
        self.connected = False
        self.metrics.connected.set(0)

    def after_poll(self, source: Any, assigned: list[int]) -> bool:
        """Compare the topic id in the source's metadata with the expected one; on a change apply the
        policy. True: the partitions were reset (drop what this poll returned)."""
        if self.failed:
            return True
        current = _topic_id(source)
        with self._lock:
            if current is None:
                return False
            if self.expected is None:
                self.expected = current
                return False
            if current == self.expected:
                return False
            old = self.expected
        if not assigned:
            return False
        parts = {p: 0 for p in assigned} | _beginning(source, assigned)
        return self._apply(
            TOPIC_ID,
            parts,
            0,
            current,
            f"input topic {self.topic} was recreated (topic id {old} -> {current}): "
            "the checkpoint's offsets belong to the old log",
        )

    def out_of_range(self, source: Any, positions: dict[int, int]) -> None:
        """``OffsetsOutOfRange`` from ``poll``: the offsets lie outside the partitions' logs."""
        if self.failed:
            return
        current = _topic_id(source)
        if current is not None and self.expected is not None and current != self.expected:
            # a new topic: every assigned partition starts over, not only those out of range
            self.after_poll(source, source.assignment())
            return
        start = _beginning(source, list(positions))
        try:
            end = source.log_end(list(positions))
        except Exception:  # only for the log line
            end = {}
        gap = sum(max(0, start.get(p, 0) - off) for p, off in positions.items())  # deleted by retention
        parts = {p: start.get(p, 0) for p in positions}
        where = {str(p): [o, start.get(p), end.get(p)] for p, o in positions.items()}
        self._apply(
            OUT_OF_RANGE,
            parts,
            gap,
            current,
            f"input topic {self.topic}: offsets outside the log ([offset, log start, log end] per "
            f"partition: {where})",
        )

    def _apply(self, cause: str, parts: dict[int, int], gap: int, new_id: str | None, what: str) -> bool:
        if self.policy == "fail":
            self.failed = True
            log.error("%s; stopping (DETECTOR_STREAM_ON_TOPIC_RESET=fail)", what)
            self._fail(
                TopicRecreated(
                    f"{what}; set DETECTOR_STREAM_ON_TOPIC_RESET=earliest to read it from its start",
                    "DETECTOR_STREAM_INPUT_TOPIC",
                )
            )
            return True
        self.metrics.resets.labels(cause=cause).inc(len(parts))
        if gap:
            self.metrics.gap.inc(gap)
        log.error(
            "%s; reading partitions %s again from their first offset",
            what,
            sorted(parts),
            extra={"cause": cause, "skipped_records": gap, "from": {str(p): o for p, o in parts.items()}},
        )
        # the new id is adopted by ``reset`` under the processing lock, together with the offsets: a
        # checkpoint taken in between would pair the new id with offsets of the old log
        self._reset(parts, new_id)
        return True


def reset_partitions(d: Any, parts: dict[int, int], topic_id: str | None) -> None:
    """The daemon ``d`` reads ``parts`` again from the given offsets (``InputTopicWatch``'s reset, on
    the consumer thread outside ``poll``). Batches polled before are dropped (a new epoch). Events the
    merge holds from the old log go to the engine now: that log cannot be read again, and a checkpoint
    taken while the merge held them would pair the new topic's id with offsets of the old log (the
    merge's safe offsets are its oldest held ones), skipping that many records of the new log."""
    with d.lock:
        d.epoch += 1
        d.summary.stale_batches += d.consumer.discard_queued()
        d._feed(d.merge.drain())
        for p, off in parts.items():
            d.merge.next_offset[p] = off
            d.consumer.seek(p, off)
        if topic_id is not None:
            d.watch.adopt(topic_id)
        d.hw = {}
        d._dirty = True


def _topic_id(source: Any) -> str | None:
    get = getattr(source, "topic_id", None)
    return get() if get is not None else None


def _beginning(source: Any, parts: list[int]) -> dict[int, int]:
    """First offsets of ``parts`` ({} if the broker does not answer now: a recreated log starts at 0)."""
    try:
        return dict(source.log_start(parts))
    except Exception as exc:
        log.warning("log start offsets unknown; using 0", extra={"error": type(exc).__name__})
        return {}


# ---------------------------------------------------------------------------------------- output topics
class OutputTopics:
    """One admin client for the daemon's output topics; describes a topic on request."""

    def __init__(self, kafka_common: dict[str, Any]) -> None:
        self._cfg = kafka_common
        self._admin: Any = None
        self._lock = threading.Lock()

    def topic_id(self, topic: str) -> str | None:
        """The topic's id; None if the broker does not know the topic (never creates it)."""
        from kafka import KafkaAdminClient

        with self._lock:
            if self._admin is None:
                self._admin = KafkaAdminClient(**self._cfg)
            (desc,) = self._admin.describe_topics([topic])
        if desc.get("error_code"):
            return None
        return str(desc.get("topic_id") or "known")

    def close(self) -> None:
        """Close the admin client."""
        with self._lock:
            if self._admin is not None:
                self._admin.close()
                self._admin = None


class TopicGuard:
    """A sink after a Kafka sink (the ``Sink`` protocol): its topic must exist at start and still be
    the same topic (same id) after each flush that had sends, or the flush raises ``SinkError``."""

    def __init__(
        self, topics: OutputTopics, topic: str, stream: str, setting: str, metrics: FaultMetrics | None
    ) -> None:
        self.topics = topics
        self.topic = topic
        self.stream = stream
        self.setting = setting
        self.metrics = metrics
        self.topic_id: str | None = None
        self.sent = 0
        self.failed = False
        self._admin_errors = 0

    def setup(self) -> None:
        """The topic must exist (it is never created here)."""
        found = self.topics.topic_id(self.topic)
        if found is None:
            raise ConfigError(
                f"the {self.stream.replace('_', '-')} topic {self.topic!r} does not exist; create it "
                "(the daemon never creates topics)",
                self.setting,
            )
        self.topic_id = found

    def add(self, record: object) -> None:
        """Count a send since the last check; the first one checks the topic first, so a topic
        recreated while nothing was being sent to it costs nothing (the sends go to the new one)."""
        if self.sent == 0:
            try:
                found = self.topics.topic_id(self.topic)
            except Exception:  # unknown now: the flush compares with the id last seen
                found = None
            if found is not None and found != self.topic_id:
                log.warning(
                    "output topic recreated; nothing was sent to it since the last check",
                    extra={"topic": self.topic},
                )
                self.topic_id = found
        self.sent += 1

    def flush(self) -> None:
        """After the Kafka sink's flush: the topic must still be the one the sends went to."""
        try:
            found = self.topics.topic_id(self.topic)
            self._admin_errors = 0
        except Exception as exc:  # the broker does not answer (down, restarting)
            if not self.sent:
                return  # nothing sent since the last check: nothing to verify
            self._admin_errors += 1
            # the sends were acknowledged; whether the topic they went to still exists is unknown until
            # the broker answers: the commit waits (not ready), then the check decides
            raise SinkUnverified(
                f"cannot check the {self.stream} topic {self.topic} ({type(exc).__name__}, "
                f"{self._admin_errors} in a row); {self.sent} records sent since the last check"
            ) from exc
        if found is None:
            self._fail(f"the {self.stream} topic {self.topic} is missing (deleted while running)")
        if found != self.topic_id:
            if self.sent:
                self._fail(
                    f"the {self.stream} topic {self.topic} was recreated (id {self.topic_id} -> {found}); "
                    f"{self.sent} records sent since the last check may be lost"
                )
            self.topic_id = found
        self.sent = 0
        self.failed = False

    def _fail(self, message: str) -> NoReturn:
        self.failed = True
        if self.metrics is not None:
            self.metrics.output.labels(stream=self.stream).inc()
        log.error("%s; not committing, so a restart sends them again", message)
        raise SinkError(message)

    def close(self) -> None:
        """Nothing to release (the ``OutputTopics`` is closed with the outputs)."""
