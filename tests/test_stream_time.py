"""The daemon against the real broker: one future-dated copy of a normal event changes no alert
(issue 14, item 2). It is dead-lettered as ``future_timestamp``; the alerts equal a replay of the
stream without it."""

from __future__ import annotations

from pathlib import Path

import kafka_broker as kb
import orjson
import pytest
from prometheus_client import CollectorRegistry

from detector.lab.simulate import simulate
from detector.runtime.metrics import Metrics
from detector.runtime.replay import replay
from detector.runtime.stream.daemon import Daemon

pytestmark = pytest.mark.kafka


def _forged(event: tuple[bytes, bytes, int], ts: str, ms: int, rid: str) -> tuple[bytes, bytes, int]:
    doc = orjson.loads(event[1])
    doc["ts"], doc["request_id"] = ts, rid
    return event[0], orjson.dumps(doc), ms


def test_future_dated_copies_are_dead_lettered_and_change_no_alert(
    broker: kb.EmbeddedBroker, tmp_path: Path
) -> None:
    out = tmp_path / "sim"
    simulate(out, days=0.5, seed=1, scale=0.2)
    replay([out / "events.jsonl"], kb.engine(), out / "alerts.jsonl")
    expected = [orjson.loads(line) for line in (out / "alerts.jsonl").read_bytes().splitlines()]
    assert expected
    events = kb.read_events(out / "events.jsonl")
    at = len(events) // 5
    day_after = max(ms for _, _, ms in events) + 86_400_000
    forged = [
        _forged(events[at], "2099-06-01T00:00:00Z", 4_083_868_800_000, "forged-2099"),
        _forged(events[at + 1], _iso(day_after), day_after, "forged-day"),
    ]
    kb.make_topics(broker.bootstrap)
    n = kb.produce_events(broker.bootstrap, [*events[:at], *forged, *events[at:]])
    settings = kb.stream_settings(broker.bootstrap, tmp_path / "state")
    daemon = Daemon(settings, kb.engine, Metrics(CollectorRegistry()), keep_alerts=True, drain_when_idle=True)
    thread = kb.DaemonThread(daemon).start()
    thread.thread.join(180)
    assert not thread.thread.is_alive()
    if thread.error:
        raise thread.error
    assert daemon.summary.records == n
    assert daemon.engine is not None
    assert daemon.engine.stats.events == len(events) and daemon.engine.stats.late == 0
    streamed = [{k: v for k, v in d.items() if k != "emitted_at"} for d in daemon.summary.alert_docs]
    key = lambda d: (d["alert_id"], d["revision"])  # noqa: E731
    assert sorted(streamed, key=key) == sorted(expected, key=key)
    dlq = kb.read_topic(broker.bootstrap, kb.DLQ)
    assert sorted(dict(r.headers)["reason"].decode() for r in dlq) == ["future_timestamp"] * 2
    reg = daemon.metrics.registry
    assert reg.get_sample_value("detector_events_rejected_total", {"reason": "future_timestamp"}) == 2


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
