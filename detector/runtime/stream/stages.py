"""The daemon's two-stage split on Kafka (issue 13; ``DETECTOR_STAGE``; docs/runtime.md, "Stages").

``runtime/shards.py`` proves the split in replay, stage after stage in one process. Here each stage is
its own daemon, in its own consumer group and state directory (``StreamSettings.for_stage``):

- ``cluster``: one owner of every partition of the events topic (standbys as today), an engine in
  ``stage="cluster"`` raising cluster verdicts only. Every tick's ``PopulationContext`` (and the
  ``models`` kind) goes as bytes to the contexts topic, keyed ``kind|as_of`` (``ContextPublisher``); the
  sends are flushed before each checkpoint, so a restart from a checkpoint never skips a context.
- ``account``: a member of its group like any consumer (``assignor.SpreadAssignor``: a share of the
  partitions), an engine in ``stage="account"`` raising account verdicts only. Before it evaluates tick
  ``t`` it reads the context published as of ``t - tick`` (``ContextReader``), waiting for it when the
  cluster stage is behind (bounded by ``context_wait_s``; the wait is a histogram, and a wait of over a
  second is a log line naming the tick). A wait that runs out stops the daemon mid-batch without a
  checkpoint (a restart reads again); it never reads a population of its own accounts instead. Its state
  is per assignment: a subfolder per set of partitions (``assignment_folder``); a set of partitions
  never held before starts empty and reads them from their beginning.

The rule guard stays per account stage (each demotes on the counts of its own accounts); the replay's
summed counts (``Publication.summed``) are not relayed over Kafka yet.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson
from prometheus_client import Counter as PCounter
from prometheus_client import Histogram

from detector.engine import Observers
from detector.errors import ConfigError
from detector.io.sinks import DeadLetter, SinkError
from detector.validate import Reject
from detector.window.context import PopulationContext, Published

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from detector.engine import Engine, EngineFactory
    from detector.runtime.stream.settings import StreamSettings

log = logging.getLogger("detector.stream")

Kind = Literal["context", "models"]
#: A wait longer than this is logged (with the tick); every wait is in the histogram.
LOG_WAIT_S = 1.0
#: Largest context record sent (the population's sheets of a busy tick).
MAX_RECORD_BYTES = 64 << 20
#: Longest key read (``context_key`` writes about 40 bytes); a longer one is not parsed.
MAX_KEY_BYTES = 128
#: Why a contexts-topic record is set aside (a closed set: the label values of its counter).
REJECTS = ("context_key", "context_value")


class ContextTimeout(RuntimeError):
    """The cluster stage published no context for a tick within ``context_wait_s``."""


def context_key(kind: Kind, as_of: datetime) -> bytes:
    """The contexts topic's key of one publication."""
    return f"{kind}|{as_of.isoformat()}".encode()


def parse_key(key: bytes | None) -> tuple[Kind, datetime] | None:
    """``(kind, as_of)`` of a key ``context_key`` wrote; None for any other bytes (anyone who can write
    to the topic can send any key: none may raise)."""
    if not key or len(key) > MAX_KEY_BYTES:
        return None
    try:
        kind, sep, when = key.decode("ascii").partition("|")
        as_of = datetime.fromisoformat(when)
    except ValueError:  # UnicodeDecodeError included
        return None
    if not sep or as_of.utcoffset() != timedelta(0):  # naive or another zone: not ours
        return None
    if kind == "context":
        return "context", as_of
    if kind == "models":
        return "models", as_of
    return None


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
    """The cluster stage's relays: each context's bytes to the contexts topic (``flush`` before a
    checkpoint raises ``SinkError`` when one was not delivered)."""

    def __init__(self, s: StreamSettings) -> None:
        from kafka import KafkaProducer

        self.topic = s.contexts_topic
        self.producer = KafkaProducer(
            **s.kafka_common(), acks="all", linger_ms=5, max_request_size=MAX_RECORD_BYTES
        )
        self._futures: list[Any] = []
        self.sent = 0

    def relay(self, kind: Kind) -> Callable[[PopulationContext], PopulationContext]:
        def send(ctx: PopulationContext) -> PopulationContext:
            data = ctx.to_bytes()
            self._futures.append(self.producer.send(self.topic, key=context_key(kind, ctx.as_of), value=data))
            self.sent += 1
            return ctx

        return send

    def flush(self, timeout_s: float) -> None:
        futures, self._futures = self._futures, []
        try:
            self.producer.flush(timeout=timeout_s)
        except Exception as exc:  # not acknowledged in time: as a failed sink (no checkpoint, exit 3)
            raise SinkError(f"population contexts not acknowledged by {self.topic!r}") from exc
        failed = [f for f in futures if not f.succeeded()]
        if failed:
            raise SinkError(f"{len(failed)} population contexts not delivered to {self.topic!r}")

    def close(self) -> None:
        self.producer.close(timeout=5)


