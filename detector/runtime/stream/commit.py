"""The commit protocol: one numbered function, in its own class (quix-streams ``Checkpoint.commit``).

1. **flush the sinks** (wait for the alert and dead-letter acknowledgements, post webhooks). The
   checkpoint is about to say "these events are counted"; their alerts must be delivered first, or a
   crash right after the checkpoint would lose them (the restored engine would not raise them again).
   A failed flush raises ``SinkError`` and nothing is written. A flush that cannot be *verified* now
   (``SinkUnverified``: the broker does not answer the output-topic check) skips this commit like a
   failed write: nothing is written, the daemon is not ready, and the next interval tries again.
2. **write the checkpoint**: window state, open alert episodes, buffered events, the clock *and the
   consumed offsets per partition* in one atomic folder switch, so state and offsets can never
   disagree. The offsets are the merge's safe offsets: events the merge still holds are not counted.
   A newer owner epoch in the current checkpoint refuses the write (``Fenced``): a paused owner that
   the group replaced cannot overwrite its successor's state. A failed write (any error: read-only
   directory, full disk, polars' ``ComputeError``; ``CheckpointWriteError``) leaves no folder behind,
   is logged and counted, and the offsets are then not committed; ``failing_since`` says since when
   commits have been failing (the daemon's readiness and liveness read it).
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

from detector.checkpoint import CheckpointFolder, CheckpointWriteError, StreamPosition
from detector.errors import DetectorError
from detector.io.sinks import Outputs, SinkError, SinkUnverified

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
        #: ``time.monotonic()`` of the first failed write since the last good one (None: not failing)
        self.failing_since: float | None = None
        #: failed writes since the last good one
        self.failures = 0

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
        except SinkUnverified as exc:  # the broker does not answer now: keep everything, try again later
            self.metrics.record_checkpoint(time.perf_counter() - t0, ok=False)
            self._failed()
            log.warning("commit deferred: %s", exc, extra={"failures_in_a_row": self.failures})
            return None
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
        except CheckpointWriteError as exc:
            self.metrics.record_checkpoint(time.perf_counter() - t0, ok=False)
            self._failed()
            log.error(
                "checkpoint failed; offsets not committed, not ready until one succeeds",
                extra={"error": str(exc), "failures_in_a_row": self.failures},
            )
            return None
        self.failing_since, self.failures = None, 0
        forward = {p: o for p, o in offsets.items() if o >= self._sent.get(p, 0)}
        self._sent.update(forward)
        send_offsets(forward)  # 3
        self.metrics.record_checkpoint(time.perf_counter() - t0, ok=True)
        return folder

    def _failed(self) -> None:
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = time.monotonic()


class CheckpointFailed(CommitError):
    """The daemon stopped with its last checkpoint failed: the state directory is behind what it
    counted (a restart resumes from the last good checkpoint and reads the events since again)."""

    exit_code = 8
