"""Stream benchmark on the embedded broker: raw kafka-python consume rate vs the daemon end to end
(decode, merge, engine, alert sends, checkpoints) on the same topic and data, in one run; then the
processing-time latency from produce to processed batch and to alert under live, paced traffic.

Like with like: the raw consumer is built from the same ``StreamSettings.consumer_config()`` as the
daemon's (fetch sizes, ``max_poll_records``, poll timeout) and reads the same topic of the same broker;
it runs once before and once after the daemon and the ratio uses their mean. Both clocks start at the
first record received; the daemon's stops after its drain and final checkpoint.

CPU. Beside the rates it reports CPU microseconds per event (user plus system, all threads) of the raw
consumer, of the daemon and of the broker process serving each, and the budget the target ratio leaves:
at ``r`` events/s on ``c`` cores nothing may spend more than ``c / r`` CPU seconds per event, broker
included. When daemon plus broker already spend more than that, no thread or process layout reaches the
target; only less work per event does."""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detector.runtime.cpu import cores, own_seconds, pid_seconds
from detector.runtime.stream.settings import StreamSettings

PARTITIONS = 4
#: The daemon's target: this share of the raw kafka-python consume rate (issue 5).
TARGET_RATIO = 0.9


@dataclass
class _Cpu:
    """CPU seconds of this process and of the broker at one moment."""

    own: float
    broker: float | None

    @classmethod
    def now(cls, broker_pid: int | None) -> _Cpu:
        return cls(own_seconds(), pid_seconds(broker_pid) if broker_pid is not None else None)

    def per_event(self, later: _Cpu, n: int) -> tuple[float, float | None]:
        """Microseconds of CPU per event between this moment and ``later``: (own, broker)."""
        own = (later.own - self.own) / n * 1e6
        if self.broker is None or later.broker is None:
            return own, None
        return own, (later.broker - self.broker) / n * 1e6


