"""``--drain`` in the account stage: a member ends when the group's partitions are drained, not its share.

An account stage holds a share of the input partitions (``assignor.SpreadAssignor``). Under ``--drain``
a member that has read its share to the end used to exit. But the group may have dealt a share to a
member that is dead and not yet expired (a ``kill -9`` within the session timeout of the deal): if
every live member drained its own share and exited before that member expired, its partitions were
never read again and their alerts were lost, every process exiting 0 (round 23; round 17 saw it too).

So a member whose share is drained marks the offsets it drained to, and stays in the group (polling,
reading nothing more) until every partition of the input topic is marked at least as far as the log
ended when this member took its share (``snapshot``: at its first batch after the deal, before it
read to the end). A dead member's partitions are then dealt again when it expires, to a member still
waiting, which reads and drains them in turn.

Why the log ends are taken before the member drains, not after: with records still coming in, two
members that each took the other's ends after their own drain could each wait for the other's marks
to reach ends that neither reads to any more (both stopped reading). Taken before, a member's ends are
older than any other member's drain that follows them, and that drain reads past them; and a member
that drained before them was dealt its share again by the same rebalance, so it drains again.

The marks are the committed offsets of a group of their own, ``<group>.drained``, written by a client
that joins no group (a member's own commits cannot carry them: an interval commit can reach the log
end before the drain closes the last ticks, and Tansu does not keep commit metadata). A mark is
written only after the drain's checkpoint is, so a marked partition's alerts were all sent. (A mark
cannot be told from an older log's by being past the log's end: Tansu's log end, ``ListOffsets``, is
below the offsets a consumer reads to, by about one a produced batch.) A member reads nothing after
its share is drained: the next holder reads it again. The calls to the broker have a
bound (``BROKER_TIMEOUT_MS``; the processing lock is held), all but the client's first metadata fetch
(``partitions_for_topic``, once an assignment, when the broker has just answered the drain's flush): a
broker that does not answer is a warning and a retry, not a wait past the group's rebalance timeout.

Left alone: ``--reset-state`` does not clear the marks of an earlier run over the same topic, so a
member of a reset run may end before a dead member's share is read again in that run (that share was
drained, and its alerts sent, by the earlier run); nor does a recreated input topic (an older log's
marks can cover a new, shorter log).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detector.runtime.stream.settings import StreamSettings

log = logging.getLogger("detector.stream")

#: The broker is asked at most this often while a member waits (and after a call that failed).
CHECK_EVERY_S = 1.0
#: The bound on each call to the broker (the processing lock is held meanwhile).
BROKER_TIMEOUT_MS = 2_000


def marks_group(group_id: str) -> str:
    """The group whose committed offsets are the drain marks of ``group_id``'s members."""
    return f"{group_id}.drained"


class GroupDrain:
    """The drain marks of one account-stage member (processing thread only; a client of its own)."""

    def __init__(self, s: StreamSettings) -> None:
        self.s = s
        self._client: Any = None
        self._tps: list[Any] | None = None
        #: The log end of every partition when this member took its share (``snapshot``); None: not
        #: taken yet in this assignment.
        self._ends: dict[int, int] | None = None
        self._last = 0.0
        #: What this member drained to, not yet marked (the broker did not answer yet).
        self._unmarked: dict[int, int] | None = None
        #: Partitions not yet marked as far as ``_ends`` at the last check, with their mark and end
        #: (logged when it changes).
        self.pending: dict[str, list[int | None]] | None = None

    def _consumer(self) -> Any:
        if self._client is None:
            from kafka import KafkaConsumer

            self._client = KafkaConsumer(
                **self.s.kafka_common(),
                group_id=marks_group(self.s.group_id),
                enable_auto_commit=False,
                request_timeout_ms=BROKER_TIMEOUT_MS + 1_000,
            )
        return self._client

    def _partitions(self, client: Any) -> list[Any]:
        from kafka import TopicPartition

        if self._tps is None:
            found = client.partitions_for_topic(self.s.input_topic) or set()
            self._tps = [TopicPartition(self.s.input_topic, p) for p in sorted(found)]
        return self._tps

    def _log_ends(self, client: Any, tps: list[Any]) -> dict[int, int]:
        return {tp.partition: int(o) for tp, o in client.end_offsets(tps, BROKER_TIMEOUT_MS).items()}

    def _ask(self, what: str, call: Callable[[], bool]) -> bool:
        """``call`` at most every ``CHECK_EVERY_S``; False (and a warning) when the broker fails it."""
        from kafka.errors import KafkaError

        now = time.monotonic()
        if now - self._last < CHECK_EVERY_S:
            return False
        self._last = now
        try:
            return call()
        except KafkaError as exc:
            log.warning(
                f"drain marks: the broker did not answer {what}; asking again",
                extra={"error": type(exc).__name__},
            )
            return False

    def reset(self) -> None:
        """A new assignment: the log ends are taken again before the share is read."""
        self._ends, self._unmarked, self.pending, self._last, self._tps = None, None, None, 0.0, None

    def snapshot(self) -> None:
        """Take every partition's log end, once an assignment, before this member reads its share to the
        end (the ends its wait compares the marks with)."""
        if self._ends is not None:
            return

        def take() -> bool:
            client = self._consumer()
            self._ends = self._log_ends(client, self._partitions(client))
            return True

        self._ask("the log ends", take)

    def mark(self, offsets: dict[int, int]) -> None:
        """This member's share is drained to ``offsets`` (its checkpoint is written): mark them (at the
        next ``done``, retried there until the broker answers)."""
        self._unmarked = dict(offsets)
        self._last = 0.0

    def done(self) -> bool:
        """Whether every partition is marked as far as ``snapshot`` found the log (asked of the broker at
        most every ``CHECK_EVERY_S``: False in between, and while it does not answer)."""
        return self._ask("the marks", self._check)

    def _check(self) -> bool:
        from kafka import OffsetAndMetadata, TopicPartition

        client = self._consumer()
        tps = self._partitions(client)
        if self._unmarked is not None:
            topic = self.s.input_topic
            marks = {
                TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in self._unmarked.items()
            }
            client.commit(marks, BROKER_TIMEOUT_MS)
            self._unmarked = None
        if self._ends is None:  # no snapshot this assignment (the broker failed it, or no share): now
            self._ends = self._log_ends(client, tps)
        marked = client._coordinator.fetch_committed_offsets(tps, BROKER_TIMEOUT_MS)
        pending: dict[str, list[int | None]] = {}  # per partition behind: its mark and the end to reach
        for tp in tps:
            end, mark = self._ends.get(tp.partition, 0), marked.get(tp)
            if end > 0 and (mark is None or mark.offset < end):  # an empty partition has nothing to drain
                pending[str(tp.partition)] = [None if mark is None else mark.offset, end]
        if pending and pending != self.pending:
            log.info("share drained; waiting for the group's partitions", extra={"pending": pending})
        self.pending = pending
        return bool(tps) and not pending

    def close(self) -> None:
        if self._client is not None:
            self._client.close(autocommit=False)
            self._client = None
