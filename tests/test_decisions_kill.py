"""Decisions on the real broker across ``kill -9``: after kills and restarts, the decisions topic holds
exactly the decision ids (applies and lifts) of an uninterrupted replay, every record keyed by its
account and valid per ``contracts/decision.schema.json``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import jsonschema
import kafka_broker as kb
import orjson
import pytest

from detector.app import build_engine
from detector.decide import DecisionBook, load_policy
from detector.lab.simulate import simulate
from detector.runtime.replay import replay

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[1]
DECISIONS = "detector-decisions"
KILLS = 3


def test_decision_ids_survive_kill9(tmp_path: Path) -> None:
    simulate(tmp_path / "sim", days=0.5, seed=3, scale=0.2)
    events = kb.read_events(tmp_path / "sim" / "events.jsonl")
    ref = tmp_path / "ref.jsonl"
    replay(
        [tmp_path / "sim" / "events.jsonl"],
        build_engine(rules_dir=REPO / "rules"),
        None,
        decider=DecisionBook(load_policy()),
        decisions_out=ref,
    )
    reference = {orjson.loads(x)["decision_id"] for x in ref.read_bytes().splitlines()}
    assert reference, "the simulated campaigns should get decisions"
    rng = random.Random(11)
    with kb.EmbeddedBroker() as broker:
        kb.make_topics(broker.bootstrap, extra={DECISIONS: 1})
        kb.produce_events(broker.bootstrap, events)
        settings = kb.stream_settings(
            broker.bootstrap,
            tmp_path / "state",
            max_poll_records=100,
            commit_interval_s=0.3,
            decisions_topic=DECISIONS,
        )
        killed = kb.kill_daemon_n_times(settings, KILLS, rng)
        kb.drain_daemon(settings)
        on_topic = kb.read_topic(broker.bootstrap, DECISIONS)
    assert killed >= 2, "the daemon finished before most kills; make it slower"
    docs = [orjson.loads(r.value) for r in on_topic]
    assert {d["decision_id"] for d in docs} == reference  # re-sent after a restart, never a new id
    assert all(r.key.decode() == d["account_id"] for r, d in zip(on_topic, docs, strict=True))
    schema = json.loads((REPO / "contracts" / "decision.schema.json").read_text())
    for d in docs:
        jsonschema.validate(d, schema)
