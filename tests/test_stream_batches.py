"""The daemon's batches without a broker: polls decoded in a worker process or inline give the same
events and rejects, and queued polls of one epoch coalesce in order."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from prometheus_client import CollectorRegistry

from detector.app import build_engine
from detector.decode import decode_lines
from detector.enrich import enrich
from detector.runtime.merge import OFF, PART
from detector.runtime.metrics import Metrics
from detector.runtime.stream.consumer import Batch as _Batch
from detector.runtime.stream.daemon import Daemon
from detector.runtime.stream.decoding import Decoder, Poll, decode_poll
from detector.runtime.stream.kafkapython import records_of
from detector.runtime.stream.settings import StreamSettings
from detector.runtime.stream.source import Records

SCENARIO = Path(__file__).parent / "scenarios" / "campaign_multilingual_coercion" / "events.jsonl.gz"


class TP(NamedTuple):
    topic: str
    partition: int


class Rec(NamedTuple):
    """The parts of a kafka-python ``ConsumerRecord`` the daemon reads."""

    value: bytes | None
    key: bytes | None
    offset: int
    headers: list[tuple[str, bytes]]
    timestamp: int = -1


def _polled(values: list[bytes | None], partitions: int = 3) -> dict[Any, list[Rec]]:
    """Values spread round-robin over partitions, offsets counting from 100 per partition."""
    out: dict[Any, list[Rec]] = {}
    for i, v in enumerate(values):
        tp = TP("in", i % partitions)
        recs = out.setdefault(tp, [])
        recs.append(
            Rec(v, f"acct-{i % 7}".encode(), 100 + len(recs), [("produced_at", str(1000 + i).encode())])
        )
    return out


def _records(values: list[bytes | None], partitions: int = 3) -> Records:
    """The same poll as a ``KafkaSource`` hands it over (the kafka-python source's conversion)."""
    return records_of(_polled(values, partitions))


@pytest.fixture(scope="module")
def values(contracts_dir: Path) -> list[bytes | None]:
    """Real events (prompt text in several languages) with every bad contract example, a null value and
    a blank one mixed in."""
    lines: list[bytes | None] = list(gzip.decompress(SCENARIO.read_bytes()).splitlines()[:600])
    bad = sorted((contracts_dir / "examples" / "bad").iterdir())
    for i, path in enumerate(bad):
        lines.insert(7 + 31 * i, path.read_bytes().strip())
    lines[50:50] = [None, b"   "]
    return lines


def test_a_worker_process_decodes_a_poll_exactly_as_the_processing_thread_would(
    values: list[bytes | None],
) -> None:
    polled = _polled(values)
    records = records_of(polled)
    inline, pooled = Decoder("in", 0), Decoder("in", 1)
    try:
        a, b = inline.start(records), pooled.start(records)
        da, db = a.result(), b.result()
    finally:
        inline.close()
        pooled.close()
    assert (a.parts, a.offs, a.keys, a.spans) == (b.parts, b.offs, b.keys, b.spans)
    assert a.spans == {0: (100, 100 + len(polled[TP("in", 0)]) - 1), **{p: a.spans[p] for p in (1, 2)}}
    assert a.produced_at == b.produced_at == 1000 + len(values) - 1
    assert_frame_equal(da.events, db.events)
    assert da.records == db.records
    assert [(r.reason, r.position, r.index, r.raw) for r in da.rejects] == [
        (r.reason, r.position, r.index, r.raw) for r in db.rejects
    ]
    # the prompt text is gone and the features are there; every value is an event or a reject
    assert "prompt_text" not in da.events.columns and "cot_elicit" in da.events.columns
    assert da.events.height + len(da.rejects) == len(values)
    assert {r.reason for r in da.rejects} >= {"not_json", "missing_field"}
    # each event keeps the partition and offset of its record
    pos = {(p, o) for p, o in zip(a.parts, a.offs, strict=True)}
    assert set(zip(da.events[PART].to_list(), da.events[OFF].to_list(), strict=True)) <= pos


def test_the_engine_keeps_prompt_features_computed_ahead_and_enriches_the_rest(
    values: list[bytes | None],
) -> None:
    good = [v for v in values[:200] if v and v.strip().startswith(b"{")]
    parts, offs = [0] * len(good), list(range(len(good)))
    ahead = decode_poll("in", list(good), parts, offs).events.drop(PART, OFF)
    raw = decode_lines(good, position_of=str).events.drop("_pos")
    assert "prompt_text" in raw.columns
    whole = enrich(raw, None)
    assert_frame_equal(enrich(ahead, None).select(whole.columns), whole)


def test_queued_polls_of_one_epoch_coalesce_in_order(tmp_path: Path) -> None:
    d = Daemon(
        StreamSettings(bootstrap_servers="localhost:1", state_dir=tmp_path, decode_workers=0),
        build_engine,
        Metrics(CollectorRegistry()),
    )
    dec = Decoder("in", 0)
    c = d.consumer

    def poll(n: int) -> list[Any]:
        return [dec.start(_records([b"{}"] * n))]

    p1, p2, p3, p4, p5 = (poll(n) for n in (2, 3, 1, 1, 1))
    c.queue.put(_Batch(1, p2, {0: 5, 1: 11}))
    c.queue.put(_Batch(1, p3, {0: 5, 1: 13}))
    c.queue.put(_Batch(2, p4, {0: 6}))  # after a rebalance: not merged across epochs
    c.queue.put(_Batch(2, p5, {0: 7}))
    first = c.coalesce(_Batch(1, p1, {0: 3}))
    assert first.epoch == 1
    assert first.polls == p1 + p2 + p3 and first.records == 6
    assert first.highwater == {0: 5, 1: 13}  # the newest poll's
    held = c.held
    assert held is not None and held.epoch == 2  # kept for the next turn, not lost
    c.held = None
    second = c.coalesce(held)
    assert second.polls == p4 + p5 and c.queue.empty()
    idle = _Batch(2, [], {0: 7})
    assert c.coalesce(idle) is idle  # an idle marker (no records) is handled alone

    # a poll a worker is still decoding is not waited for: the engine starts on what is decoded
    pending = Poll([0], [200], [None], {0: (200, 200)}, 0, Future())
    assert not pending.ready and all(p.ready for p in p1)
    c.queue.put(_Batch(3, [pending], {0: 201}))
    third = c.coalesce(_Batch(3, p1, {0: 3}))
    assert third.polls == p1 and c.held is not None and c.held.polls == [pending]


def test_a_failed_decode_fails_the_batch_where_the_result_is_taken() -> None:
    dec = Decoder("in", 0)
    poll = dec.start(records_of({TP("in", 0): [Rec(b"{}", None, 0, [])]}))
    poll.parts.clear()  # positions no longer line up with values: decoding raises on the reject
    with pytest.raises(IndexError):
        poll.result()
    with pytest.raises(IndexError):
        poll.result()  # the failure stays (the batch is not half-decoded twice)


def test_a_poll_of_only_rejects_has_the_columns_of_any_other_poll(values: list[bytes | None]) -> None:
    good = [v for v in values[:40] if v and v.startswith(b'{"')]
    ok = decode_poll("in", good, [0] * len(good), list(range(len(good))))
    bad = decode_poll("in", [b"{not json", b"", b"[1]"], [1, 1, 1], [7, 8, 9])
    assert bad.events.height == 0 and len(bad.rejects) == 3 and ok.events.height > 0
    assert bad.events.schema == ok.events.schema  # so polls concatenate and filter on _part/_off
    assert pl.concat([bad.events, ok.events]).height == ok.events.height


def _worker_pids(decoder: Decoder) -> list[int]:
    pool = decoder._pool
    assert pool is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = list(getattr(pool, "_processes", {}) or {})
        if pids and all(Path(f"/proc/{p}").exists() for p in pids):
            return pids
        time.sleep(0.05)
    raise AssertionError("no decoding worker started")


def test_stop_signals_sent_to_the_process_group_leave_the_worker_decoding(
    values: list[bytes | None],
) -> None:
    """Ctrl-C, SIGTERM and SIGHUP (the daemon's rule reload) reach every process of the group; the
    daemon handles them, and a worker that died of one would fail the batch being finished."""
    dec = Decoder("in", 1)
    try:
        (pid,) = _worker_pids(dec)
        dec.start(_records([values[0]])).result()  # started and initialised
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            os.kill(pid, sig)
        time.sleep(0.5)
        assert dec.start(_records(values[:50])).result().events.height > 0
        assert _worker_pids(dec) == [pid]
    finally:
        dec.close()


def test_a_worker_exits_when_the_daemon_is_killed(tmp_path: Path) -> None:
    """kill -9 (or the out-of-memory killer) leaves no decoding worker behind."""
    script = tmp_path / "daemon.py"
    script.write_text(
        "import time\n"
        "from detector.runtime.stream.decoding import Decoder\n"
        "from detector.runtime.stream.source import Records\n"
        "if __name__ == '__main__':\n"
        "    d = Decoder('in', 1)\n"
        "    d.start(Records()).result()\n"
        "    while not getattr(d._pool, '_processes', None):\n"
        "        time.sleep(0.05)\n"
        "    time.sleep(1.0)\n"
        "    print(*d._pool._processes, flush=True)\n"
        "    time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    (worker,) = (int(p) for p in parent.stdout.readline().split())
    assert Path(f"/proc/{worker}").exists()
    parent.kill()
    parent.wait()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{worker}").exists():
            time.sleep(0.1)
        assert not Path(f"/proc/{worker}").exists(), "the decoding worker outlived its daemon"
    finally:
        if Path(f"/proc/{worker}").exists():
            os.kill(worker, signal.SIGKILL)
