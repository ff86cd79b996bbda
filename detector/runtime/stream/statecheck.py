"""Before the daemon reads its input from the beginning: is this a genuine first start?

With no checkpoint the daemon would seek every partition to the beginning of the retained log and
raise every alert in it again. That is right on a first start (an empty state directory and no
offsets committed by the group) and after ``detector run --reset-state``; otherwise the state was lost
(the directory deleted, a wrong volume mounted) and the daemon refuses to start, naming the directory.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from detector.checkpoint import NoGoodCheckpoint
from detector.errors import ServiceError
from detector.statedir import choose

if TYPE_CHECKING:
    from pathlib import Path

    from detector.checkpoint import CheckpointFolder
    from detector.runtime.stream.settings import StreamSettings

log = logging.getLogger("detector.stream")


def committed_offsets(s: StreamSettings) -> dict[int, int]:
    """Offsets the consumer group has committed on the input topic, by partition. A short-lived
    consumer with the group's id that never subscribes (so never joins the group) asks for them."""
    from kafka import KafkaConsumer, TopicPartition

    try:
        consumer = KafkaConsumer(
            **s.kafka_common(),
            group_id=s.group_id,
            enable_auto_commit=False,
        )
        try:
            parts = consumer.partitions_for_topic(s.input_topic) or set()
            got = {p: consumer.committed(TopicPartition(s.input_topic, p)) for p in sorted(parts)}
        finally:
            consumer.close(autocommit=False)
    except Exception as exc:
        raise ServiceError(
            f"cannot read the committed offsets of group {s.group_id!r} ({type(exc).__name__}), so a "
            "start without a checkpoint cannot be told from lost state; retry when the broker answers",
            "Kafka",
        ) from exc
    return {p: o for p, o in got.items() if o is not None and o >= 0}


def refuse_lost_state(s: StreamSettings) -> None:
    """No checkpoint in the state directory: raise ``NoGoodCheckpoint`` when the group has committed
    offsets (state existed and is gone), else return (a first start)."""
    offsets = committed_offsets(s)
    if offsets:
        raise NoGoodCheckpoint(
            f"no checkpoint here, but consumer group {s.group_id!r} has committed offsets on "
            f"{s.input_topic!r} ({len(offsets)} partitions): the state was lost or this is the wrong "
            "directory. Refusing to read the input from the beginning; mount the right "
            "DETECTOR_STREAM_STATE_DIR, or start over with `detector run --reset-state` "
            "(docs/operations.md#state)",
            str(s.state_dir),
        )


def check_state(folder: CheckpointFolder, s: StreamSettings, reset: bool) -> bool:
    """The daemon's start: refuse a state directory with no checkpoint that verifies, or an empty one
    while the group has offsets (``NoGoodCheckpoint``). With ``reset`` (``--reset-state``) such a
    directory is moved aside instead and True returned (the first assignment may then read from the
    beginning); a checkpoint that verifies is never reset (the flag is ignored, with a warning), so a
    flag left in a service definition cannot wipe the state at every restart."""
    try:
        if folder.check():
            if reset:
                log.warning(
                    "--reset-state ignored: a checkpoint verifies", extra={"state_dir": str(folder.root)}
                )
            return False
        if not reset:
            refuse_lost_state(s)
            return False
    except NoGoodCheckpoint:
        if not reset:
            raise
    aside = folder.reset()
    log.warning(
        "state reset: starting from the beginning of the retained input",
        extra={"state_dir": str(folder.root), "moved_to": str(aside) if aside else None},
    )
    return True


def assignment_folders(root: Path) -> list[Path]:
    """An account stage's per-assignment state folders under ``root`` (``<state>/account/p*``)."""
    return sorted(p for p in root.glob("p*") if p.is_dir())


def check_account_state(s: StreamSettings, reset: bool) -> None:
    """An account stage's start: its state is per assignment (``stages.assignment_folder``), so a set
    never held starts empty by design; but no folder holding state at all while the group has offsets
    is lost state, refused like the single daemon's (``NoGoodCheckpoint``, exit 7). Each folder is
    checked (and reset) as it is assigned: ``check_assignment``."""
    if reset or any(choose(p).present for p in assignment_folders(s.state_dir)):
        return
    refuse_lost_state(s)


def check_assignment(folder: CheckpointFolder, s: StreamSettings, reset: bool) -> None:
    """An account stage's folder as its set of partitions is assigned: with ``reset``
    (``--reset-state``, until the first checkpoint) ``check_state`` on this folder, which moves it
    aside when no checkpoint verifies (the same warning line, naming the folder); without, a folder
    with no checkpoint that verifies raises ``NoGoodCheckpoint`` naming it (as its load would)."""
    if reset:
        check_state(folder, s, True)
    else:
        folder.check()
