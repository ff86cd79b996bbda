"""The daemon's batch coalescing (no broker needed): queued polls of one epoch become one batch."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from prometheus_client import CollectorRegistry

from detector.cli import build_engine
from detector.metrics import Metrics
from detector.stream.daemon import Daemon, _Batch
from detector.stream.settings import StreamSettings


class TP(NamedTuple):
    topic: str
    partition: int


def test_queued_batches_of_one_epoch_coalesce_in_offset_order(tmp_path: Path) -> None:
    d = Daemon(
        StreamSettings(bootstrap_servers="localhost:1", state_dir=tmp_path),
        build_engine,
        Metrics(CollectorRegistry()),
    )
    p0, p1 = TP("in", 0), TP("in", 1)
    d._batches.put(_Batch(1, {p0: [3, 4], p1: [10]}, {0: 5, 1: 11}))
    d._batches.put(_Batch(1, {p1: [11, 12]}, {0: 5, 1: 13}))
    d._batches.put(_Batch(2, {p0: [5]}, {0: 6}))  # after a rebalance: not merged across epochs
    d._batches.put(_Batch(2, {p0: [6]}, {0: 7}))
    first = d._coalesce(_Batch(1, {p0: [1, 2]}, {0: 3}))
    assert first.epoch == 1
    assert first.records == {p0: [1, 2, 3, 4], p1: [10, 11, 12]}
    assert first.highwater == {0: 5, 1: 13}  # the newest poll's
    held = d._held
    assert held is not None and held.epoch == 2  # kept for the next turn, not lost
    d._held = None
    second = d._coalesce(held)
    assert second.records == {p0: [5, 6]} and d._batches.empty()
    idle = _Batch(2, {}, {0: 7})
    assert d._coalesce(idle) is idle  # an idle marker (no records) is handled alone
