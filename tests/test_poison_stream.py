"""Issue 14 (1), against the real embedded broker: a poison record is dead-lettered, never a crash loop.

On 62cef57 a value beginning with ``x\\x9c`` (zlib magic) or gzip magic made polars raise ``OSError``
while decoding the poll; the daemon exited on every restart and never dead-lettered the record.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import kafka_broker as kb
import pytest
from prometheus_client import CollectorRegistry

from detector.app import build_engine
from detector.engine import Engine, Observers
from detector.lab.simulate import simulate
from detector.runtime.metrics import Metrics
from detector.runtime.stream.daemon import Daemon

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[1]
SECRET = b"POISON-PROMPT-TEXT-91d2"


@pytest.mark.parametrize("workers", [0, 1])
def test_poison_records_are_dead_lettered_and_the_daemon_keeps_running(
    broker: kb.EmbeddedBroker, tmp_path: Path, workers: int
) -> None:
    simulate(tmp_path / "sim", days=0.05, seed=4, scale=0.2)
    events = kb.read_events(tmp_path / "sim" / "events.jsonl")[:300]
    kb.make_topics(broker.bootstrap, partitions=1)
    poison: list[tuple[bytes | None, bytes | None]] = [
        (b"acct_p", b"x\x9c" + b'{"prompt": {"text": "' + SECRET + b'"}}'),
        (b"acct_p", b"\x1f\x8b\x08\x00" + SECRET),
        (b"acct_p", b"\x28\xb5\x2f\xfd" + SECRET),
    ]
    good: list[tuple[bytes | None, bytes | None]] = [(k, v) for k, v, _ in events]
    # a poison record first in a poll too (compression is sniffed at the start of the buffer)
    kb.produce_raw(broker.bootstrap, poison[:1] + good[:150] + poison[1:] + good[150:])
    settings = kb.stream_settings(
        broker.bootstrap, tmp_path / "state", max_poll_records=50, decode_workers=workers
    )

    def engine(*, observers: Observers | None = None) -> Engine:
        return build_engine(rules_dir=REPO / "rules", observers=observers)

    daemon = Daemon(settings, engine, Metrics(CollectorRegistry()))
    t = kb.DaemonThread(daemon).start()
    try:
        deadline = time.monotonic() + 90
        while daemon.summary.records < len(good) + len(poison) and time.monotonic() < deadline:
            assert t.thread.is_alive(), t.error
            time.sleep(0.2)
        time.sleep(1.5)  # a commit interval: the daemon is still running after the poison
        assert t.thread.is_alive() and t.error is None
    finally:
        t.stop()
    assert daemon.summary.records == len(good) + len(poison)
    assert daemon.summary.rejects == len(poison)
    assert daemon.summary.records - daemon.summary.rejects == len(good)  # every good event decoded
    dlq = kb.read_topic(broker.bootstrap, kb.DLQ)
    assert len(dlq) == len(poison)
    assert all(dict(r.headers)["reason"] == b"not_json" for r in dlq)
    for r in dlq:
        assert SECRET not in (r.value or b"") and all(SECRET not in v for _, v in r.headers)
    reg: Any = daemon.metrics.registry
    assert reg.get_sample_value("detector_events_rejected_total", {"reason": "not_json"}) == len(poison)
