"""Helpers of the two-stage split's broker tests (``test_stages.py``, ``test_stage_faults.py``): the lagged
replay they compare against, the stage processes, and what the stages' logs and alerts say.

Each stage is a real ``detector run --drain`` process (``DETECTOR_STAGE``) on the suite's Tansu broker
(``kafka_broker``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import kafka_broker as kb
import orjson

from detector.app import build_engine
from detector.lab.simulate import simulate
from detector.runtime.replay import replay
from detector.runtime.stream.settings import StreamSettings
from detector.settings import EngineSettings

REPO = Path(__file__).resolve().parents[1]
CONTEXTS = "detector-contexts"
LAG = {"DETECTOR_CONTEXT_LAG": "true"}
#: The half day the stage tests run (9,823 events on 4 partitions; 237 alerts of both kinds).
DAY = {"days": 0.5, "seed": 3, "scale": 0.2}


def doc(raw: bytes) -> dict[str, Any]:
    """An alert record as a dict, without ``emitted_at`` (the wall clock of its send)."""
    out = orjson.loads(raw)
    out.pop("emitted_at", None)
    return dict(out)


def key(d: dict[str, Any]) -> tuple[str, int]:
    """(alert_id, revision) of an alert dict."""
    return d["alert_id"], d["revision"]


def reference(folder: Path) -> list[dict[str, Any]]:
    """Simulate ``DAY`` under ``folder/sim`` and return the alerts of ``detector replay`` with the lag on."""
    simulate(folder / "sim", **DAY)  # type: ignore[arg-type]
    lag = EngineSettings().model_copy(update={"context_lag": True})
    engine = build_engine(REPO / "rules", settings=lag)
    replay([folder / "sim" / "events.jsonl"], engine, folder / "ref.jsonl")
    # the rule guard stays per account stage (``stages``): this day must not exercise it
    assert not engine.stats.demoted
    docs = [doc(x) for x in (folder / "ref.jsonl").read_bytes().splitlines()]
    kinds = {d["kind"] for d in docs}
    assert kinds == {"account", "cluster"}, f"the day must raise both kinds to prove anything: {kinds}"
    return docs


def start(settings: StreamSettings, stage: str, log: Path, key: str = "") -> subprocess.Popen[bytes]:
    """One stage as a ``detector run --drain`` process, its log lines to ``log``."""
    env = {**LAG, "DETECTOR_STAGE": stage, "DETECTOR_STREAM_CONTEXTS_KEY": key}
    return kb.start_daemon_process(settings, "--drain", log_file=log, env_extra=env)


#: A member of the account stage's group that holds its share and never reads it: polls (so it stays in
#: the group) and prints ``assigned <partitions>`` at each deal (``ghost``).
GHOST = """
import sys
from kafka import KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from detector.runtime.stream.assignor import SpreadAssignor

class Said(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked):
        pass

    def on_partitions_assigned(self, assigned):
        print("assigned", sorted(tp.partition for tp in assigned), flush=True)

bootstrap, group, topic = sys.argv[1:4]
consumer = KafkaConsumer(
    bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, session_timeout_ms=6000,
    heartbeat_interval_ms=1000, max_poll_interval_ms=6000, partition_assignment_strategy=[SpreadAssignor()],
)
consumer.subscribe([topic], listener=Said())
while True:
    consumer.poll(timeout_ms=200, max_records=1)
    consumer.pause(*consumer.assignment())
"""


def ghost(settings: StreamSettings, log: Path) -> subprocess.Popen[bytes]:
    """A ``GHOST`` member in the account stage's group (its lines to ``log``): a member that the group
    deals a share to and that never reads it, as a member killed after it joined looks until it expires."""
    group = settings.model_copy(update={"stage": "account"}).for_stage().group_id
    args = [sys.executable, "-c", GHOST, settings.bootstrap_servers, group, settings.input_topic]
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen[bytes], log: Path, timeout: float = 240, why: str = "") -> None:
    """Wait for a stage to exit 0; fail with the end of its log (and ``why``) otherwise."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"{why}timed out; {log.name}: {log.read_text()[-3000:]}") from None
    assert proc.returncode == 0, f"{why}exit {proc.returncode}; {log.name}: {log.read_text()[-3000:]}"


