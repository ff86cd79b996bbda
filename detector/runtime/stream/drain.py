"""``--drain`` in the account stage: a member ends when the group's partitions are drained, not its share.

An account stage holds a share of the input partitions (``assignor.SpreadAssignor``). Under ``--drain``
a member that has read its share to the end used to exit. But the group may have dealt a share to a
member that is dead and not yet expired (a ``kill -9`` within the session timeout of the deal): if
every live member drained its own share and exited before that member expired, its partitions were
never read again and their alerts were lost, every process exiting 0 (round 23; round 17 saw it too).

So a member whose share is drained marks the offsets it drained to, and stays in the group (polling,
reading nothing more) until every partition of the input topic is marked at least as far as the log
ended when it drained. A dead member's partitions are then dealt again when it expires, to a member
still waiting, which reads and drains them in turn.

The marks are the committed offsets of a group of their own, ``<group>.drained``, written by a
client that joins no group (a member's own commits cannot carry them: an interval commit can reach
the log end before the drain closes the last ticks, and Tansu does not keep commit metadata). A mark
is written only after the drain's checkpoint is, so a marked partition's alerts were all sent. What
came into the topic after a member drained is not waited for (``--drain`` drains the topic as it
stood), and a member reads nothing after its share is drained: the next holder reads it again.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detector.runtime.stream.settings import StreamSettings

log = logging.getLogger("detector.stream")

#: The marks are asked of the broker at most this often while a member waits.
CHECK_EVERY_S = 1.0


def marks_group(group_id: str) -> str:
    """The group whose committed offsets are the drain marks of ``group_id``'s members."""
    return f"{group_id}.drained"


class GroupDrain:
    """The drain marks of one account-stage member (processing thread only; a client of its own)."""

    def __init__(self, s: StreamSettings) -> None:
        self.s = s
        self._client: Any = None
        #: The log end of every partition when this member's share was drained (its own: what it drained
        #: to); None: not taken yet in this assignment.
        self._ends: dict[int, int] | None = None
        self._last = 0.0
        #: What this member drained to, not yet marked (the broker did not answer yet).
        self._unmarked: dict[int, int] | None = None
        #: Partitions not yet marked as far as ``_ends`` at the last check (logged when it changes).
        self.pending: list[int] | None = None

    def _consumer(self) -> Any:
        if self._client is None:
            from kafka import KafkaConsumer

            self._client = KafkaConsumer(
                **self.s.kafka_common(), group_id=marks_group(self.s.group_id), enable_auto_commit=False
            )
        return self._client

    def _partitions(self) -> list[Any]:
        from kafka import TopicPartition

        found = self._consumer().partitions_for_topic(self.s.input_topic) or set()
        return [TopicPartition(self.s.input_topic, p) for p in sorted(found)]

    def reset(self) -> None:
        """A new assignment: the next drain takes the log ends again."""
        self._ends, self._unmarked, self.pending, self._last = None, None, None, 0.0

    def mark(self, offsets: dict[int, int]) -> None:
        """This member's share is drained to ``offsets`` (its checkpoint is written): mark them, and take
        the other partitions' log ends as they are now (at the next ``done``, retried there until the
        broker answers)."""
        self._unmarked = dict(offsets)
        self._ends, self._last = None, 0.0

    def _mark(self, client: Any, tps: list[Any]) -> None:
        from kafka import OffsetAndMetadata, TopicPartition

        offsets = self._unmarked or {}
        ends = {tp.partition: int(o) for tp, o in client.end_offsets(tps).items()}
        topic = self.s.input_topic
        client.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})
        self._ends, self._unmarked = {**ends, **offsets}, None

    def done(self) -> bool:
        """Whether every partition is marked as far as the log ended when this member drained (asked of
        the broker at most every ``CHECK_EVERY_S``, False in between; False while it does not answer)."""
        from kafka.errors import KafkaError

        now = time.monotonic()
        if now - self._last < CHECK_EVERY_S:
            return False
        self._last = now
        try:
            client = self._consumer()
            tps = self._partitions()
            if self._unmarked is not None:
                self._mark(client, tps)
            if self._ends is None:  # a member holding no partitions: the log as it stands now
                self._ends = {tp.partition: int(o) for tp, o in client.end_offsets(tps).items()}
            marked = client._coordinator.fetch_committed_offsets(tps)
        except KafkaError as exc:
            error = type(exc).__name__
            log.warning("drain marks: the broker did not answer; asking again", extra={"error": error})
            return False
        pending = []
        for tp in tps:
            end, mark = self._ends.get(tp.partition, 0), marked.get(tp)
            if end > 0 and (mark is None or mark.offset < end):  # an empty partition has nothing to drain
                pending.append(tp.partition)
        if pending != self.pending:
            self.pending = pending
            if pending:
                log.info("share drained; waiting for the group's partitions", extra={"pending": pending})
        return bool(tps) and not pending

    def close(self) -> None:
        if self._client is not None:
            self._client.close(autocommit=False)
            self._client = None
