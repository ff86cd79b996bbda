"""Issue 13: the daemon's two-stage split on the real broker (``runtime/stream/stages.py``).

One cluster stage and two account stages, each a ``detector run --drain`` process (``DETECTOR_STAGE``),
over a small simulated day: the alerts they send, together, are the alerts of ``detector replay`` with
``DETECTOR_CONTEXT_LAG`` on, (alert_id, revision) for (alert_id, revision) and field for field
(``emitted_at`` aside). Each account stage raises account alerts only, the cluster stage cluster alerts
only, and both account stages hold partitions. Faults mid-stream (five ``kill -9`` of random stages, an
account stage joining and leaving): ``test_stage_faults.py``.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import kafka_broker as kb
import pytest
from stage_runs import CONTEXTS, LAG, assigned, compare, finish, reference, sent, start

from detector.errors import ConfigError
from detector.lab.simulate import simulate
from detector.runtime.stream.assignor import SpreadAssignor
from detector.runtime.stream.settings import StreamSettings
from detector.runtime.stream.stages import assignment_folder, check_stage


@pytest.mark.kafka
@pytest.mark.parametrize("key", ["", "a contexts key of 32 characters."], ids=["unsigned", "signed"])
def test_a_cluster_stage_and_two_account_stages_raise_the_lagged_replays_alerts(
    tmp_path: Path, key: str
) -> None:
    ref = reference(tmp_path)
    events = kb.read_events(tmp_path / "sim" / "events.jsonl")
    with kb.EmbeddedBroker() as broker:
        kb.make_topics(broker.bootstrap, extra={CONTEXTS: 1})
        kb.produce_events(broker.bootstrap, events)
        settings = kb.stream_settings(
            broker.bootstrap, tmp_path / "state", max_poll_records=200, commit_interval_s=0.5
        )
        logs = [tmp_path / f"{n}.log" for n in ("account-a", "account-b", "cluster")]
        procs = [start(settings, "account", logs[0], key), start(settings, "account", logs[1], key)]
        procs.append(start(settings, "cluster", logs[2], key))
        for proc, log in zip(procs, logs, strict=True):
            finish(proc, log)
        # field for field: no event counted twice or lost (the counts are in the evidence)
        docs = compare([r.value for r in kb.read_topic(broker.bootstrap, kb.ALERTS)], ref)
        contexts = kb.read_topic(broker.bootstrap, CONTEXTS, idle_s=0.5)
    # signed under the key, or sent without any header, as before signatures
    assert contexts and all(bool(r.headers) == bool(key) for r in contexts)
    if key:  # never logged
        assert all(key not in log.read_text() for log in logs)
    assert all(assigned(log) for log in logs[:2]), "an account stage never held partitions"
    if all(len(assigned(log)) == 1 for log in logs[:2]):
        # each alert sent once, by its stage: the cluster stage the cluster alerts, the account stages
        # the account alerts (a stage that finished first can hand its partitions to the other, which
        # reads them again from their beginning: a set never held starts empty, and resends)
        assert len(docs) == len(ref)
        kinds = Counter(d["kind"] for d in ref)
        assert sent(logs[2]) == kinds["cluster"]
        assert sent(logs[0]) + sent(logs[1]) == kinds["account"]
        assert sent(logs[0]) and sent(logs[1])


@contextmanager
def _lone_account_stage(
    tmp_path: Path, wait_s: float, log: Path
) -> Iterator[tuple[kb.EmbeddedBroker, subprocess.Popen[bytes]]]:
    """An account stage with no cluster stage on a tenth of a day (so it waits for the first tick's
    context at most ``wait_s``), its log lines to ``log``; killed on the way out if still running."""
    simulate(tmp_path / "sim", days=0.1, seed=3, scale=0.2)
    with kb.EmbeddedBroker() as broker:
        kb.make_topics(broker.bootstrap, extra={CONTEXTS: 1})
        kb.produce_events(broker.bootstrap, kb.read_events(tmp_path / "sim" / "events.jsonl"))
        settings = kb.stream_settings(broker.bootstrap, tmp_path / "state", context_wait_s=wait_s)
        env = {**LAG, "DETECTOR_STAGE": "account", "DETECTOR_STREAM_CONTEXT_WAIT_S": f"{wait_s:g}"}
        proc = kb.start_daemon_process(settings, "--drain", log_file=log, env_extra=env)
        try:
            yield broker, proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


@pytest.mark.kafka
def test_an_account_stage_without_its_contexts_stops_naming_the_tick(tmp_path: Path) -> None:
    """No cluster stage: the account stage waits for the first tick's context, logs the tick, and stops
    without a checkpoint (a non-zero exit) when the wait runs out; it never raises an alert from a
    population of its own accounts."""
    log = tmp_path / "account.log"
    with _lone_account_stage(tmp_path, 3.0, log) as (broker, proc):
        assert proc.wait(180) == 9  # ContextTimeout: one line naming the tick, no checkpoint
        assert not kb.read_topic(broker.bootstrap, kb.ALERTS, idle_s=0.5)
    text = log.read_text()
    assert '"msg":"waiting for the cluster stage"' in text and '"as_of":"2026-' in text
    assert "no population context (models) as of 2026-" in text
    assert "unknown variable" not in text  # the harness sets the stage as ``DETECTOR_STAGE``, its own name


@pytest.mark.kafka
def test_an_account_stage_stopped_while_it_waits_for_a_context_stops_at_once(tmp_path: Path) -> None:
    """SIGTERM (a supervisor's stop, a scale-down) while the account stage waits for a context that the
    lagging cluster stage has not published: the wait is given up at once, the batch dropped (the next
    owner reads it again from the checkpoint) and the stage exits 0, instead of holding on until the wait
    bound and then exiting 9."""
    log = tmp_path / "account.log"
    with _lone_account_stage(tmp_path, 300.0, log) as (broker, proc):
        kb.wait_for(lambda: "waiting for the cluster stage" in log.read_text(), 180, "the context wait")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, log.read_text()[-3000:]
        assert time.monotonic() - t0 < 100  # well under the 300 s bound
        assert not kb.read_topic(broker.bootstrap, kb.ALERTS, idle_s=0.5)
    assert "stopping mid-wait: the batch is dropped" in log.read_text()


def test_the_spread_assignor_deals_every_partition_once() -> None:
    class _Member:
        def __init__(self, member_id: str) -> None:
            self.member_id = member_id
            self.metadata = type("M", (), {"topics": ["t"]})()

    class _Cluster:
        def partitions_for_topic(self, topic: str) -> set[int]:
            return {0, 1, 2, 3, 4}

    out = SpreadAssignor().assign(_Cluster(), [_Member("b"), _Member("a")])
    shares = {m: dict(a.assigned_partitions)["t"] for m, a in out.items()}
    assert shares == {"a": [0, 2, 4], "b": [1, 3]}


def test_a_stage_runs_in_its_own_group_and_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGE", "production")  # not ours: only DETECTOR_STAGE is read
    assert StreamSettings().stage == "all"
    assert StreamSettings().for_stage() == StreamSettings()
    monkeypatch.setenv("DETECTOR_STAGE", "account")
    s = StreamSettings(state_dir=Path("st"), group_id="g").for_stage()
    assert (s.stage, s.group_id, s.state_dir) == ("account", "g-account", Path("st/account"))
    assert assignment_folder(s.state_dir, [3, 1]) == Path("st/account/p1-3")


def test_the_harness_hands_a_stage_process_its_settings_as_it_reads_them() -> None:
    """``kafka_broker.settings_env``: the stage under ``DETECTOR_STAGE`` (its own name), a secret as its
    value (a settings dump masks it: a stage handed ``**********`` refuses it as too short)."""
    secret = "k" * 32
    env = kb.settings_env(StreamSettings(stage="account", contexts_key=secret))
    assert env["DETECTOR_STAGE"] == "account" and "DETECTOR_STREAM_STAGE" not in env
    assert env["DETECTOR_STREAM_CONTEXTS_KEY"] == secret


def test_a_split_stage_needs_the_lag_and_kafka_python() -> None:
    check_stage("all", False, "confluent")  # today's daemon: nothing asked
    check_stage("account", True, "kafka-python")
    with pytest.raises(ConfigError, match="context_lag"):
        check_stage("account", False, "kafka-python")
    with pytest.raises(ConfigError, match="kafka-python"):
        check_stage("cluster", True, "confluent")
