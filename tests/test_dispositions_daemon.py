"""The daemon end to end on the real broker: decisions reach the decisions topic keyed by account, and
a false positive POSTed to ``/dispositions`` on the metrics port (bearer token from a file) lifts that
alert's decisions on the topic and is counted in ``detector_dispositions_total``."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kafka_broker as kb
import orjson
import pytest

from detector.decide.dispositions import DispositionStore
from detector.lab.demo.broker import free_port
from detector.lab.simulate import simulate

pytestmark = pytest.mark.kafka
DECISIONS = "detector-decisions"


def _decisions(bootstrap: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in kb.read_topic(bootstrap, DECISIONS, idle_s=0.8)]


def _post(port: int, body: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/dispositions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def test_false_positive_over_http_lifts_decisions_on_the_topic(tmp_path: Path) -> None:
    simulate(tmp_path / "sim", days=0.5, seed=3, scale=0.2)
    events = kb.read_events(tmp_path / "sim" / "events.jsonl")
    token_file = tmp_path / "token"
    token_file.write_text("t0ken-for-tests\n")
    port = free_port()
    with kb.EmbeddedBroker() as broker:
        kb.make_topics(broker.bootstrap, extra={DECISIONS: 1})
        kb.produce_events(broker.bootstrap, events)
        settings = kb.stream_settings(
            broker.bootstrap,
            tmp_path / "state",
            metrics_port=port,
            decisions_topic=DECISIONS,
            dispositions_store=tmp_path / "dispositions.sqlite",
            dispositions_token_file=token_file,
        )
        proc = kb.start_daemon_process(settings, log_file=tmp_path / "daemon.log")
        try:

            def applied() -> list[dict[str, Any]]:
                return [
                    d
                    for d in _decisions(broker.bootstrap)
                    if d["op"] == "apply" and d["alert_kind"] == "cluster" and d["action"] != "monitor"
                ]

            kb.wait_for(lambda: bool(applied()), 180, "an enforcing cluster decision on the topic")
            target = applied()[0]["alert_id"]
            assert _post(port, {"alert_id": target, "verdict": "false_positive"}, "wrong")[0] == 401
            code, answer = _post(
                port, {"alert_id": target, "verdict": "false_positive", "note": "t"}, "t0ken-for-tests"
            )
            assert code == 201 and answer["withdrawn"] >= 1, answer

            def lifted() -> list[dict[str, Any]]:
                return [
                    d
                    for d in _decisions(broker.bootstrap)
                    if d["op"] == "lift" and d["lift_reason"] == "withdrawn" and d["alert_id"] == target
                ]

            kb.wait_for(lambda: len(lifted()) == answer["withdrawn"], 60, "the withdrawn lifts on the topic")
            assert kb.metric(port, "detector_dispositions_total", {"verdict": "false_positive"}) == 1.0
            labels = {"op": "lift", "action": lifted()[0]["action"], "reason": "withdrawn"}
            assert (kb.metric(port, "detector_decisions_total", labels) or 0) >= 1
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    log_text = (tmp_path / "daemon.log").read_text()
    assert "t0ken-for-tests" not in log_text
    store = DispositionStore(tmp_path / "dispositions.sqlite")
    assert [(d.alert_id, d.verdict) for d in store.all()] == [(target, "false_positive")]
    store.close()
