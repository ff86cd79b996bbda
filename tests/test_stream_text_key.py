"""The daemon under a secret text key, on the real Tansu broker: its decoding worker keys ``text_fp`` as
replay does (the same alerts as a keyed replay), its checkpoint names the key by its check only, and a
restart under another key stops with the variable named, writing nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kafka_broker as kb
import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from detector.app import build_engine, engine_settings
from detector.checkpoint import TEXT_KEY_CHECK
from detector.engine import Engine, Observers
from detector.enrich.prompt.hashing import TextKey
from detector.errors import ConfigError
from detector.lab.simulate import simulate
from detector.runtime.metrics import Metrics
from detector.runtime.replay import replay
from detector.runtime.stream.daemon import Daemon

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[1]
KEY_A = "stream-text-key-A-0123456789abcdef"
KEY_B = "stream-text-key-B-fedcba9876543210"


def _factory(key: str) -> Any:
    es = engine_settings(REPO / "rules").model_copy(update={"text_key": SecretStr(key)})

    def build(*, observers: Observers | None = None) -> Engine:
        return build_engine(settings=es, observers=observers)

    return build


def test_a_keyed_daemon_matches_a_keyed_replay_and_refuses_another_key(
    broker: kb.EmbeddedBroker, tmp_path: Path
) -> None:
    simulate(tmp_path / "sim", days=0.5, seed=1, scale=0.2)
    ref = tmp_path / "ref.jsonl"
    replayed = _factory(KEY_A)()
    replay([tmp_path / "sim" / "events.jsonl"], replayed, ref)
    want = [orjson.loads(x) for x in ref.read_bytes().splitlines()]
    assert want, "the keyed replay raised no alerts"
    kb.make_topics(broker.bootstrap)
    n = kb.produce_events(broker.bootstrap, kb.read_events(tmp_path / "sim" / "events.jsonl"))
    state = tmp_path / "state"
    settings = kb.stream_settings(broker.bootstrap, state, decode_workers=1)
    daemon = Daemon(
        settings, _factory(KEY_A), Metrics(CollectorRegistry()), keep_alerts=True, drain_when_idle=True
    )
    t = kb.DaemonThread(daemon).start()
    t.thread.join(180)
    assert not t.thread.is_alive()
    if t.error:
        raise t.error
    assert daemon.summary.records == n
    got = [{k: v for k, v in d.items() if k != "emitted_at"} for d in daemon.summary.alert_docs]
    key = lambda d: (d["alert_id"], d["revision"])  # noqa: E731
    assert sorted(got, key=key) == sorted(want, key=key)
    # the samples the daemon's decoding worker fed are the keyed replay's (the alerts of this day do
    # not depend on the sample order, so they alone would not show an unkeyed worker)
    assert daemon.engine is not None
    for table in ("sheets", "openers"):
        mine = set(getattr(daemon.engine.state, table)["text_fp"].drop_nulls().to_list())
        theirs = set(getattr(replayed.state, table)["text_fp"].drop_nulls().to_list())
        assert mine and mine <= theirs, table
    current = (state / "CURRENT").read_text()
    meta = orjson.loads((state / current / "meta.json").read_bytes())
    assert meta[TEXT_KEY_CHECK] == TextKey(KEY_A.encode()).check

    # a restart under another key: the first assignment refuses the checkpoint, nothing is written
    folders = sorted(p.name for p in state.iterdir())
    again = Daemon(settings, _factory(KEY_B), Metrics(CollectorRegistry()))
    t = kb.DaemonThread(again).start()
    t.thread.join(90)
    assert not t.thread.is_alive()
    assert isinstance(t.error, ConfigError) and t.error.location == "DETECTOR_TEXT_KEY", t.error
    assert KEY_A not in str(t.error) and KEY_B not in str(t.error)
    assert sorted(p.name for p in state.iterdir()) == folders
    assert (state / "CURRENT").read_text() == current
