"""The daemon's two-stage split on Kafka (issue 13; ``DETECTOR_STAGE``; docs/runtime.md, "Stages").

``runtime/shards.py`` proves the split in replay, stage after stage in one process. Here each stage is
its own daemon, in its own consumer group and state directory (``StreamSettings.for_stage``):

- ``cluster``: one owner of every partition of the events topic (standbys as today), an engine in
  ``stage="cluster"`` raising cluster verdicts only. Every tick's ``PopulationContext`` (and the
  ``models`` kind) goes as bytes to the contexts topic, keyed ``kind|as_of`` (``ContextPublisher``); the
  sends are flushed before each checkpoint, so a restart from a checkpoint never skips a context. With
  ``DETECTOR_STREAM_CONTEXTS_KEY`` each record is signed (``contextsign``) and the account stages read
  only signed ones.
- ``account``: a member of its group like any consumer (``assignor.SpreadAssignor``: a share of the
  partitions), an engine in ``stage="account"`` raising account verdicts only. Before it evaluates tick
  ``t`` it reads the context published as of ``t - tick`` (``contexts.ContextReader``), waiting for it when
  the cluster stage is behind (bounded by ``context_wait_s``; the wait is a histogram, and a wait of over a
  second is a log line naming the tick). A wait that runs out stops the daemon mid-batch without a
  checkpoint (a restart reads again); it never reads a population of its own accounts instead. Its state
  is per assignment: a subfolder per set of partitions (``assignment_folder``); a set of partitions
  never held before starts empty and reads them from their beginning.

The rule guard stays per account stage (each demotes on the counts of its own accounts); the replay's
summed counts (``Publication.summed``) are not relayed over Kafka yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from prometheus_client import Counter as PCounter
from prometheus_client import Histogram

from detector.engine import Observers
from detector.errors import ConfigError
from detector.io.kafka import KafkaKeyedBytesSink
from detector.io.sinks import DeadLetter
from detector.runtime.stream.contexts import MAX_RECORD_BYTES, REJECTS, ContextReader, Kind, context_key
from detector.runtime.stream.contextsign import VARIABLE, ContextKey, context_key_of
from detector.window.context import PopulationContext, Published

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from detector.engine import Engine, EngineFactory
    from detector.runtime.stream.settings import StreamSettings

log = logging.getLogger("detector.stream")


def assignment_folder(root: Path, partitions: list[int]) -> Path:
    """An account stage's state directory for one set of assigned partitions."""
    return root / ("p" + "-".join(str(p) for p in sorted(partitions)))


def staged_factory(factory: EngineFactory, stage: Literal["cluster", "account"]) -> EngineFactory:
    """``factory`` whose engines run ``stage`` (``Engine.stage``)."""

    def build(*, observers: Observers | None = None) -> Engine:
        engine = factory(observers=observers)
        engine.stage = stage
        return engine

    return build


def check_stage(stage: str, context_lag: bool, source: str) -> None:
    """Refuse a stage the engine settings or the Kafka client cannot run (``ConfigError``)."""
    if stage == "all":
        return
    if not context_lag:
        raise ConfigError(
            "a split stage needs the engine's context_lag (DETECTOR_CONTEXT_LAG=true): without it an "
            "account stage reads other accounts from its own partitions, not from the published contexts",
            "DETECTOR_STAGE",
        )
    if source != "kafka-python":
        raise ConfigError("the split stages run on the kafka-python source only", "DETECTOR_STAGE")


class ContextPublisher:
    """The cluster stage's relays: each context's bytes to the contexts topic, through a Kafka sink on a
    producer of its own (``flush`` before a checkpoint raises ``SinkError`` when one was not delivered)."""

    def __init__(self, s: StreamSettings, key: ContextKey | None = None) -> None:
        from kafka import KafkaProducer

        self.producer = KafkaProducer(
            **s.kafka_common(), acks="all", linger_ms=5, max_request_size=MAX_RECORD_BYTES
        )
        self.sink = KafkaKeyedBytesSink(self.producer, s.contexts_topic, s.flush_timeout_s)
        self.key = key  #: signs each record (``contextsign``); None: sent unsigned, as before
        self.sent = 0

    def relay(self, kind: Kind) -> Callable[[PopulationContext], PopulationContext]:
        def send(ctx: PopulationContext) -> PopulationContext:
            key, value = context_key(kind, ctx.as_of), ctx.to_bytes()
            if self.key is None:
                self.sink.add((key, value))
            else:
                self.sink.add((key, value, self.key.headers(key, value)))
            self.sent += 1
            return ctx

        return send

    def flush(self, timeout_s: float) -> None:
        self.sink.flush_timeout_s = timeout_s
        self.sink.flush()

    def close(self) -> None:
        self.producer.close(timeout=5)


