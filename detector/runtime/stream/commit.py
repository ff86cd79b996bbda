"""The commit protocol: one numbered function, in its own class (quix-streams ``Checkpoint.commit``).

1. **flush the sinks** (wait for the alert and dead-letter acknowledgements, post webhooks). The
   checkpoint is about to say "these events are counted"; their alerts must be delivered first, or a
   crash right after the checkpoint would lose them (the restored engine would not raise them again).
   A failed flush raises ``SinkError`` and nothing is written.
2. **write the checkpoint**: window state, open alert episodes, buffered events, the clock *and the
   consumed offsets per partition* in one atomic folder switch, so state and offsets can never
   disagree. The offsets are the merge's safe offsets: events the merge still holds are not counted.
   A newer owner epoch in the current checkpoint refuses the write (``Fenced``): a paused owner that
   the group replaced cannot overwrite its successor's state. A failed write (``OSError``) is logged
   and counted; offsets are then not committed.
3. **commit the offsets to Kafka**, for lag dashboards and tooling only, and only forward (never below
   what this assignment committed before). On start or assignment the daemon seeks to the checkpoint's
   offsets, never to the group's committed ones; a crash between 2 and 3 therefore costs nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detector.checkpoint import CheckpointFolder, StreamPosition
from detector.errors import DetectorError
from detector.io.sinks import Outputs, SinkError

if TYPE_CHECKING:
    from detector.engine import Engine
    from detector.runtime.metrics import Metrics

log = logging.getLogger("detector.stream")


class CommitError(DetectorError, RuntimeError):
    """The commit protocol refused to go on (no checkpoint was written)."""


class Fenced(CommitError):
    """A newer owner (higher owner epoch) wrote the current checkpoint; this replica must not write."""


class Checkpoint:
    """Runs the numbered commit for one daemon; remembers the offsets last sent to the group."""

    def __init__(self, folder: CheckpointFolder, topic: str, metrics: Metrics) -> None:
        self.folder = folder
        self.topic = topic
        self.metrics = metrics
        self._sent: dict[int, int] = {}

    def reset(self) -> None:
        """A new assignment: the next commit sends every partition's offset again."""
        self._sent = {}

    def commit(
        self,
        engine: Engine,
        outputs: Outputs,
        offsets: dict[int, int],
        owner_epoch: int,
        generation: int,
        send_offsets: Callable[[dict[int, int]], None],
        state: dict[str, Any] | None = None,
    ) -> Path | None:
        """1. flush, 2. checkpoint with ``offsets``, 3. ``send_offsets``; the new folder (None: failed)."""
        t0 = time.perf_counter()
        try:
            outputs.flush()  # 1
        except SinkError:
            self.metrics.record_checkpoint(time.perf_counter() - t0, ok=False)
            raise
        position = StreamPosition(self.topic, offsets, owner_epoch, generation, datetime.now(UTC).isoformat())
        try:
            stored = int(self.folder.current_extra().get("owner_epoch", 0))
            if stored > owner_epoch:
                self.metrics.record_checkpoint(time.perf_counter() - t0, ok=False)
                raise Fenced(f"checkpoint owner epoch {stored} is newer than ours ({owner_epoch})")
            folder = self.folder.save(engine, {**position.to_extra(), **(state or {})})  # 2
        except OSError:
            self.metrics.record_checkpoint(time.perf_counter() - t0, ok=False)
            log.exception("checkpoint failed; offsets not committed")
            return None
        forward = {p: o for p, o in offsets.items() if o >= self._sent.get(p, 0)}
        self._sent.update(forward)
        send_offsets(forward)  # 3
        self.metrics.record_checkpoint(time.perf_counter() - t0, ok=True)
        return folder
