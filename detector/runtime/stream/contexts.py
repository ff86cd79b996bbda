"""The account stage's reader of the contexts topic (``DETECTOR_STAGE=account``; docs/runtime.md, "Stages").

The topic's keys and values are read as hostile input: anyone who can write to it can send any bytes. A
record whose key ``context_key`` did not write, or whose value does not read back as the context of its
key's tick, is set aside (counted by reason, one warning line, a dead letter of its size and hashes,
never its key or bytes) and never hides a good copy of the same tick. A tick the cluster stage passed
without publishing (no event of the stream fell in it, while a straggler of the account stage's own
partitions did) reads the context before it rather than waiting at every restart.

What it holds is bounded whatever a writer sends: with ``DETECTOR_STREAM_CONTEXTS_KEY`` only records the
cluster stage signed are kept (``contextsign``); a key off the tick grid is set aside; at most
``ahead_keys`` keys beyond the newest tick asked are held, the farthest set aside past that (well above
one poll batch of ``READ_BATCH`` records, and the cluster stage's own contexts read ahead are the nearest,
so they are never dropped, however long a quiet stretch before them); a key holds at most ``copies`` distinct
copies (past that, the copies are read and only the newest that reads back is kept); a value over
``MAX_RECORD_BYTES`` is set aside, and one whose kinds would decode to more than ``decoded_limit`` of its
size (a compressed bomb) is set aside before the batch past it is decompressed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import orjson

from detector.errors import DetectorError
from detector.io.sinks import DeadLetter
from detector.runtime.stream.contextsign import VARIABLE, ContextKey, is_signed
from detector.settings import WindowSettings
from detector.validate import Reject
from detector.window.context import MAX_WIRE_BYTES, PopulationContext
from detector.window.framing import OverBudget

if TYPE_CHECKING:
    from prometheus_client import Counter as PCounter
    from prometheus_client import Histogram

    from detector.runtime.stream.settings import StreamSettings

log = logging.getLogger("detector.stream")

Kind = Literal["context", "models"]
#: A wait longer than this is logged (with the tick); every wait is in the histogram.
LOG_WAIT_S = 1.0
#: Largest context record sent (the population's sheets of a busy tick).
MAX_RECORD_BYTES = MAX_WIRE_BYTES
#: Longest key read (``context_key`` writes about 40 bytes); a longer one is not parsed.
MAX_KEY_BYTES = 128
#: Records the reader's consumer hands out per poll: its read-ahead of the asked tick (in records).
READ_BATCH = 100
#: Keys beyond the newest tick asked that are held; past that the farthest is set aside (``context_ahead``).
#: A distance in ticks would drop the cluster stage's next context after a quiet stretch longer than it
#: (read in the batch of the tick before it, and never read again: a crash loop).
AHEAD_KEYS = 8 * READ_BATCH
#: Distinct copies kept per key (past that, the copies are read and the newest that reads back kept).
COPIES = 4
#: Why a contexts-topic record is set aside (a closed set: the label values of its counter).
REJECTS = (
    "context_key",
    "context_value",
    "context_signature",
    "context_grid",
    "context_ahead",
    "context_decoded",
)

Copy = tuple[bytes, int, int]  # value, partition, offset


class ContextTimeout(DetectorError, RuntimeError):
    """The cluster stage published no context for a tick within ``context_wait_s``: the account stage
    stops mid-batch without a checkpoint (exit 9), and a restart reads from its last checkpoint again."""

    exit_code = 9


class WaitInterrupted(DetectorError, RuntimeError):
    """A rebalance waits for the processing lock, or a stop was asked, while the account stage waits
    for a context: the wait is given up, and with it the batch (``Daemon._step`` drops the engine's
    state, as when partitions are lost), so the member rejoins within the group's rebalance timeout
    instead of being left out and fenced at its next checkpoint (exit 4, at every rebalance while the
    cluster stage lags), or stops at once. Always caught by the daemon; a ``DetectorError`` as every
    error class of the package is (exit 1 if one ever escaped)."""


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


class ContextReader:
    """The account stage's reader of the contexts topic (every partition, from the beginning, no group),
    asked by ``Waiting`` on the processing thread only. It keeps the contexts from the oldest tick still
    asked for; a tick older than that (an engine restored from an older checkpoint) reads the topic again
    from its beginning."""

    def __init__(
        self,
        s: StreamSettings,
        wait: Histogram,
        timeouts: PCounter,
        rejects: PCounter,
        stand_ins: PCounter,
        key: ContextKey | None = None,
    ) -> None:
        self.s = s
        self.wait_s = s.context_wait_s
        self.key = key  #: the deployment's contexts key: only records signed under it are read
        #: the engine's tick (the grid of the keys; ``Stage.factory`` sets the engines' own)
        self.tick: timedelta = WindowSettings.model_fields["tick"].default
        self.ahead_keys, self.copies = AHEAD_KEYS, COPIES  # copies: at least 2 (the newest good, one new)
        #: the decoded bytes a context may take (None: ``decoded_limit`` of its size; a test sets it)
        self.max_decoded: int | None = None
        self.newest: datetime | None = None  #: the newest as_of asked since the topic was last opened
        #: per (kind, as_of), the distinct copies read (value, partition, offset), oldest first
        self.book: dict[tuple[str, datetime], list[Copy]] = {}
        self.floor: datetime | None = None  #: the oldest as_of kept (None: nothing read yet)
        self.last: dict[str, datetime] = {}
        self.consumer: Any = None
        self.one_partition = True
        self.metric_wait, self.metric_timeouts, self.metric_rejects = wait, timeouts, rejects
        self.metric_stand_ins = stand_ins
        #: where a set-aside record goes (the daemon's dead letters, once its outputs are up)
        self.dead: Callable[[DeadLetter], None] | None = None
        #: per partition, the highest offset read, and as it stood when the topic was last opened: a
        #: record at or below it was read (and counted when set aside) before, so it is not counted again
        self.read_to: dict[int, int] = {}
        self.counted_to: dict[int, int] = {}
        #: records set aside for their signature, and read signed under the key: only the first and
        #: none of the second (a key on this stage only, or another) is named when a wait runs out
        self.bad_signatures = self.signed = 0
        self.warned_signed = False
        #: per kind, the newest as_of below ``floor`` and its copies (a quiet tick's stand-in: ``_passed``)
        self.before: dict[str, tuple[datetime, list[Copy]]] = {}
        #: true while a rebalance waits for the processing lock (the daemon's ``rebalancing``)
        self.interrupted: Callable[[], bool] = lambda: False

    def _open(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        if self.consumer is None:
            self.consumer = KafkaConsumer(
                **self.s.kafka_common(),
                enable_auto_commit=False,
                fetch_max_bytes=MAX_RECORD_BYTES,
                max_poll_records=READ_BATCH,
            )
        self.counted_to = dict(self.read_to)
        parts = self.consumer.partitions_for_topic(self.s.contexts_topic) or {0}
        self.one_partition = len(parts) == 1  # the order of the cluster stage's sends (``_passed``)
        tps = [TopicPartition(self.s.contexts_topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)

    def get(self, kind: Kind, as_of: datetime) -> PopulationContext:
        """The context ``kind`` published as of ``as_of``, waiting for it (``ContextTimeout``)."""
        if self.floor is None or as_of < self.floor:
            self.floor, self.book, self.before, self.newest = as_of, {}, {}, as_of
            self._open()
        self.newest = max(as_of, self.newest or as_of)
        t0 = time.monotonic()
        logged = False
        while (ctx := self._decoded(kind, as_of) or self._passed(kind, as_of)) is None:
            waited = time.monotonic() - t0
            if waited >= self.wait_s:
                self.metric_timeouts.inc()
                if self.bad_signatures and not self.signed:  # the cluster stage without it, or another
                    raise ContextTimeout(
                        f"no population context ({kind}) as of {as_of.isoformat()} signed under this "
                        f"stage's key after {self.wait_s:g}s ({self.bad_signatures} records set aside "
                        f"unsigned or badly signed, none signed under it): set the same {VARIABLE} on "
                        "both stages",
                        VARIABLE,
                    )
                raise ContextTimeout(
                    f"no population context ({kind}) as of {as_of.isoformat()} on "
                    f"{self.s.contexts_topic!r} after {self.wait_s:g}s: is the cluster stage running?",
                    "DETECTOR_STREAM_CONTEXT_WAIT_S",
                )
            if self.interrupted():
                when = as_of.isoformat()
                raise WaitInterrupted(f"a rebalance or a stop: the wait for {kind} as of {when} given up")
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
            for key in sorted(k for k in self.book if k[1] < low):  # oldest first: the newest stays
                self.before[key[0]] = (key[1], self.book.pop(key))
            self.floor = max(self.floor, low)
        return ctx

    def _take(self, r: Any) -> None:
        """Keep one record of the topic: a copy of a context still asked for (a copy already kept, as a
        restarted cluster stage sends, once). Set aside: a key ``context_key`` did not write, a record
        not signed under the stage's key (with one), a key off the tick grid or too far ahead."""
        part, off = r.partition, r.offset
        self.read_to[part] = max(off, self.read_to.get(part, -1))
        got = parse_key(r.key)
        if got is None:
            self._reject("context_key", part, off, r.key, r.value, "key is not kind|as_of")
            return
        value = r.value if isinstance(r.value, bytes) else b""  # a tombstone: no context, set aside when read
        headers = getattr(r, "headers", None)
        if self.key is not None and (why := self.key.check(r.key, value, headers)) is not None:
            self.bad_signatures += 1
            self._reject("context_signature", part, off, r.key, value, why)
            return
        if self.key is not None:
            self.signed += 1
        if self.key is None and not self.warned_signed and is_signed(headers):
            self.warned_signed = True  # the cluster stage signs: this stage reads them unverified
            log.error(f"the contexts are signed but this stage has no {VARIABLE}: read unverified")
        if len(value) > MAX_RECORD_BYTES:
            self._reject("context_value", part, off, r.key, value, "over the largest context")
            return
        if (got[1] - datetime(1970, 1, 1, tzinfo=got[1].tzinfo)) % self.tick:
            self._reject("context_grid", part, off, r.key, value, "as_of off the tick grid")
            return
        assert self.floor is not None and self.newest is not None
        if got[1] > self.newest and got not in self.book and not self._room_ahead(got[1]):
            self._reject("context_ahead", part, off, r.key, value, "as_of beyond the keys held ahead")
            return
        if got[1] < self.floor:  # not asked again; the newest is kept in case a tick after it was quiet
            old = self.before.get(got[0])
            if old is None or got[1] > old[0]:
                self.before[got[0]] = (got[1], [(value, part, off)])
            elif got[1] == old[0]:
                self._keep(old[1], got[1], (value, part, off))
            return
        self._keep(self.book.setdefault(got, []), got[1], (value, part, off))

    def _room_ahead(self, as_of: datetime) -> bool:
        """Whether a new key as of ``as_of`` (past the newest tick asked) may be held: under
        ``ahead_keys`` keys ahead, or nearer than the farthest of them, which is then set aside."""
        assert self.newest is not None
        ahead = [k for k in self.book if k[1] > self.newest]
        if len(ahead) < self.ahead_keys:
            return True
        if not ahead:  # none held ahead at all
            return False
        far = max(ahead, key=lambda k: k[1])
        if as_of >= far[1]:
            return False
        for value, part, off in self.book.pop(far):
            self._reject("context_ahead", part, off, None, value, "as_of beyond the keys held ahead")
        return True

    def _keep(self, copies: list[Copy], as_of: datetime, copy: Copy) -> None:
        """Add a distinct copy; past ``copies`` of them, only the newest that reads back stays."""
        if any(v == copy[0] for v, _, _ in copies):
            return
        if len(copies) >= self.copies:
            self._newest(copies, as_of)
        copies.append(copy)

    def held_bytes(self) -> int:
        """The bytes of the copies the reader holds (bounded: ``tests/test_stage_contexts_guard.py``)."""
        held = [c for cs in self.book.values() for c in cs] + [
            c for _, cs in self.before.values() for c in cs
        ]
        return sum(len(v) for v, _, _ in held)

    def _passed(self, kind: Kind, as_of: datetime) -> PopulationContext | None:
        """When the cluster stage has published a later tick of ``kind`` but none as of ``as_of``, it never
        will: no event of the whole stream fell in that tick for it (a quiet tick), while this stage
        closed it (a straggler of its own partitions, late here, landed in it). The newest context
        before ``as_of`` stands in: the cluster stage's population, unchanged by any event since
        (waiting would time out at every restart: a crash loop)."""
        if not self.one_partition:  # a later tick on another partition may be read before this one
            return None
        if not any(k == kind and t > as_of and self._decoded(k, t) for k, t in list(self.book)):
            return None
        for t in sorted((t for k, t in self.book if k == kind and t < as_of), reverse=True):
            if (ctx := self._decoded(kind, t)) is not None:
                break
        else:
            old = self.before.get(kind)
            if old is None:
                return None
            self.book[(kind, old[0])] = old[1]
            if (ctx := self._decoded(kind, old[0])) is None:
                return None
        self.metric_stand_ins.inc()
        log.info(
            "no context published for a quiet tick; the one before it stands in",
            extra={"as_of": as_of.isoformat(), "kind": kind, "stand_in": ctx.as_of.isoformat()},
        )
        return ctx

    def _decoded(self, kind: Kind, as_of: datetime) -> PopulationContext | None:
        """The newest copy of the context that reads back as of its key's tick; a copy that does not is
        set aside (so a damaged copy, before or after the good one, never hides it)."""
        return self._newest(self.book.get((kind, as_of), []), as_of)

    def _newest(self, copies: list[Copy], as_of: datetime) -> PopulationContext | None:
        """Keep only the newest of ``copies`` that reads back (the ones after it set aside) and read it."""
        while copies:
            value, part, off = copies[-1]
            try:
                ctx = PopulationContext.from_bytes(value, self.max_decoded)
                if ctx.as_of != as_of:
                    raise ValueError("population context: as_of differs from its key's")
            except OverBudget as exc:  # a compressed bomb: refused before the batch past it is decoded
                copies.pop()
                self._reject("context_decoded", part, off, None, value, f"decodes to over {exc.limit} bytes")
                continue
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
        if off <= self.counted_to.get(part, -1):  # the topic read again (an older tick asked): once
            return
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