class Waiting(Published):
    """A ``Published`` relay whose contexts come from the contexts topic (``ContextReader``)."""

    def __init__(self, reader: ContextReader, kind: Kind) -> None:
        super().__init__({})
        self.read = partial(reader.get, kind)

    def at(self, as_of: datetime) -> PopulationContext:
        return self.read(as_of)


class Stage:
    """What a stage adds to the daemon: its engines' stage and observers, and its publisher or reader."""

    def __init__(self, s: StreamSettings, registry: CollectorRegistry) -> None:
        self.name, self.s = s.stage, s
        self.publisher: ContextPublisher | None = None
        self.reader: ContextReader | None = None
        # read at start, so a key too short or an unreadable file stops the stage before it reads
        key = context_key_of(s) if s.stage != "all" else None
        if s.stage == "cluster":
            self.publisher = ContextPublisher(s, key)
        elif s.stage == "account":
            wait = Histogram(
                "detector_context_wait_seconds",
                "Account stage: time waited for the cluster stage's population context of a tick.",
                buckets=(0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
                registry=registry,
            )
            timeouts = PCounter(
                "detector_context_wait_timeouts",
                "Account stage: waits for a population context that ran out (the daemon stopped).",
                registry=registry,
            )
            rejects = PCounter(
                "detector_context_rejects",
                "Account stage: records on the contexts topic set aside (dead letters), by reason.",
                ["reason"],
                registry=registry,
            )
            for reason in REJECTS:
                rejects.labels(reason=reason)
            stand_ins = PCounter(
                "detector_context_stand_ins",
                "Account stage: quiet ticks the cluster stage published no context for, read from the "
                "context before them.",
                registry=registry,
            )
            self.reader = ContextReader(s, wait, timeouts, rejects, stand_ins, key)
            if key is None:  # once, at start: anyone who can write to the topic can hand it a context
                log.warning(
                    f"{VARIABLE} is not set: the contexts are read unauthenticated (set it on both stages)"
                )

    def factory(self, factory: EngineFactory) -> EngineFactory:
        if self.name == "all":
            return factory
        staged = staged_factory(factory, self.name)
        reader = self.reader
        if reader is None:
            return staged

        def build(*, observers: Observers | None = None) -> Engine:
            engine = staged(observers=observers)
            reader.tick = engine.settings.windows.tick  # the grid of the contexts' keys
            return engine

        return build

    def observers(self, base: Observers) -> Observers:
        if self.publisher is not None:
            on = self.publisher.relay
            return Observers(on_scores=base.on_scores, on_context=on("context"), on_models=on("models"))
        if self.reader is not None:
            r = self.reader
            return Observers(
                on_scores=base.on_scores, on_context=Waiting(r, "context"), on_models=Waiting(r, "models")
            )
        return base

    def setup(
        self, dead: Callable[[DeadLetter], None], topic_id: Callable[[str], str | None] | None = None
    ) -> None:
        """At start: the contexts topic must exist (``ConfigError`` naming its variable, not a send that
        blocks a minute and fails mid-tick at every restart, nor a wait for a topic no one can write:
        the daemon never creates topics); and where the account stage's set-aside records go (the
        daemon's dead letters). ``topic_id``: the broker's id of a topic, None when unknown."""
        if self.name == "all":
            return
        if topic_id is None:
            from detector.runtime.stream.faults import OutputTopics

            topics = OutputTopics(self.s.kafka_common())
            try:
                found = topics.topic_id(self.s.contexts_topic)
            finally:
                topics.close()
        else:
            found = topic_id(self.s.contexts_topic)
        if found is None:
            raise ConfigError(
                f"the contexts topic {self.s.contexts_topic!r} does not exist; create it with one "
                "partition (the daemon never creates topics)",
                "DETECTOR_STREAM_CONTEXTS_TOPIC",
            )
        if self.reader is not None:
            self.reader.dead = dead

    def before_checkpoint(self, timeout_s: float) -> None:
        if self.publisher is not None:
            self.publisher.flush(timeout_s)

    def close(self) -> None:
        for part in (self.publisher, self.reader):
            if part is not None:
                part.close()