def _raw_consume_rate(
    settings: StreamSettings, n: int, broker_pid: int | None = None
) -> tuple[float, float, float | None]:
    """Records per second of a bare consumer (no group, no processing) reading ``n`` records, and its
    CPU microseconds per record (own, broker's), counted from the first record received."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.consumer_config())
    tps = [TopicPartition(settings.input_topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got, start, cpu0 = 0, None, None
    while got < n:
        batch = consumer.poll(timeout_ms=settings.poll_timeout_ms, max_records=settings.max_poll_records)
        if batch and start is None:
            start, cpu0 = time.monotonic(), _Cpu.now(broker_pid)
        got += sum(len(v) for v in batch.values())
    consumer.close()
    end, cpu1 = time.monotonic(), _Cpu.now(broker_pid)
    assert start is not None and cpu0 is not None
    rate = n / (end - start)
    own, broker = cpu0.per_event(cpu1, n)
    return rate, own, broker


@dataclass
class BenchProbe:
    """The daemon's timing, for this benchmark only (``RunProbe``): the clock and the CPU seconds of the
    process and its decoding workers at the first record and after the drain, and latency samples."""

    daemon: Any = None
    first_record_at: float | None = None
    first_record_cpu: float | None = None
    finished_at: float | None = None
    finished_cpu: float | None = None
    #: Per batch that raised alerts: wall seconds from the produce of the newest record read so far
    #: (``produced_at`` header, when the producer sets one) to the alerts' hand-off to the sinks.
    alert_latency_s: list[float] = field(default_factory=list)
    #: Per non-empty batch: wall seconds from the produce of its newest record to the end of its
    #: processing (decoded, merged, released events through the engine).
    batch_latency_s: list[float] = field(default_factory=list)
    _newest: int = 0
    _batch_newest: int = 0

    def _cpu(self) -> float:
        decoder = self.daemon.decoder if self.daemon is not None else None
        return own_seconds() + (decoder.worker_cpu_seconds() if decoder is not None else 0.0)

    def records_read(self) -> None:
        if self.first_record_at is None:
            self.first_record_at = time.monotonic()
            self.first_record_cpu = self._cpu()

    def batch_read(self, newest_produced_ms: int) -> None:
        self._batch_newest = newest_produced_ms
        self._newest = max(self._newest, newest_produced_ms)

    def batch_done(self) -> None:
        if self._batch_newest > 0:
            self.batch_latency_s.append(time.time() - self._batch_newest / 1000.0)

    def alerts_sent(self, count: int) -> None:
        if self._newest > 0:
            self.alert_latency_s.append(time.time() - self._newest / 1000.0)

    def drained(self) -> None:
        self.finished_at = time.monotonic()
        self.finished_cpu = self._cpu()


def _round(x: float | None) -> float | None:
    return round(x, 1) if x is not None else None


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def run_stream_bench(
    days: float, scale: float, seed: int, live_seconds: float, speed: float
) -> dict[str, Any]:
    """Measure and return the figures (events/s, ratio, latency quantiles)."""
    from kafka import KafkaAdminClient, KafkaProducer
    from prometheus_client import CollectorRegistry

    from detector.app import build_engine
    from detector.lab.demo.broker import EmbeddedBroker
    from detector.lab.demo.feed import create_topics, produce, read_events
    from detector.lab.simulate import simulate
    from detector.runtime.metrics import Metrics
    from detector.runtime.stream.daemon import Daemon

    work = Path(tempfile.mkdtemp(prefix="detector-bench-"))
    simulate(work / "sim", days=days, seed=seed, scale=scale)
    events = read_events(work / "sim" / "events.jsonl")
    out: dict[str, Any] = {"events": len(events), "days": days, "scale": scale}
    with EmbeddedBroker() as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        create_topics(admin, {"bench-in": PARTITIONS, "bench-live": PARTITIONS, "alerts": 1, "dlq": 1})
        admin.close()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20)
        produce(producer, "bench-in", events)

        def settings(topic: str, state: str) -> StreamSettings:
            return StreamSettings(
                bootstrap_servers=broker.bootstrap,
                input_topic=topic,
                alerts_topic="alerts",
                dead_letter_topic="dlq",
                group_id=f"bench-{topic}",
                state_dir=work / state,
                session_timeout_ms=6000,
                heartbeat_interval_ms=1000,
                max_poll_interval_ms=6000,
                poll_timeout_ms=200,
            )

        def probed_daemon(topic: str, state: str, **kw: Any) -> tuple[Daemon, BenchProbe]:
            """A daemon on ``topic`` (state in ``state``) timed by its own probe."""
            probe = BenchProbe()
            daemon = Daemon(
                settings(topic, state), build_engine, Metrics(CollectorRegistry()), probe=probe, **kw
            )
            probe.daemon = daemon
            return daemon, probe

        pid = broker.proc.pid if broker.proc is not None else None
        n = len(events)
        raw_before, raw_cpu, raw_broker_cpu = _raw_consume_rate(settings("bench-in", "unused"), n, pid)
        daemon, probe = probed_daemon("bench-in", "state-e2e", drain_when_idle=True)
        # the broker's CPU is read when the daemon's first record arrives (a watcher thread) and at the end
        broker_marks: list[float | None] = []
        running = threading.Event()

        def watch() -> None:
            while running.is_set() and probe.first_record_at is None:
                time.sleep(0.005)
            broker_marks.append(pid_seconds(pid) if pid is not None else None)

        running.set()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        s = daemon.run()
        p = probe
        broker_end = pid_seconds(pid) if pid is not None else None
        running.clear()
        watcher.join()
        assert p.first_record_at is not None and p.finished_at is not None
        assert p.first_record_cpu is not None and p.finished_cpu is not None
        wall = p.finished_at - p.first_record_at
        e2e = n / wall
        daemon_cpu = (p.finished_cpu - p.first_record_cpu) / n * 1e6
        daemon_broker_cpu = (
            (broker_end - broker_marks[0]) / n * 1e6
            if broker_end is not None and broker_marks and broker_marks[0] is not None
            else None
        )
        raw_after, _, _ = _raw_consume_rate(settings("bench-in", "unused"), n, pid)
        raw = (raw_before + raw_after) / 2
        out["raw_consume_events_per_s"] = round(raw)
        out["raw_consume_before_after"] = [round(raw_before), round(raw_after)]
        out["end_to_end_events_per_s"] = round(e2e)
        out["ratio"] = round(e2e / raw, 3)
        out["alerts"] = s.alerts
        out["prefetch_batches"] = daemon.s.prefetch_batches
        out["decode_workers"] = daemon.s.decode_workers
        # CPU: what each side spends per event, and what the target ratio allows on this machine
        budget = cores() / (TARGET_RATIO * raw) * 1e6
        spent = daemon_cpu + (daemon_broker_cpu or 0.0)
        out["cores"] = cores()
        out["raw_consume_cpu_us_per_event"] = round(raw_cpu, 1)
        out["raw_consume_broker_cpu_us_per_event"] = _round(raw_broker_cpu)
        out["daemon_cpu_us_per_event"] = round(daemon_cpu, 1)
        out["daemon_cores_busy"] = round(daemon_cpu * e2e / 1e6, 2)
        out["daemon_broker_cpu_us_per_event"] = _round(daemon_broker_cpu)
        out["target_ratio"] = TARGET_RATIO
        out["cpu_budget_us_per_event_at_target"] = round(budget, 1)
        out["daemon_and_broker_cpu_over_budget_x"] = round(spent / budget, 2)

        if live_seconds <= 0:  # throughput only (A/B runs)
            producer.close()
            return out
        stop = threading.Event()
        live, live_probe = probed_daemon("bench-live", "state-live", stop=stop)
        t = threading.Thread(target=live.run, daemon=True)
        t.start()
        time.sleep(8)  # group join
        feeder = threading.Thread(
            target=produce, args=(producer, "bench-live", events, speed, stop), daemon=True
        )
        feeder.start()
        time.sleep(live_seconds)
        stop.set()
        t.join(60)
        feeder.join(30)
        producer.close()
        lat = live_probe.alert_latency_s
        out["live_speed"] = speed
        out["live_events_per_s"] = round(len(events) / 86400 / days * speed) if days else None
        # produce -> alert handed to the sinks, one sample per batch that raised alerts
        out["latency_batches"] = len(lat)
        out["latency_p50_s"] = round(_quantile(lat, 0.5), 3)
        out["latency_p99_s"] = round(_quantile(lat, 0.99), 3)
        # produce -> batch processed (decoded, merged, released events through the engine), per batch
        proc = live_probe.batch_latency_s
        out["processed_latency_batches"] = len(proc)
        out["processed_latency_p50_s"] = round(_quantile(proc, 0.5), 3)
        out["processed_latency_p99_s"] = round(_quantile(proc, 0.99), 3)
    return out
