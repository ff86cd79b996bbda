"""The default ``KafkaSource``: kafka-python, subscribed with the ``SingleOwnerAssignor``.

kafka-python runs a Python partition assignor on the group leader, so single ownership is the
assignor's job: every input partition goes to one member (the current owner while it stays), the
others get none. The rebalance listener's ``TopicPartition`` lists become partition numbers here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kafka import ConsumerRebalanceListener

from detector.runtime.stream.assignor import SingleOwnerAssignor, SpreadAssignor
from detector.runtime.stream.faults import OffsetsOutOfRange, SourceUnavailable
from detector.runtime.stream.settings import StreamSettings
from detector.runtime.stream.source import Listener, Records, header_ms

log = logging.getLogger("detector.stream")


#: How long a poll that returned records under stale metadata waits for the refresh (``_metadata_current``).
METADATA_WAIT_MS = 2000
#: Polls in a row whose records are fetched again for want of a refresh (``_fetch_again``) before they go out.
FETCH_AGAIN_MAX = 3


def records_of(polled: dict[Any, list[Any]]) -> Records:
    """A kafka-python poll (``{TopicPartition: [ConsumerRecord]}``) as ``Records``."""
    out = Records()
    values, keys, parts, offs, stamps = out.values, out.keys, out.parts, out.offs, out.timestamps
    for tp, recs in polled.items():
        p = tp.partition
        for r in recs:
            values.append(r.value if r.value is not None else b"")
            keys.append(r.key)
            parts.append(p)
            offs.append(r.offset)
            stamps.append(r.timestamp if r.timestamp is not None else -1)
        if recs:
            out.spans[p] = (recs[0].offset, recs[-1].offset)
            out.produced_at = max(out.produced_at, header_ms(recs[-1].headers))
    return out


class _Adapter(ConsumerRebalanceListener):  # type: ignore[misc]
    """kafka-python's listener interface over the daemon's ``Listener`` (input-topic partitions only)."""

    def __init__(self, listener: Listener, topic: str) -> None:
        self.listener = listener
        self.topic = topic

    def _parts(self, tps: list[Any]) -> list[int]:
        return sorted(tp.partition for tp in tps if tp.topic == self.topic)

    def on_partitions_revoked(self, revoked: list[Any]) -> None:
        self.listener.on_revoked(self._parts(revoked))

    def on_partitions_lost(self, lost: list[Any]) -> None:
        self.listener.on_lost(self._parts(lost))

    def on_partitions_assigned(self, assigned: list[Any]) -> None:
        self.listener.on_assigned(self._parts(assigned))


class KafkaPythonSource:
    """``KafkaSource`` on a ``KafkaConsumer`` (created on the consumer thread by ``open``)."""

    name = "kafka-python"

    def __init__(self, settings: StreamSettings, owns_partitions: Callable[[], bool]) -> None:
        self.s = settings
        self.topic = settings.input_topic
        #: one owner of every partition; the account stage's members share them (``SpreadAssignor``)
        self.assignor: SingleOwnerAssignor | SpreadAssignor = (
            SpreadAssignor() if settings.stage == "account" else SingleOwnerAssignor(owns_partitions)
        )
        self.kafka: Any = None
        self._listener: Listener | None = None
        #: Out of a stable group this long with the broker reachable, the consumer is opened again:
        #: a join may legitimately wait ``max_poll_interval_ms`` for the other members, twice that
        #: plus a session is a stall (seen after a broker restarted empty: kafka-python stayed
        #: unjoined with nothing in flight while its polls returned nothing).
        self.rejoin_deadline_s = (2 * settings.max_poll_interval_ms + settings.session_timeout_ms) / 1000
        self._unstable_since: float | None = None
        #: How many times a stalled join made the source open the consumer again.
        self.reopens = 0
        #: Polls in a row whose records were fetched again (``_fetch_again``).
        self._fetched_again = 0

    @property
    def generation(self) -> int:
        return self.assignor.generation

    def open(self, listener: Listener) -> None:
        from kafka import KafkaConsumer

        self.kafka = KafkaConsumer(
            # an offset outside the log raises (``faults``): never the silent reset of the client; and
            # the daemon never creates topics, not even through a metadata request (kafka-python's
            # default) that would recreate a deleted input topic with the broker's default partitions
            **{**self.s.consumer_config(), "auto_offset_reset": "none", "allow_auto_create_topics": False},
            group_id=self.s.group_id,
            session_timeout_ms=self.s.session_timeout_ms,
            heartbeat_interval_ms=self.s.heartbeat_interval_ms,
            max_poll_interval_ms=self.s.max_poll_interval_ms,
            partition_assignment_strategy=[self.assignor],
        )
        self.kafka.subscribe([self.topic], listener=_Adapter(listener, self.topic))
        self._listener = listener
        self._unstable_since = None

    def poll(self, timeout_ms: int, max_records: int) -> Records:
        from kafka.errors import KafkaConnectionError, KafkaTimeoutError, OffsetOutOfRangeError

        try:
            raw = self.kafka.poll(timeout_ms=timeout_ms, max_records=max_records)
            if raw and not self._metadata_current():
                raw = self._fetch_again(raw)
            elif raw:
                self._fetched_again = 0
            polled = records_of(raw)
        except OffsetOutOfRangeError as exc:
            raise OffsetsOutOfRange({tp.partition: off for tp, off in exc.args[0].items()}) from exc
        except (KafkaConnectionError, KafkaTimeoutError) as exc:
            raise SourceUnavailable(type(exc).__name__) from exc
        self._watch_join()
        return polled

    def _metadata_current(self) -> bool:
        """Whether the client's metadata is not waiting for a refresh; if it is, refresh it now (at most
        ``METADATA_WAIT_MS``). kafka-python (Fetch v12) fetches by topic name from the leader it knows:
        after a broker restart the same leader can serve a **recreated** topic's log at the old position
        before a refresh has told the client the topic's id changed (a refresh fails while the broker is
        down, and asks again while the topic is missing). Records fetched then must not pass the topic
        check (``faults.InputTopicWatch.after_poll``) on the old id: with the refresh done the check
        reads the new one and applies the policy (CI at 62f6d48: 200 records of a recreated log read
        under ``ON_TOPIC_RESET=fail``). A healthy cluster asks nothing (no refresh pending: 0 of 18 polls
        with records on an 8,302-record read); while the client keeps asking (a partition without a
        leader asks each fetch round), each poll with records waits for the next refresh."""
        from kafka.errors import KafkaError

        cluster = self.kafka._client.cluster
        if not cluster.need_update:
            return True
        future = cluster.request_update()
        try:  # as the client's own blocking metadata calls wait (``KafkaConsumer.topics``)
            self.kafka._net.run(self.kafka._manager.wait_for, future, METADATA_WAIT_MS)
        except KafkaError:  # timed out, or the refresh failed
            return False
        return bool(future.is_done and not future.failed())

    def _fetch_again(self, raw: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
        """Records fetched under metadata that could not be refreshed: seek each partition back to its
        first record and return none (they are fetched again once the metadata is current). Not more
        than ``FETCH_AGAIN_MAX`` polls in a row: a refresh that keeps failing while fetches succeed
        would otherwise hand over nothing for good; then the records go out and the topic check
        (``faults.InputTopicWatch``) decides on what the client knows."""
        self._fetched_again += 1
        if self._fetched_again > FETCH_AGAIN_MAX:
            log.warning(
                "metadata refresh still pending; handing the records over",
                extra={"topic": self.topic, "polls": self._fetched_again},
            )
            self._fetched_again = 0
            return raw
        log.warning("metadata refresh pending; fetching these records again", extra={"topic": self.topic})
        for tp, recs in raw.items():
            if recs:
                self.kafka.seek(tp, recs[0].offset)
        return {}

    def _watch_join(self) -> None:
        """Open the consumer again when the group join has stalled (see ``rejoin_deadline_s``); the
        time the broker is unreachable does not count (reconnecting is the client's job)."""
        now = time.monotonic()
        if self.kafka._coordinator.stable() or not self.reachable():
            self._unstable_since = None
            return
        if self._unstable_since is None:
            self._unstable_since = now
            return
        if now - self._unstable_since < self.rejoin_deadline_s:
            return
        log.warning(
            "group join stalled; opening the consumer again",
            extra={"group": self.s.group_id, "stalled_s": round(now - self._unstable_since, 1)},
        )
        assert self._listener is not None
        try:
            self.kafka.close(autocommit=False)  # holds no partitions: nothing to revoke
        except Exception as exc:
            log.warning("closing the stalled consumer failed", extra={"error": type(exc).__name__})
        self.reopens += 1
        self.open(self._listener)

    # ``faults.FaultAware``: what the broker and topic checks read
    def topic_id(self) -> str | None:
        found = self.kafka._client.cluster.topic_id(self.topic)
        return str(found) if found is not None else None

    def reachable(self) -> bool:
        client = self.kafka._client
        up = any(client.connected(b.node_id) for b in client.cluster.brokers())
        return bool(up) and not self.kafka._coordinator.coordinator_unknown()

    def log_start(self, partitions: list[int]) -> dict[int, int]:
        from kafka import TopicPartition

        found = self.kafka.beginning_offsets([TopicPartition(self.topic, p) for p in partitions])
        return {tp.partition: int(o) for tp, o in found.items()}

    def log_end(self, partitions: list[int]) -> dict[int, int]:
        from kafka import TopicPartition

        found = self.kafka.end_offsets([TopicPartition(self.topic, p) for p in partitions])
        return {tp.partition: int(o) for tp, o in found.items()}

    def _mine(self) -> list[Any]:
        return [tp for tp in self.kafka.assignment() if tp.topic == self.topic]

    def assignment(self) -> list[int]:
        return sorted(tp.partition for tp in self._mine())

    def highwaters(self) -> dict[int, int | None]:
        return {tp.partition: self.kafka.highwater(tp) for tp in self._mine()}

    def pause(self) -> None:
        mine = self._mine()
        if mine:
            self.kafka.pause(*mine)

    def resume(self) -> None:
        paused = self.kafka.paused()
        if paused:
            self.kafka.resume(*paused)

    def seek(self, partition: int, offset: int | None) -> None:
        from kafka import TopicPartition

        tp = TopicPartition(self.topic, partition)
        if offset is None:
            self.kafka.seek_to_beginning(tp)
        else:
            self.kafka.seek(tp, offset)

    def commit(self, offsets: dict[int, int], *, sync: bool) -> None:
        from kafka import OffsetAndMetadata, TopicPartition

        request = {TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
        if sync:
            self.kafka.commit(request)
        else:
            self.kafka.commit_async(request, callback=_log_commit_failure)

    def close(self) -> None:
        if self.kafka is not None:
            self.kafka.close(autocommit=False)  # revokes: the listener may commit once more


def _log_commit_failure(offsets: Any, response: Any) -> None:
    if isinstance(response, BaseException):
        log.warning("offset commit failed", extra={"error": type(response).__name__})
