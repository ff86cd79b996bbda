"""The group's partition assignor: every partition of the input topic to one owner, sticky.

The engine's cluster stage must see every account (a hydra cluster's accounts hash to many partitions),
and today one engine holds the account and the cluster stage together. So one replica owns all the
partitions and the others are hot standbys in the same group: when the owner leaves or dies, the group
rebalances, the standby gets every partition, loads the shared checkpoint and seeks to its offsets.
The current owner keeps its partitions when a standby joins (``user_data`` says who owns them), so a
new replica never forces a state move.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kafka.coordinator.assignors.abstract import (
    AbstractPartitionAssignor,
    ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
)

OWNER = b"owner"
STANDBY = b"standby"


class SingleOwnerAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """Assigns all subscribed partitions to one member (the current owner if any, else the lowest id)."""

    name = "detector-single-owner"
    version = 0

    def __init__(self, owns_partitions: Callable[[], bool]) -> None:
        self._owns = owns_partitions
        #: The group generation of the latest assignment (-1 before the first); logged and checkpointed.
        self.generation = -1

    def assign(self, cluster: Any, members: Sequence[Any]) -> dict[str, Any]:
        """Leader side: one owner gets every partition; everyone else gets none."""
        topics = sorted({t for m in members for t in m.metadata.topics})
        parts = [(t, sorted(cluster.partitions_for_topic(t) or [])) for t in topics]
        owners = sorted(m.member_id for m in members if m.metadata.user_data == OWNER)
        owner = owners[0] if owners else sorted(m.member_id for m in members)[0]
        return {
            m.member_id: ConsumerProtocolAssignment(self.version, parts if m.member_id == owner else [], b"")
            for m in members
        }

    def metadata(self, topics: Any) -> Any:
        """Member side: the subscription, tagged with whether this member owns partitions now."""
        return ConsumerProtocolSubscription(self.version, list(topics), OWNER if self._owns() else STANDBY)

    def on_assignment(self, assignment: Any, generation: int) -> None:
        """Remember the generation (ownership itself is read from the daemon when the next join happens)."""
        self.generation = generation


class SpreadAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """The account stage's (``DETECTOR_STAGE=account``): the partitions dealt out over the members in
    turn (members by id, partitions by number), each member a share; no member is a standby."""

    name = "detector-spread"
    version = 0

    def __init__(self) -> None:
        self.generation = -1

    def assign(self, cluster: Any, members: Sequence[Any]) -> dict[str, Any]:
        """Leader side: partition ``i`` (of the sorted topics' partitions) to member ``i mod n``."""
        topics = sorted({t for m in members for t in m.metadata.topics})
        ids = sorted(m.member_id for m in members)
        share: dict[str, dict[str, list[int]]] = {i: {} for i in ids}
        i = 0
        for t in topics:
            for p in sorted(cluster.partitions_for_topic(t) or []):
                share[ids[i % len(ids)]].setdefault(t, []).append(p)
                i += 1
        return {m: ConsumerProtocolAssignment(self.version, sorted(share[m].items()), b"") for m in ids}

    def metadata(self, topics: Any) -> Any:
        return ConsumerProtocolSubscription(self.version, list(topics), b"")

    def on_assignment(self, assignment: Any, generation: int) -> None:
        self.generation = generation
