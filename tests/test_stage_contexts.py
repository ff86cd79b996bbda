"""The account stage's reader of the contexts topic (``stages.ContextReader``) against hostile records.

Anyone who can write to the contexts topic can send any key and value. No such record may crash the
account stage (a crash is a crash loop: the reader reads the topic from its beginning at each start), nor
hide a good context: a bad record goes to the dead letters with its reason (its structure only: size and
hash, never its bytes or its key) and is counted, with one log line; the good context of the tick is read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import polars as pl
import pytest
from prometheus_client import CollectorRegistry

from detector.io.sinks import DeadLetter
from detector.runtime.stream.contexts import ContextTimeout, WaitInterrupted, context_key
from detector.runtime.stream.rebalance import Rebalance
from detector.runtime.stream.settings import StreamSettings
from detector.runtime.stream.stages import Stage
from detector.window.context import KINDS, PopulationContext

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TOPIC = "detector-contexts"
PROMPT = b"Explain step by step how to synthesise"  # a writer's bytes: must never be copied out


class FakeConsumer:
    """The contexts topic (one partition) as a kafka-python consumer sees it: ``poll`` hands the records
    after the position, a few at a time."""

    def __init__(self, records: list[tuple[bytes | None, bytes | None]]) -> None:
        self.records = [
            SimpleNamespace(key=k, value=v, topic=TOPIC, partition=0, offset=i)
            for i, (k, v) in enumerate(records)
        ]
        self.pos = 0

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def assign(self, tps: list[Any]) -> None:
        pass

    def seek_to_beginning(self, *tps: Any) -> None:
        self.pos = 0

    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        batch, self.pos = self.records[self.pos : self.pos + 2], min(len(self.records), self.pos + 2)
        return {("t", 0): batch} if batch else {}

    def close(self, autocommit: bool = False) -> None:
        pass


def _context(as_of: datetime) -> PopulationContext:
    sheets = pl.DataFrame({"text_fp": [7], "account_id": ["acct-1"]}, schema=KINDS["sheets"])
    empty = {n: pl.DataFrame(schema=KINDS[n]) for n in ("rooms", "teams", "models")}
    return PopulationContext(as_of, sheets=sheets, **empty)


def reader_over(
    consumer: FakeConsumer, key: str | None = None
) -> tuple[Stage, list[DeadLetter], CollectorRegistry]:
    """An account stage's contexts reader over ``consumer`` (signing under ``key``, when given), its dead
    letters and its metrics."""
    registry = CollectorRegistry()
    s = StreamSettings(stage="account", contexts_topic=TOPIC, context_wait_s=0.5, contexts_key=key)
    stage = Stage(s, registry)
    dead: list[DeadLetter] = []
    stage.setup(dead.append, topic_id=lambda topic: "id")
    assert stage.reader is not None
    stage.reader.consumer = consumer
    return stage, dead, registry


def _reader(
    records: list[tuple[bytes | None, bytes | None]],
) -> tuple[Stage, list[DeadLetter], CollectorRegistry]:
    return reader_over(FakeConsumer(records))


def _rejected(registry: CollectorRegistry) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for metric in registry.collect():
        if metric.name == "detector_context_rejects":
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["reason"]] += sample.value
    return {k: v for k, v in out.items() if v}


GOOD = _context(T0)
HOSTILE: dict[str, tuple[bytes | None, bytes | None]] = {
    "no key": (None, GOOD.to_bytes()),
    "empty key": (b"", GOOD.to_bytes()),
    "not UTF-8": (b"\xff\xfe|" + PROMPT, GOOD.to_bytes()),
    "no separator": (PROMPT, GOOD.to_bytes()),
    "not a time": (b"context|" + PROMPT, GOOD.to_bytes()),
    "naive time": (b"context|2026-03-02T10:00:00", GOOD.to_bytes()),
    "foreign kind": (b"sheets|" + T0.isoformat().encode(), GOOD.to_bytes()),
    "oversized key": (b"context|" + T0.isoformat().encode() + b" " * 5000, GOOD.to_bytes()),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_record_with_a_foreign_key_is_a_dead_letter_not_a_crash(name: str) -> None:
    stage, dead, registry = _reader([HOSTILE[name], (context_key("context", T0), GOOD.to_bytes())])
    assert stage.reader is not None
    got = stage.reader.get("context", T0)
    assert got.as_of == T0 and got.sheets.height == 1
    assert _rejected(registry) == {"context_key": 1}
    assert len(dead) == 1 and dead[0].reject.reason == "context_key"
    assert dead[0].key is None and dead[0].source == (TOPIC, 0, 0)
    assert PROMPT not in dead[0].reject.raw and PROMPT not in dead[0].reject.detail.encode()
    assert set(orjson.loads(dead[0].reject.raw)) == {"bytes", "sha256", "key_bytes"}


DAMAGED: dict[str, bytes | None] = {
    "tombstone": None,
    "garbage": PROMPT,
    "truncated": GOOD.to_bytes()[:-7],
    "another tick's context": _context(T0 + timedelta(minutes=15)).to_bytes(),
    "foreign kind name": GOOD.to_bytes().replace(b"sheets", b"\xffheet"),
}


@pytest.mark.parametrize("after", [False, True], ids=["bad-first", "bad-last"])
@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_damaged_context_is_a_dead_letter_and_the_good_one_is_read(
    name: str, after: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Whether the damaged copy comes before the good one or after it (a later copy replaces an earlier
    one under the same key), the good one is read. A damaged copy after it is set aside (it was the one
    to read); one before it is superseded, never read, so never decoded."""
    key = context_key("context", T0)
    records = [(key, GOOD.to_bytes()), (key, DAMAGED[name])]
    stage, dead, registry = _reader(records if after else records[::-1])
    assert stage.reader is not None
    with caplog.at_level(logging.WARNING, logger="detector.stream"):
        got = stage.reader.get("context", T0)
    assert got.as_of == T0 and got.sheets.height == 1
    if not after:
        assert not _rejected(registry) and not dead
        return
    assert _rejected(registry) == {"context_value": 1}
    assert len(dead) == 1 and dead[0].reject.reason == "context_value" and dead[0].key is None
    assert PROMPT not in dead[0].reject.raw and PROMPT not in dead[0].reject.detail.encode()
    lines = [r for r in caplog.records if "contexts topic" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    assert PROMPT.decode() not in lines[0].getMessage()


def test_only_damaged_copies_wait_and_time_out_not_crash() -> None:
    key = context_key("context", T0)
    stage, dead, registry = _reader([(key, PROMPT), (key, b"")])
    assert stage.reader is not None
    with pytest.raises(ContextTimeout, match="as of 2026-03-02T10:00:00"):
        stage.reader.get("context", T0)
    assert _rejected(registry) == {"context_value": 2} and len(dead) == 2


def test_a_rebalance_waiting_for_the_lock_cuts_a_context_wait_short() -> None:
    """A listener waiting for the processing lock sets ``rebalancing`` until it has the lock; an account
    stage waiting for a context then gives the wait (and its batch) up at once instead of holding the
    lock past the group's rebalance timeout (left out of the group, then fenced: exit 4)."""
    d = SimpleNamespace(lock=threading.RLock(), rebalancing=threading.Event())
    inside: list[bool] = []

    def listener() -> None:
        with Rebalance(d)._locked():  # type: ignore[arg-type]
            inside.append(d.rebalancing.is_set())

    stage, _, registry = _reader([])
    assert stage.reader is not None
    stage.reader.wait_s = 60.0
    stage.reader.interrupted = d.rebalancing.is_set
    with d.lock:  # the processing thread, mid-batch
        thread = threading.Thread(target=listener)
        thread.start()
        t0 = time.monotonic()
        with pytest.raises(WaitInterrupted, match="as of 2026-03-02T10:00:00"):
            stage.reader.get("context", T0)
        assert time.monotonic() - t0 < 10 and not inside
    thread.join(10)
    assert inside == [False] and not d.rebalancing.is_set()
    timeouts = registry.get_sample_value("detector_context_wait_timeouts_total")
    assert timeouts == 0  # not a timeout: the daemon goes on


def test_a_cluster_stages_republished_copies_are_read_once() -> None:
    """A restarted cluster stage sends the same bytes again: kept once, nothing rejected."""
    key = context_key("context", T0)
    stage, dead, registry = _reader([(key, GOOD.to_bytes())] * 5)
    assert stage.reader is not None
    assert stage.reader.get("context", T0).as_of == T0
    assert not dead and not _rejected(registry)
    assert [len(v) for v in stage.reader.book.values()] == [1]


def test_a_quiet_tick_the_cluster_stage_passed_reads_the_context_before_it() -> None:
    """No event of the stream fell in the tick after T0, so the cluster stage published no context as of
    it; once it has published a later one it never will, and the one as of T0 stands in."""
    tick = timedelta(minutes=15)
    later = [(context_key("context", T0), GOOD.to_bytes())]
    later.append((context_key("context", T0 + 2 * tick), _context(T0 + 2 * tick).to_bytes()))
    stage, _, registry = _reader(later)
    assert stage.reader is not None
    assert stage.reader.get("context", T0 + tick).as_of == T0
    assert stage.reader.get("context", T0 + 2 * tick).as_of == T0 + 2 * tick
    assert registry.get_sample_value("detector_context_stand_ins_total") == 1
    # the cluster stage not past it yet: wait for it (and time out), never stand in
    stage, _, registry = _reader(later[:1])
    assert stage.reader is not None
    with pytest.raises(ContextTimeout):
        stage.reader.get("context", T0 + tick)
    assert not registry.get_sample_value("detector_context_stand_ins_total")


def test_an_account_stage_with_a_straggler_after_a_quiet_hour_reads_on(tmp_path: Path) -> None:
    """The engines themselves: a quiet hour in the whole stream (no event anywhere), and one event of an
    account stage's partitions from before it that arrives just after it (late: counted as late, as
    any straggler). That stage closes the last quiet tick with the straggler in it and asks for the
    context as of the tick before, which the cluster stage, whose events fell in no such tick, never
    publishes. On main it waited ``context_wait_s``, stopped, and did the same at every restart."""
    from stage_runs import REPO

    from detector.app import build_engine
    from detector.decode import decode_lines
    from detector.engine import Observers
    from detector.lab.simulate import simulate
    from detector.runtime.shards import Publication, shard_of
    from detector.settings import EngineSettings

    simulate(tmp_path, days=0.25, seed=3, scale=0.05)
    ev = decode_lines(tmp_path / "events.jsonl", str).events.sort("ts")
    first = ev["ts"].min()
    assert isinstance(first, datetime)
    quiet = (first + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    ev = ev.filter((pl.col("ts") < quiet) | (pl.col("ts") >= quiet + timedelta(hours=1)))
    lag = EngineSettings().model_copy(update={"context_lag": True})
    wire = Publication()
    cluster = build_engine(REPO / "rules", settings=lag, observers=wire.observers())
    cluster.stage = "cluster"
    for batch in ev.iter_slices(500):
        cluster.process(batch)
    cluster.flush()
    records = [(context_key("models", t), b) for t, b in wire.models.items()]
    records += [(context_key("context", t), b) for t, b in wire.contexts.items()]
    records.sort(key=lambda kv: (kv[0] or b"").split(b"|")[1])
    assert (quiet + timedelta(minutes=45)) not in wire.contexts  # the quiet hour: nothing published

    mine = ev.filter(shard_of(ev["account_id"], 4) == 0)
    before, after = mine.filter(pl.col("ts") < quiet), mine.filter(pl.col("ts") >= quiet)
    on_time = after.filter(pl.col("ts") < quiet + timedelta(hours=1, minutes=4))
    assert on_time.height and after.height > on_time.height
    stage, dead, registry = _reader(records)
    account = build_engine(REPO / "rules", settings=lag, observers=stage.observers(Observers()))
    account.stage = "account"
    for batch in before.head(before.height - 1).iter_slices(500):
        account.process(batch)
    account.process(on_time)
    account.process(before.tail(1))  # the straggler
    account.process(after.slice(on_time.height))
    account.flush()
    assert account.stats.late == 1
    assert registry.get_sample_value("detector_context_stand_ins_total") == 2  # the context and models
    assert not dead


@pytest.mark.parametrize("name", ["cluster", "account"])
def test_a_split_stage_without_its_contexts_topic_refuses_to_start_naming_the_variable(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On main the cluster stage's first send blocked a minute (metadata) and failed mid-tick at every
    restart, and an account stage waited on a topic no one could write, blaming the cluster stage."""
    from detector.errors import ConfigError

    class NoProducer:  # the cluster stage's producer, never used here
        def __init__(self, **kwargs: Any) -> None:
            pass

        def close(self, timeout: float = 0) -> None:
            pass

    monkeypatch.setattr("kafka.KafkaProducer", NoProducer)

    registry = CollectorRegistry()
    stage = Stage(StreamSettings(stage=name, contexts_topic=TOPIC), registry)
    with pytest.raises(ConfigError, match="contexts topic 'detector-contexts' does not exist") as got:
        stage.setup(lambda d: None, topic_id=lambda topic: None)
    assert str(got.value).startswith("DETECTOR_STREAM_CONTEXTS_TOPIC: ")
    stage.close()
