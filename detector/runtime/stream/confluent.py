"""The ``confluent`` ``KafkaSource``: librdkafka (``confluent-kafka``, the optional extra ``confluent``).

librdkafka runs partition assignment in C and cannot call a Python assignor, so single ownership is a
**lease**, not a custom assignor:

- every replica subscribes ``lease_topic`` (one partition; create it with the other topics) in the
  daemon's group with the standard ``cooperative-sticky`` assignor, so exactly one member holds lease
  partition 0 at a time and keeps it while it stays (a standby joining moves nothing);
- the member that is given lease partition 0 assigns itself every input partition by hand
  (``incremental_assign``, at the offsets the listener seeks to: the checkpoint's) and reports them
  to the daemon's listener; a member without it is a standby (``on_assigned([])``);
- when the lease is revoked (orderly: the daemon commits first) or lost (evicted: the daemon drops its
  state) the member unassigns every input partition in the same callback, before the group hands the
  lease to a standby.

Lease partitions are paused (never fetched): nothing is read from the lease topic. Partitions other
than 0 of a lease topic created with more than one are held by someone but mean nothing. Fencing of
a paused owner is the daemon's (owner epoch in the checkpoint), as with kafka-python.

The recreated-topic check (``faults.InputTopicWatch``) reads ``topic_id``: librdkafka's consumer
metadata carries no topic id, so the lease holder asks an admin client (``describe_topics``) at most
every ``TOPIC_ID_EVERY_S``, and at once after librdkafka reports the brokers down or a partition
error. The id is the same UUID string the kafka-python source gives (a checkpoint moves between the
two sources). Records polled from a recreated topic before its new id is seen are read again after
the reset, and the engine drops them by request id.

Readiness follows the broker (``reachable``): librdkafka's error callback reports every broker down
(``_ALL_BROKERS_DOWN``), and from then on the source is unreachable until a metadata request is
answered again (asked at each readiness sample, waiting at most ``PROBE_TIMEOUT_S``). Offsets outside
the log are still reset silently by librdkafka (``auto.offset.reset=earliest``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from detector.runtime.stream.settings import StreamSettings
from detector.runtime.stream.source import Listener, Records, header_ms

log = logging.getLogger("detector.stream")

#: How long the lease holder waits for the input topic's metadata when it takes the lease.
METADATA_TIMEOUT_S = 10.0
#: The input topic's id is asked for at most this often (an admin request of a few ms on the consumer
#: thread); records polled from a recreated topic before it is asked again are read twice, not lost.
TOPIC_ID_EVERY_S = 1.0
#: How long one topic-id or log-offset request may wait (the consumer thread waits on it).
ADMIN_TIMEOUT_S = 2.0
#: With every broker down, how long one reachability probe (a metadata request) may wait; the
#: consumer thread samples reachability about once a second and has nothing to fetch meanwhile.
PROBE_TIMEOUT_S = 0.5


def client_config(s: StreamSettings) -> dict[str, Any]:
    """librdkafka properties equivalent to ``StreamSettings.consumer_config()`` (no group settings)."""
    cfg: dict[str, Any] = {
        "bootstrap.servers": ",".join(x.strip() for x in s.bootstrap_servers.split(",") if x.strip()),
        "client.id": s.client_id,
        "security.protocol": s.security_protocol,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "max.partition.fetch.bytes": s.max_partition_fetch_bytes,
        "fetch.max.bytes": max(s.max_partition_fetch_bytes, 50 << 20),
        "receive.message.max.bytes": max(s.max_partition_fetch_bytes, 50 << 20) + (1 << 20),
    }
    if s.sasl_mechanism:
        cfg["sasl.mechanism"] = s.sasl_mechanism
    if s.sasl_username is not None:
        cfg["sasl.username"] = s.sasl_username
    if s.sasl_password is not None:
        cfg["sasl.password"] = s.sasl_password.get_secret_value()
    for key, prop in (
        ("ssl_cafile", "ssl.ca.location"),
        ("ssl_certfile", "ssl.certificate.location"),
        ("ssl_keyfile", "ssl.key.location"),
    ):
        value = getattr(s, key)
        if value is not None:
            cfg[prop] = str(value)
    if s.ssl_password is not None:
        cfg["ssl.key.password"] = s.ssl_password.get_secret_value()
    return cfg


#: ``client_config`` properties that only a consumer reads (an admin client warns about each one).
_CONSUMER_ONLY = (
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
)


def admin_config(s: StreamSettings) -> dict[str, Any]:
    """``client_config`` without the consumer's properties: the topic-id check's admin client."""
    return {k: v for k, v in client_config(s).items() if k not in _CONSUMER_ONLY}


def records_of(messages: list[Any]) -> Records:
    """A librdkafka batch (``[Message]``, in order within each partition) as ``Records``; a message
    carrying an error is logged (fatal ones raise) and skipped."""
    out = Records()
    values, keys, parts, offs, stamps = out.values, out.keys, out.parts, out.offs, out.timestamps
    last: dict[int, Any] = {}
    for m in messages:
        err = m.error()
        if err is not None:
            if err.fatal():
                from confluent_kafka import KafkaException

                raise KafkaException(err)
            log.warning("consumer error", extra={"error": err.name()})
            continue
        value = m.value()
        p, o = m.partition(), m.offset()
        values.append(value if value is not None else b"")
        keys.append(m.key())
        parts.append(p)
        offs.append(o)
        stamps.append(m.timestamp()[1])
        if p not in last:
            out.spans[p] = (o, o)
        last[p] = m
    for p, m in last.items():
        out.spans[p] = (out.spans[p][0], m.offset())
        out.produced_at = max(out.produced_at, header_ms(m.headers()))
    return out


class ConfluentSource:
    """``KafkaSource`` on a librdkafka ``Consumer`` with the lease (see the module doc)."""

    name = "confluent"

    def __init__(self, settings: StreamSettings, owns_partitions: Callable[[], bool] | None = None) -> None:
        self.s = settings
        self.topic = settings.input_topic
        self.lease_topic = settings.lease_topic
        self.kafka: Any = None
        self._listener: Listener | None = None
        #: The input partitions assigned by hand while holding the lease (empty: standby).
        self._mine: list[int] = []
        self._leased = False
        self._seeks: dict[int, int | None] = {}
        self._leases = -1
        #: Lease partition 0 was assigned inside the last poll: take over when it returns.
        self._take = False
        self._in_callback = False
        #: Offsets committed from inside a callback, sent after it.
        self._deferred: dict[int, int] = {}
        #: Inside ``_take_over``'s listener call: a seek is kept for the ``incremental_assign`` after it.
        self._assigning = False
        self._admin: Any = None
        self._topic_id: str | None = None
        self._topic_id_at = -TOPIC_ID_EVERY_S
        #: librdkafka reported every broker down, and no metadata request was answered since.
        self._down = False

    @property
    def generation(self) -> int:
        """How many times this member took the lease (librdkafka does not expose the group's)."""
        return self._leases

    def open(self, listener: Listener) -> None:
        from confluent_kafka import Consumer

        self._listener = listener
        self.kafka = Consumer(
            {
                **client_config(self.s),
                "group.id": self.s.group_id,
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": self.s.session_timeout_ms,
                "heartbeat.interval.ms": self.s.heartbeat_interval_ms,
                "max.poll.interval.ms": self.s.max_poll_interval_ms,
                "on_commit": _log_commit_failure,
                "error_cb": self._on_error,
            }
        )
        self.kafka.subscribe(
            [self.lease_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    # ------------------------------------------------------------------ rebalance (inside poll/close)
    def _tps(self, offsets: dict[int, int] | None = None) -> list[Any]:
        from confluent_kafka import TopicPartition

        if offsets is None:
            return [TopicPartition(self.topic, p) for p in self._mine]
        return [TopicPartition(self.topic, p, o) for p, o in offsets.items()]

    def _is_lease(self, parts: list[Any]) -> bool:
        return any(tp.topic == self.lease_topic and tp.partition == 0 for tp in parts)

    def _on_assign(self, consumer: Any, parts: list[Any]) -> None:
        assert self._listener is not None
        consumer.incremental_assign(parts)
        if parts:
            consumer.pause(parts)  # the lease topic is never read
        if self._is_lease(parts) and not self._leased:
            self._take = True  # taken over in ``poll``, right after this callback's poll returns
        elif not self._leased and not self._take:
            self._listener.on_assigned([])  # a standby

    def _give_up(self, consumer: Any, parts: list[Any], lost: bool) -> None:
        assert self._listener is not None
        if self._is_lease(parts):
            self._take = False
        mine = self._tps() if self._leased and self._is_lease(parts) else []
        if mine:
            self._in_callback = True
            try:
                if lost:
                    self._listener.on_lost(list(self._mine))
                else:
                    self._listener.on_revoked(list(self._mine))
            finally:
                self._in_callback = False
            self._leased, self._mine = False, []
        consumer.incremental_unassign([*parts, *mine])

    def _on_revoke(self, consumer: Any, parts: list[Any]) -> None:
        self._give_up(consumer, parts, lost=False)

    def _on_lost(self, consumer: Any, parts: list[Any]) -> None:
        self._give_up(consumer, parts, lost=True)

    def _take_over(self) -> None:
        """Lease partition 0 was just assigned: every input partition, where the listener seeks.

        Not inside the assignment callback: librdkafka's Python binding cannot make a blocking call
        (metadata, commit) from inside one."""
        from confluent_kafka import OFFSET_BEGINNING

        assert self._listener is not None
        meta = self.kafka.list_topics(self.topic, timeout=METADATA_TIMEOUT_S).topics[self.topic]
        if meta.error is not None:
            raise RuntimeError(f"input topic metadata: {meta.error.name()}")
        self._take = False
        self._leased, self._leases = True, self._leases + 1
        self._mine, self._seeks = sorted(meta.partitions), {}
        self._assigning = True
        try:
            self._listener.on_assigned(list(self._mine))  # restores state and seeks every partition
        finally:
            self._assigning = False
        start = {p: _or(self._seeks.get(p), OFFSET_BEGINNING) for p in self._mine}
        self.kafka.incremental_assign(self._tps(start))

    # -------------------------------------------------------------------------- the consumer thread
    def poll(self, timeout_ms: int, max_records: int) -> Records:
        messages = self.kafka.consume(max_records, 0)  # what is fetched already, without waiting
        if not messages and not self._take:
            first = self.kafka.poll(timeout_ms / 1000)  # else wait for the first record only
            if first is not None:
                messages = [first, *self.kafka.consume(max_records - 1, 0)] if max_records > 1 else [first]
        if self._take:
            self._take_over()
        if self._deferred:
            offsets, self._deferred = self._deferred, {}
            self.commit(offsets, sync=False)
        return records_of(messages) if messages else Records()

    def assignment(self) -> list[int]:
        return list(self._mine)

    def highwaters(self) -> dict[int, int | None]:
        out: dict[int, int | None] = {}
        for tp in self._tps():
            _, high = self.kafka.get_watermark_offsets(tp, cached=True)
            out[tp.partition] = high if high is not None and high >= 0 else None
        return out

    def pause(self) -> None:
        if self._mine:
            self.kafka.pause(self._tps())

    def resume(self) -> None:
        if self._mine:
            self.kafka.resume(self._tps())

    def seek(self, partition: int, offset: int | None) -> None:
        if self._assigning:
            self._seeks[partition] = offset  # applied by the incremental_assign that follows the listener
            return
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        # a partition held already (the recreated-topic reset): assigned again at the offset, not
        # ``seek`` (which fails while librdkafka is not fetching it, e.g. looking its offset up after
        # a broker restart); what it prefetched from the old position is dropped with the assignment
        self.kafka.incremental_unassign([TopicPartition(self.topic, partition)])
        self.kafka.incremental_assign([TopicPartition(self.topic, partition, _or(offset, OFFSET_BEGINNING))])

    # ``faults.FaultAware``: the recreated-topic check and readiness
    def reachable(self) -> bool:
        """False from librdkafka's "all brokers down" until a metadata request is answered again."""
        if not self._down:
            return True
        try:
            self.kafka.list_topics(self.topic, timeout=PROBE_TIMEOUT_S)
        except Exception:  # KafkaException: still down (timed out, transport)
            return False
        self._down = False
        return True

    def topic_id(self) -> str | None:
        """The input topic's id (KIP-516) as a UUID string, asked at most every ``TOPIC_ID_EVERY_S``
        while known (None: not known, e.g. while the broker is down; asked at every check then)."""
        now = time.monotonic()
        if self._topic_id is not None and now - self._topic_id_at < TOPIC_ID_EVERY_S:
            return self._topic_id
        from confluent_kafka import TopicCollection
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            self._admin = AdminClient(admin_config(self.s))
        try:
            found = self._admin.describe_topics(
                TopicCollection([self.topic]), request_timeout=ADMIN_TIMEOUT_S
            )
            self._topic_id = uuid_string(found[self.topic].result(ADMIN_TIMEOUT_S).topic_id)
            self._topic_id_at = now
        except Exception as exc:  # down, or the topic unknown now: asked again at the next check
            log.debug("input topic id unknown", extra={"error": type(exc).__name__})
            self._topic_id = None
        return self._topic_id

    def log_start(self, partitions: list[int]) -> dict[int, int]:
        return {p: self._watermarks(p)[0] for p in partitions}

    def log_end(self, partitions: list[int]) -> dict[int, int]:
        return {p: self._watermarks(p)[1] for p in partitions}

    def _watermarks(self, partition: int) -> tuple[int, int]:
        from confluent_kafka import TopicPartition

        low, high = self.kafka.get_watermark_offsets(
            TopicPartition(self.topic, partition), timeout=ADMIN_TIMEOUT_S, cached=False
        )
        return int(low), int(high)

    def _on_error(self, err: Any) -> None:
        """librdkafka's error callback (inside ``poll``): brokers down, or a topic or partition error,
        may mean a recreated topic: its id is asked for again at the next check."""
        self._topic_id_at = -TOPIC_ID_EVERY_S
        from confluent_kafka import KafkaError

        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._down = True
        log.debug("librdkafka error", extra={"error": err.name()})

    def commit(self, offsets: dict[int, int], *, sync: bool) -> None:
        if self._in_callback:  # sent after the callback's poll returns (see ``_take_over``)
            self._deferred.update(offsets)
        elif offsets:
            self.kafka.commit(offsets=self._tps(offsets), asynchronous=not sync)

    def close(self) -> None:
        if self.kafka is not None:
            self.kafka.close()  # leaves the group: the lease is revoked, the listener may commit once more
        self._admin = None  # an AdminClient has no close: its handle goes with the object


def uuid_string(topic_id: Any) -> str:
    """A librdkafka ``Uuid`` as the UUID string kafka-python gives for the same topic."""
    most = topic_id.get_most_significant_bits() & 0xFFFFFFFFFFFFFFFF
    least = topic_id.get_least_significant_bits() & 0xFFFFFFFFFFFFFFFF
    return str(uuid.UUID(int=(most << 64) | least))


def _or(offset: int | None, default: int) -> int:
    return default if offset is None else offset


def _log_commit_failure(err: Any, partitions: Any) -> None:
    if err is not None:
        log.warning("offset commit failed", extra={"error": err.name()})
