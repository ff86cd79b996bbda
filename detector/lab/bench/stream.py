"""Stream benchmark on the embedded broker: raw consume rates (a bare kafka-python consumer and a bare
librdkafka one) vs the daemon end to end (decode, merge, engine, alert sends, checkpoints) on each
``KafkaSource``, on the same topic and data, in one run; then the processing-time latency from produce
to processed batch and to alert under live, paced traffic (the first source).

Like with like: the raw consumers are built from the same settings as the daemon's sources (fetch
sizes, ``max_poll_records``, poll timeout) and read the same topic of the same broker; each runs once
before and once after the daemons and the ratios use their mean. Every ratio is against the bare
kafka-python consumer (the issue's yardstick); ``ratio_vs_own_bare`` is against the bare consumer of the
same client. Both clocks start at the first record received; the daemon's stops after its drain and
final checkpoint.

Stages. The daemon's CPU per event is split by thread: the consumer thread (the client's poll and the
hand-off to the decoder), the decoding worker (JSON, validation, prompt features), the processing
thread (merge, engine, sink hand-off, checkpoints) and the rest of the process (the client's own
threads: librdkafka's are C threads; the producer's sender thread).

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

from detector.runtime.cpu import cores, own_seconds, pid_seconds, thread_seconds
from detector.runtime.stream.settings import StreamSettings
from detector.runtime.stream.source import SourceName

PARTITIONS = 4
#: The daemon's target per source: this share of the bare kafka-python consume rate (issue 13).
TARGETS = {"kafka-python": 0.6, "confluent": 1.2}


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


def _raw_confluent_rate(
    settings: StreamSettings, n: int, broker_pid: int | None = None
) -> tuple[float, float, float | None]:
    """``_raw_consume_rate`` with a bare librdkafka consumer (no group, no processing)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from detector.runtime.stream.confluent import client_config

    consumer = Consumer({**client_config(settings), "group.id": "bench-bare"})
    consumer.assign([TopicPartition(settings.input_topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    got, start, cpu0 = 0, None, None
    while got < n:
        batch = consumer.consume(settings.max_poll_records, settings.poll_timeout_ms / 1000)
        if batch and start is None:
            start, cpu0 = time.monotonic(), _Cpu.now(broker_pid)
        got += sum(1 for m in batch if m.error() is None)
    end, cpu1 = time.monotonic(), _Cpu.now(broker_pid)
    consumer.close()
    assert start is not None and cpu0 is not None
    own, broker = cpu0.per_event(cpu1, n)
    return n / (end - start), own, broker


@dataclass
class BenchProbe:
    """The daemon's timing, for this benchmark only (``RunProbe``): the clock and the CPU seconds of the
    process and its decoding workers at the first record and after the drain, and latency samples."""

    daemon: Any = None
    first_record_at: float | None = None
    first_record_cpu: float | None = None
    finished_at: float | None = None
    finished_cpu: float | None = None
    #: CPU seconds per stage (``_stages``) at the first record and after the drain.
    first_stages: dict[str, float | None] = field(default_factory=dict)
    finished_stages: dict[str, float | None] = field(default_factory=dict)
    _processing_tid: int | None = None
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

    def _stages(self) -> dict[str, float | None]:
        decoder = self.daemon.decoder if self.daemon is not None else None
        thread = self.daemon.consumer._thread if self.daemon is not None else None
        return {
            "process": own_seconds(),
            "consumer_thread": thread_seconds(thread.native_id if thread is not None else None),
            "processing_thread": thread_seconds(self._processing_tid),
            "decoding_worker": decoder.worker_cpu_seconds() if decoder is not None else None,
        }

    def records_read(self) -> None:
        if self.first_record_at is None:
            self._processing_tid = threading.get_native_id()
            self.first_record_at = time.monotonic()
            self.first_record_cpu = self._cpu()
            self.first_stages = self._stages()

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
        self.finished_stages = self._stages()

    def stage_us(self, n: int) -> dict[str, float | None]:
        """CPU microseconds per event of each stage between the first record and the drain."""
        a, b = self.first_stages, self.finished_stages
        out: dict[str, float | None] = {}
        for k in ("consumer_thread", "decoding_worker", "processing_thread"):
            x, y = a.get(k), b.get(k)
            out[k] = round((y - x) / n * 1e6, 1) if x is not None and y is not None else None
        total = (b["process"] or 0.0) - (a["process"] or 0.0)
        threads = sum(v for k, v in out.items() if v is not None and k != "decoding_worker")
        out["other_threads"] = round(total / n * 1e6 - threads, 1)
        return out


def _round(x: float | None) -> float | None:
    return round(x, 1) if x is not None else None


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def probed_daemon(settings: StreamSettings, **kw: Any) -> tuple[Any, BenchProbe]:
    """A daemon on ``settings`` timed by its own probe (both timed daemons are built here)."""
    from prometheus_client import CollectorRegistry

    from detector.app import build_engine
    from detector.runtime.metrics import Metrics
    from detector.runtime.stream.daemon import Daemon

    probe = BenchProbe()
    daemon = Daemon(settings, build_engine, Metrics(CollectorRegistry()), probe=probe, **kw)
    probe.daemon = daemon
    return daemon, probe


def _daemon_throughput(settings: StreamSettings, n: int, pid: int | None) -> tuple[dict[str, Any], Any]:
    """One daemon on ``settings`` drained from the first record: its figures and the daemon."""
    daemon, probe = probed_daemon(settings, drain_when_idle=True)
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
    broker_end = pid_seconds(pid) if pid is not None else None
    running.clear()
    watcher.join()
    p = probe
    assert p.first_record_at is not None and p.finished_at is not None
    assert p.first_record_cpu is not None and p.finished_cpu is not None
    e2e = n / (p.finished_at - p.first_record_at)
    cpu = (p.finished_cpu - p.first_record_cpu) / n * 1e6
    broker_cpu = (
        (broker_end - broker_marks[0]) / n * 1e6
        if broker_end is not None and broker_marks and broker_marks[0] is not None
        else None
    )
    return {
        "events_per_s": round(e2e),
        "alerts": s.alerts,
        "cpu_us_per_event": round(cpu, 1),
        "cores_busy": round(cpu * e2e / 1e6, 2),
        "broker_cpu_us_per_event": _round(broker_cpu),
        "stage_cpu_us_per_event": p.stage_us(n),
    }, daemon


def run_stream_bench(
    days: float,
    scale: float,
    seed: int,
    live_seconds: float,
    speed: float,
    sources: tuple[SourceName, ...] = ("kafka-python",),
) -> dict[str, Any]:
    """Measure and return the figures (events/s, ratios, CPU per stage, latency quantiles); the top
    level keys ``end_to_end_events_per_s`` and ``ratio`` are the first source's."""
    from kafka import KafkaAdminClient, KafkaProducer

    from detector.lab.demo.broker import EmbeddedBroker
    from detector.lab.demo.feed import create_topics, produce, read_events
    from detector.lab.simulate import simulate

    work = Path(tempfile.mkdtemp(prefix="detector-bench-"))
    simulate(work / "sim", days=days, seed=seed, scale=scale)
    events = read_events(work / "sim" / "events.jsonl")
    out: dict[str, Any] = {"events": len(events), "days": days, "scale": scale}
    confluent = "confluent" in sources
    with EmbeddedBroker() as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        topics = {"bench-in": PARTITIONS, "bench-live": PARTITIONS, "alerts": 1, "dlq": 1, "lease": 1}
        create_topics(admin, topics)
        admin.close()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20)
        produce(producer, "bench-in", events)

        def settings(topic: str, state: str, source: SourceName = sources[0]) -> StreamSettings:
            return StreamSettings(
                bootstrap_servers=broker.bootstrap,
                input_topic=topic,
                alerts_topic="alerts",
                dead_letter_topic="dlq",
                lease_topic="lease",
                source=source,
                group_id=f"bench-{topic}-{source}",
                state_dir=work / f"{state}-{source}",
                session_timeout_ms=6000,
                heartbeat_interval_ms=1000,
                max_poll_interval_ms=6000,
                poll_timeout_ms=200,
            )

        pid = broker.proc.pid if broker.proc is not None else None
        n = len(events)
        bare = settings("bench-in", "unused")
        raw_before, raw_cpu, raw_broker_cpu = _raw_consume_rate(bare, n, pid)
        if confluent:
            rd_before, rd_cpu, rd_broker_cpu = _raw_confluent_rate(bare, n, pid)
        daemons: dict[SourceName, dict[str, Any]] = {}
        for source in sources:
            daemons[source], daemon = _daemon_throughput(settings("bench-in", "state-e2e", source), n, pid)
        raw_after, _, _ = _raw_consume_rate(bare, n, pid)
        raw = (raw_before + raw_after) / 2
        out["cores"] = cores()
        out["raw_consume_events_per_s"] = round(raw)
        out["raw_consume_before_after"] = [round(raw_before), round(raw_after)]
        out["raw_consume_cpu_us_per_event"] = round(raw_cpu, 1)
        out["raw_consume_broker_cpu_us_per_event"] = _round(raw_broker_cpu)
        bare_rate = {"kafka-python": raw}
        if confluent:
            rd_after, _, _ = _raw_confluent_rate(bare, n, pid)
            bare_rate["confluent"] = (rd_before + rd_after) / 2
            out["raw_confluent_events_per_s"] = round(bare_rate["confluent"])
            out["raw_confluent_before_after"] = [round(rd_before), round(rd_after)]
            out["raw_confluent_cpu_us_per_event"] = round(rd_cpu, 1)
            out["raw_confluent_broker_cpu_us_per_event"] = _round(rd_broker_cpu)
        for source, d in daemons.items():
            # what the target ratio allows on this machine: c cores at r events/s leave c / r per event
            target = TARGETS[source]
            budget = cores() / (target * raw) * 1e6
            d["ratio"] = round(d["events_per_s"] / raw, 3)
            d["ratio_vs_own_bare"] = round(d["events_per_s"] / bare_rate[source], 3)
            d["target_ratio"] = target
            d["cpu_budget_us_per_event_at_target"] = round(budget, 1)
            spent = d["cpu_us_per_event"] + (d["broker_cpu_us_per_event"] or 0.0)
            d["daemon_and_broker_cpu_over_budget_x"] = round(spent / budget, 2)
        out["daemons"] = daemons
        first = daemons[sources[0]]
        out["end_to_end_events_per_s"] = first["events_per_s"]
        out["ratio"] = first["ratio"]
        out["alerts"] = first["alerts"]
        out["prefetch_batches"] = daemon.s.prefetch_batches
        out["decode_workers"] = daemon.s.decode_workers

        if live_seconds <= 0:  # throughput only (A/B runs)
            producer.close()
            return out
        stop = threading.Event()
        live, live_probe = probed_daemon(settings("bench-live", "state-live"), stop=stop)  # first source
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
