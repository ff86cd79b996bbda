"""``kill -9`` at random moments: after five kills and restarts, the alerts topic holds exactly the
(alert_id, revision) set of an uninterrupted run and every produced event was counted exactly once."""

from __future__ import annotations

import random
from pathlib import Path

import kafka_broker as kb
import orjson
import pytest

from detector.app import build_engine
from detector.checkpoint import load_engine, pending_events
from detector.lab.simulate import simulate
from detector.runtime.replay import replay

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[1]
KILLS = 5


@pytest.mark.parametrize("source", kb.SOURCES)
def test_kill9_restarts_lose_nothing(tmp_path: Path, source: str) -> None:
    simulate(tmp_path / "sim", days=0.5, seed=3, scale=0.2)
    events = kb.read_events(tmp_path / "sim" / "events.jsonl")
    engine = build_engine(rules_dir=REPO / "rules")
    replay([tmp_path / "sim" / "events.jsonl"], engine, tmp_path / "ref.jsonl")
    reference = {
        (d["alert_id"], d["revision"])
        for d in (orjson.loads(x) for x in (tmp_path / "ref.jsonl").read_bytes().splitlines())
    }
    rng = random.Random(7)
    with kb.EmbeddedBroker() as broker:
        kb.make_topics(broker.bootstrap)
        n = kb.produce_events(broker.bootstrap, events)
        settings = kb.stream_settings(
            broker.bootstrap, tmp_path / "state", max_poll_records=100, commit_interval_s=0.3, source=source
        )
        killed_mid_stream = kb.kill_daemon_n_times(settings, KILLS, rng)
        kb.drain_daemon(settings)
        on_topic = kb.read_topic(broker.bootstrap, kb.ALERTS)
    assert killed_mid_stream >= 3, "the daemon finished before most kills; make it slower"
    assert kb.alert_keys(on_topic) == reference
    engine = build_engine(rules_dir=REPO / "rules")
    extra = load_engine(engine, tmp_path / "state")
    assert extra is not None
    assert engine.stats.events == n  # consumed-event count equals the produced count
    assert pending_events(engine) is None