def assigned(log: Path) -> list[list[int]]:
    """The non-empty partition sets a daemon's log says it was assigned."""
    out = []
    for line in log.read_text().splitlines():
        if '"msg":"partitions assigned"' in line:
            parts = json.loads(line).get("partitions")
            if parts:
                out.append(parts)
    return out


def sent(log: Path) -> int:
    """The alerts a daemon's last "stopped" log line says it sent."""
    stops = [json.loads(x) for x in log.read_text().splitlines() if '"msg":"stopped"' in x]
    return int(stops[-1]["alerts"])


def compare(raws: list[bytes], ref: list[dict[str, Any]], why: str = "") -> list[dict[str, Any]]:
    """Assert that the alert records ``raws`` the stages sent are replay's ``ref``: the same (alert_id,
    revision) set, and every copy field for field replay's (``emitted_at`` aside), so no event was lost
    or counted twice (the counts are in the evidence). A (alert_id, revision) sent more than once (a
    restart resends what it raised after its last checkpoint: at least once) must be the same alert
    each time. Return the sent alerts (``emitted_at`` removed); ``why`` leads every failure message
    (e.g. the schedule seed of a run with kills)."""
    docs = [doc(r) for r in raws]
    copies: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for d in docs:
        copies[key(d)].append(d)
    want = {key(d): d for d in ref}
    lost, extra = sorted(want.keys() - copies.keys()), sorted(copies.keys() - want.keys())
    assert not lost, f"{why}lost {len(lost)} alerts: {lost[:5]}"
    assert not extra, f"{why}{len(extra)} alerts not in replay: {extra[:5]}"
    # at least once: a duplicate after a restart is allowed, but only as an identical copy
    differing = [k for k, cs in copies.items() if any(c != cs[0] for c in cs[1:])]
    assert not differing, f"{why}resent with another body (counted twice?): {differing[:5]}"
    wrong = [k for k, cs in copies.items() if cs[0] != want[k]]
    detail = [(want[k].get("evidence"), copies[k][0].get("evidence")) for k in wrong[:1]]
    assert not wrong, f"{why}not replay's alert (counts differ?): {wrong[:5]} ({len(wrong)}); {detail}"
    return docs


class Stages:
    """The stage processes of one run, by name (``account-a``, ``cluster``, ...): each start of a name
    logs to its own file (``<name>.<n>.log``), so a restarted stage's log is apart from the killed one's."""

    def __init__(self, settings: StreamSettings, folder: Path) -> None:
        self.settings, self.folder = settings, folder
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stages: dict[str, str] = {}
        self.logs: dict[str, list[Path]] = {}

    def start(self, name: str, stage: str | None = None) -> subprocess.Popen[bytes]:
        """Start ``name`` (again, as the same stage, when ``stage`` is None)."""
        stage = self.stages[name] if stage is None else stage
        logs = self.logs.setdefault(name, [])
        logs.append(self.folder / f"{name}.{len(logs)}.log")
        self.stages[name] = stage
        self.procs[name] = start(self.settings, stage, logs[-1])
        return self.procs[name]

    def log(self, name: str) -> Path:
        """The log of ``name``'s latest start."""
        return self.logs[name][-1]

    def running(self) -> list[str]:
        """The names whose latest process has not exited, sorted."""
        return sorted(n for n, p in self.procs.items() if p.poll() is None)

    def send(self, name: str, sig: int) -> None:
        """Send ``sig`` to ``name``'s latest process and wait for it to exit."""
        self.procs[name].send_signal(sig)
        self.procs[name].wait(60)

    def finish(self, why: str = "") -> None:
        """Wait for every latest process to exit 0 (``finish``)."""
        for name, proc in self.procs.items():
            finish(proc, self.log(name), why=why)
