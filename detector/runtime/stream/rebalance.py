"""Rebalance and fencing: what the daemon does when the group revokes, loses or assigns partitions.

The listener methods run inside the source's ``poll`` (or ``close``; kafka-python 3 runs them on the
client's IO thread while the consumer thread waits in ``poll``), with input partition numbers, whatever
the ``KafkaSource``. They take the processing lock, so the
processing thread is between batches, then bump the epoch: batches still queued were polled under the
old assignment, so they are dropped, not counted, and read again from the checkpoint's offsets.

- **revoked**: commit (flush, checkpoint of exactly what the engine and the merge hold) and only then let
  the rebalance go on, so the next owner starts from our checkpoint.
- **lost** (the group already evicted this member): drop the in-memory state without writing a
  checkpoint: another owner may already be writing.
- **assigned**: restore the shared checkpoint (unless memory already equals it), seek every partition
  to the checkpoint's offsets, and claim ownership. Fencing: the new owner takes an *owner epoch* one
  above the one in the current checkpoint and writes it at once (a claim checkpoint); every later
  checkpoint carries it, and a commit that finds a newer epoch refuses to write (``Fenced``, exit 4),
  so a paused owner that the group replaced cannot overwrite its successor's state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from detector.checkpoint import CheckpointFolder, StreamPosition
from detector.detect.runaway import keep_demotions
from detector.io.sinks import SinkError
from detector.runtime.merge import EventTimeMerge
from detector.runtime.stream.commit import Checkpoint, Fenced
from detector.runtime.stream.consumer import ConsumerThread
from detector.runtime.stream.faults import InputTopicWatch
from detector.runtime.stream.reload import RuleReloader
from detector.runtime.stream.settings import StreamSettings
from detector.runtime.stream.source import KafkaSource
from detector.runtime.stream.stages import assignment_folder
from detector.runtime.stream.statecheck import refuse_lost_state

if TYPE_CHECKING:
    from pathlib import Path

    from detector.engine import Engine, EngineFactory, Observers
    from detector.runtime.stream.decoding import Decoder
    from detector.runtime.stream.drain import GroupDrain

log = logging.getLogger("detector.stream")


class _Stats(Protocol):
    stale_batches: int
    assignments: int
    losses: int


class Owner(Protocol):
    """What the listener reads and changes on the daemon (``detector.runtime.stream.daemon.Daemon``)."""

    s: StreamSettings
    lock: threading.RLock
    #: set while a listener waits for the lock (an account stage's context wait gives up: ``contexts``)
    rebalancing: threading.Event
    epoch: int
    _owner_epoch: int
    _dirty: bool
    engine: Engine | None
    factory: EngineFactory
    #: what every engine the factory builds reports to (the metrics)
    observers: Observers
    reloader: RuleReloader | None
    consumer: ConsumerThread
    decoder: Decoder | None
    watch: InputTopicWatch
    folder: CheckpointFolder
    checkpoint: Checkpoint
    merge: EventTimeMerge
    source: KafkaSource
    assigned: list[int]
    hw: dict[int, int | None]
    owner: bool
    joined: bool
    no_commit: bool
    reset_pending: bool
    #: the account stage under ``--drain``: its share drained, waiting for the group (``drain``)
    share_drained: bool
    group_drain: GroupDrain | None
    fatal: BaseException | None
    my_ckpt: str | None

    @property
    def summary(self) -> _Stats: ...

    def commit(self, reason: str, *, in_listener: bool = False) -> None: ...

    def restore_decisions(self, extra: dict[str, Any]) -> None: ...

    def use_assignment(self, partitions: list[int]) -> None: ...


class Rebalance:
    """The rebalance callbacks (``source.Listener``), acting on the daemon's state under its lock."""

    def __init__(self, daemon: Owner) -> None:
        self.daemon = daemon

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The processing lock, with ``rebalancing`` set while it is waited for: a batch waiting for
        the cluster stage's context gives up (``contexts.WaitInterrupted``) rather than holding the
        member past the group's rebalance timeout."""
        d = self.daemon
        d.rebalancing.set()
        try:
            with d.lock:
                d.rebalancing.clear()
                yield
        finally:
            d.rebalancing.clear()

    def _new_epoch(self) -> None:
        d = self.daemon
        d.epoch += 1
        d.summary.stale_batches += d.consumer.discard_queued()

    def _commit_or_stop(self, reason: str) -> None:
        """Commit from inside the listener; a sink failure or fencing stops the daemon (no more writes)."""
        d = self.daemon
        try:
            d.commit(reason, in_listener=True)
        except (SinkError, Fenced) as exc:
            d.fatal = exc
            d.no_commit = True
            d.engine = None

    def _undrain(self) -> None:
        """A new share (or none): it is read and drained again before the member waits (``drain``)."""
        d = self.daemon
        d.share_drained = False
        if d.group_drain is not None:
            d.group_drain.reset()

    def on_revoked(self, revoked: list[int]) -> None:
        """Before the group moves partitions: commit, so the next owner starts from our checkpoint."""
        d = self.daemon
        with self._locked():
            self._new_epoch()
            if d.engine is not None and not d.no_commit:
                if d._dirty:
                    d.my_ckpt = None  # set again only if this commit succeeds (memory == checkpoint)
                self._commit_or_stop("rebalance")
            d.assigned = []
        log.info("partitions revoked", extra={"partitions": revoked})

    def _cannot_take(self, exc: Exception, folder: Path) -> None:
        """No state to take over in ``folder`` (NoGoodCheckpoint, another text key, unreadable):
        kafka-python would swallow the error and leave the partitions idle; stop the daemon with it
        instead, in one line naming the folder. Called with the lock held."""
        d = self.daemon
        d.fatal, d.owner, d.engine = exc, False, None
        log.error("cannot take the partitions", extra={"error": str(exc), "state_dir": str(folder)})

    def on_lost(self, lost: list[int]) -> None:
        """The group evicted us (session expired): another owner may be writing; drop, never write."""
        d = self.daemon
        with self._locked():
            self._new_epoch()
            d.engine = None
            d.my_ckpt = None
            d._dirty = False
            d.assigned = []
            self._undrain()
            d.summary.losses += 1
        log.warning("partitions lost", extra={"partitions": lost})

    def on_assigned(self, assigned: list[int]) -> None:
        """After the group assigned partitions: restore the shared checkpoint, seek, claim ownership."""
        d = self.daemon
        start: dict[int, int] = {}
        with d.lock:
            self._new_epoch()
            d.summary.assignments += 1
            d.joined = True
            self._undrain()
            topic = d.s.input_topic
            mine = sorted(assigned)
            d.assigned = mine
            if not mine:
                d.owner = False
                d.engine = None
                log.info("standby: no partitions assigned")
                return
            d.owner = True
            try:
                if d.s.stage == "account":  # its state is per set of partitions (``stages``)
                    d.use_assignment(mine)
            except Exception as exc:
                return self._cannot_take(exc, assignment_folder(d.s.state_dir, mine))
            if d.engine is None or d.folder.current_name() != d.my_ckpt:
                engine = d.factory(observers=d.observers)
                try:
                    loaded = d.folder.load(engine)  # the newest checkpoint that verifies
                    if loaded is None and not d.reset_pending and d.s.stage != "account":
                        refuse_lost_state(d.s)  # no state at all: only a first start reads from 0
                except Exception as exc:
                    return self._cannot_take(exc, d.folder.root)
                extra = loaded or {}
                if d.decoder is not None:  # its workers compute text_fp: under the owning engine's key
                    d.decoder.text_key = engine.text_key
                d.restore_decisions(extra)
                if d.reloader is not None:  # the rules in force; restored demotions of unchanged rules stay
                    kept = keep_demotions(engine.rules, d.reloader.current, engine.demoted)
                    engine.rules = d.reloader.current
                    engine.demoted = kept
                d.engine = engine
            else:
                extra = d.folder.current_extra()
            position = StreamPosition.from_extra(extra, topic)
            d.watch.adopt(extra.get("input_topic_id"))  # the topic the offsets belong to
            for p in mine:
                off = position.offsets.get(p)
                d.consumer.seek(p, off)
                start[p] = 0 if off is None else off
            d.merge.reset(start)
            d.hw = {}
            d.checkpoint.reset()
            # claim: one epoch above any owner before us, written now so a paused predecessor is fenced
            d._owner_epoch = max(position.owner_epoch, d._owner_epoch) + 1
            d._dirty = True
            self._commit_or_stop("claim")
        log.info(
            "partitions assigned",
            extra={
                "partitions": mine,
                "from": {str(p): o for p, o in start.items()},
                "owner_epoch": d._owner_epoch,
                "generation": d.source.generation,
                "source": d.source.name,
            },
        )