class ContextReader:
    """The account stage's reader of the contexts topic (every partition, from the beginning, no group),
    asked by ``Waiting`` on the processing thread only. It keeps the contexts from the oldest tick still
    asked for; a tick older than that (an engine restored from an older checkpoint) reads the topic again
    from its beginning."""

    def __init__(self, s: StreamSettings, wait: Histogram, timeouts: PCounter, rejects: PCounter) -> None:
        self.s = s
        self.wait_s = s.context_wait_s
        #: per (kind, as_of), the distinct copies read (value, partition, offset), oldest first
        self.book: dict[tuple[str, datetime], list[tuple[bytes, int, int]]] = {}
        self.floor: datetime | None = None  #: the oldest as_of kept (None: nothing read yet)
        self.last: dict[str, datetime] = {}
        self.consumer: Any = None
        self.metric_wait, self.metric_timeouts, self.metric_rejects = wait, timeouts, rejects
        #: where a set-aside record goes (the daemon's dead letters, once its outputs are up)
        self.dead: Callable[[DeadLetter], None] | None = None
        self._rejected: set[tuple[int, int]] = set()  # (partition, offset): each set aside once

    def _open(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        if self.consumer is None:
            self.consumer = KafkaConsumer(
                **self.s.kafka_common(), enable_auto_commit=False, fetch_max_bytes=MAX_RECORD_BYTES
            )
        parts = self.consumer.partitions_for_topic(self.s.contexts_topic) or {0}
        tps = [TopicPartition(self.s.contexts_topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)

    def get(self, kind: Kind, as_of: datetime) -> PopulationContext:
        """The context ``kind`` published as of ``as_of``, waiting for it (``ContextTimeout``)."""
        if self.floor is None or as_of < self.floor:
            self.floor, self.book = as_of, {}
            self._open()
        t0 = time.monotonic()
        logged = False
        while (ctx := self._decoded(kind, as_of)) is None:
            waited = time.monotonic() - t0
            if waited >= self.wait_s:
                self.metric_timeouts.inc()
                raise ContextTimeout(
                    f"no population context ({kind}) as of {as_of.isoformat()} on "
                    f"{self.s.contexts_topic!r} after {self.wait_s:g}s: is the cluster stage running?"
                )
            if waited >= LOG_WAIT_S and not logged:
                logged = True
                log.info("waiting for the cluster stage", extra={"as_of": as_of.isoformat(), "kind": kind})
            for recs in self.consumer.poll(timeout_ms=200).values():
                for r in recs:
                    self._take(r)
        self.metric_wait.observe(time.monotonic() - t0)
        self.last[kind] = as_of
        if len(self.last) == 2:  # both kinds asked up to here: older ticks are not asked again
            low = min(self.last.values())
            self.book = {k: v for k, v in self.book.items() if k[1] >= low}
            self.floor = max(self.floor, low)
        return ctx

    def _take(self, r: Any) -> None:
        """Keep one record of the topic: a copy of a context still asked for (a copy already kept, as a
        restarted cluster stage sends, once); a key ``context_key`` did not write is set aside."""
        got = parse_key(r.key)
        if got is None:
            self._reject("context_key", r.partition, r.offset, r.key, r.value, "key is not kind|as_of")
            return
        assert self.floor is not None
        if got[1] < self.floor:
            return
        copies = self.book.setdefault(got, [])
        value = r.value if isinstance(r.value, bytes) else b""  # a tombstone: no context, set aside when read
        if all(v != value for v, _, _ in copies):
            copies.append((value, r.partition, r.offset))

    def _decoded(self, kind: Kind, as_of: datetime) -> PopulationContext | None:
        """The newest copy of the context that reads back as of its key's tick; a copy that does not is
        set aside (so a damaged copy, before or after the good one, never hides it)."""
        copies = self.book.get((kind, as_of), [])
        while copies:
            value, part, off = copies[-1]
            try:
                ctx = PopulationContext.from_bytes(value)
                if ctx.as_of != as_of:
                    raise ValueError("population context: as_of differs from its key's")
            except ValueError as exc:
                copies.pop()
                self._reject("context_value", part, off, None, value, type(exc).__name__)
                continue
            del copies[:-1]
            return ctx
        return None

    def _reject(
        self, reason: str, part: int, off: int, key: bytes | None, value: bytes | None, why: str
    ) -> None:
        """A record set aside: counted, one log line, a dead letter (its size and hash, never its key
        or bytes: a writer's key or value can carry any text)."""
        if (part, off) in self._rejected:  # the topic read again (an older tick asked): once is enough
            return
        self._rejected.add((part, off))
        self.metric_rejects.labels(reason=reason).inc()
        data = value or b""
        position = f"{self.s.contexts_topic}/{part}@{off}"
        log.warning(
            "a record on the contexts topic set aside",
            extra={"reason": reason, "detail": why, "position": position, "bytes": len(data)},
        )
        if self.dead is not None:
            raw = orjson.dumps(
                {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "key_bytes": len(key or b"")}
            )
            detail = f"not a population context of the cluster stage ({why})"
            self.dead(
                DeadLetter(
                    Reject(reason, None, detail, position, raw), None, (self.s.contexts_topic, part, off)
                )
            )

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close(autocommit=False)


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
        self.name = s.stage
        self.publisher: ContextPublisher | None = None
        self.reader: ContextReader | None = None
        if s.stage == "cluster":
            self.publisher = ContextPublisher(s)
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
            self.reader = ContextReader(s, wait, timeouts, rejects)

    def factory(self, factory: EngineFactory) -> EngineFactory:
        if self.name == "all":
            return factory
        return staged_factory(factory, self.name)

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

    def attach(self, dead: Callable[[DeadLetter], None]) -> None:
        """Where the account stage's set-aside contexts records go (the daemon's dead letters)."""
        if self.reader is not None:
            self.reader.dead = dead

    def before_checkpoint(self, timeout_s: float) -> None:
        if self.publisher is not None:
            self.publisher.flush(timeout_s)

    def close(self) -> None:
        for part in (self.publisher, self.reader):
            if part is not None:
                part.close()
