"""The Kafka source interface: what the consumer thread and the rebalance listener need from a client.

Two implementations (``DETECTOR_STREAM_SOURCE``):

- ``kafka-python`` (the default, ``kafkapython.KafkaPythonSource``): subscribes the input topic with
  the custom ``SingleOwnerAssignor`` (one member gets every partition, sticky);
- ``confluent`` (librdkafka, the optional extra ``confluent``; ``confluent.ConfluentSource``): librdkafka
  cannot run a Python assignor, so single ownership is a **lease**: every replica subscribes a
  one-partition lease topic with the standard cooperative-sticky assignor; the member that holds lease
  partition 0 assigns itself every input partition by hand, the others are standbys.

Either way the daemon sees the same thing: ``Listener`` callbacks with the input partitions gained or
given up (an empty ``on_assigned``: this replica is a standby), called from inside ``poll`` or
``close`` on the consumer thread, and polls as ``Records`` (columns, not client objects, so the
decoding workers and the merge never see a client type). One thread (the consumer thread) calls a
source; ``seek`` and an asynchronous ``commit`` may also be called from inside a listener callback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

#: The implementations ``DETECTOR_STREAM_SOURCE`` selects.
SourceName = Literal["kafka-python", "confluent"]


@dataclass
class Records:
    """One poll of the input topic as columns: record *i* is ``values[i]`` at ``parts[i]@offs[i]``."""

    values: list[bytes] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    parts: list[int] = field(default_factory=list)
    offs: list[int] = field(default_factory=list)
    #: The record timestamp (ms since the epoch; -1: none) as the broker returned it.
    timestamps: list[int] = field(default_factory=list)
    #: Per partition: the first and last offset in the poll (in order within a partition).
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: Newest ``produced_at`` header among the last record of each partition (ms; 0: none).
    produced_at: int = 0

    def __len__(self) -> int:
        return len(self.offs)


class Listener(Protocol):
    """The daemon's side of a rebalance (``rebalance.Rebalance``); partitions of the input topic."""

    def on_revoked(self, partitions: list[int]) -> None:
        """These partitions go away in an orderly rebalance: commit now, the next owner starts there."""

    def on_lost(self, partitions: list[int]) -> None:
        """The group already evicted this member: drop state, never write."""

    def on_assigned(self, partitions: list[int]) -> None:
        """These partitions are now this member's (empty: a standby). ``KafkaSource.seek`` each one."""


class KafkaSource(Protocol):
    """A consumer of the input topic in the daemon's group, owned by one thread (see the module doc)."""

    #: ``kafka-python`` or ``confluent``.
    name: str

    @property
    def generation(self) -> int:
        """The latest assignment's number (-1 before the first); logged and written to checkpoints."""

    def open(self, listener: Listener) -> None:
        """Create the client and join the group; ``listener`` is called from inside ``poll``/``close``."""

    def poll(self, timeout_ms: int, max_records: int) -> Records:
        """Up to ``max_records`` records, waiting at most ``timeout_ms`` for the first."""

    def assignment(self) -> list[int]:
        """The input partitions this member holds now (sorted)."""

    def highwaters(self) -> dict[int, int | None]:
        """High-water offset per held partition, as the latest fetch saw it (None: not known yet)."""

    def pause(self) -> None:
        """Stop fetching every held partition (the group is still served by ``poll``)."""

    def resume(self) -> None:
        """Fetch again after ``pause``."""

    def seek(self, partition: int, offset: int | None) -> None:
        """Position a partition (None: its beginning); only from ``Listener.on_assigned``."""

    def commit(self, offsets: dict[int, int], *, sync: bool) -> None:
        """Commit offsets to the group (asynchronous failures are logged); may raise on a sync commit."""

    def close(self) -> None:
        """Leave the group (a last ``on_revoked``) without committing anything by itself."""


def header_ms(headers: Any) -> int:
    """The ``produced_at`` header (ms since the epoch) among ``headers`` (pairs or None); 0 if absent."""
    for key, value in headers or ():
        if key == "produced_at":
            try:
                return int(value)
            except (TypeError, ValueError):  # a null or non-numeric header (any producer may set one)
                return 0
    return 0
