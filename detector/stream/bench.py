"""Stream benchmark on the embedded broker: raw kafka-python consume rate vs the daemon end to end
(decode, merge, engine, alert sends, checkpoints) on the same topic and data, in one run; then the
processing-time latency from produce to processed batch and to alert under live, paced traffic.

Like with like: the raw consumer is built from the same ``StreamSettings.consumer_config()`` as the
daemon's (fetch sizes, ``max_poll_records``, poll timeout) and reads the same topic of the same broker;
it runs once before and once after the daemon and the ratio uses their mean. Both clocks start at the
first record received; the daemon's stops after its drain and final checkpoint."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from detector.stream.settings import StreamSettings

PARTITIONS = 4


def _raw_consume_rate(settings: StreamSettings, n: int) -> float:
    """Records per second of a bare consumer (no group, no processing) reading ``n`` records."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.consumer_config())
    tps = [TopicPartition(settings.input_topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got, start = 0, None
    while got < n:
        batch = consumer.poll(timeout_ms=settings.poll_timeout_ms, max_records=settings.max_poll_records)
        if batch and start is None:
            start = time.monotonic()
        got += sum(len(v) for v in batch.values())
    consumer.close()
    assert start is not None
    return n / (time.monotonic() - start)


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def run_stream_bench(
    days: float, scale: float, seed: int, live_seconds: float, speed: float
) -> dict[str, Any]:
    """Measure and return the figures (events/s, ratio, latency quantiles)."""
    from kafka import KafkaAdminClient, KafkaProducer
    from prometheus_client import CollectorRegistry

    from detector.cli import build_engine
    from detector.metrics import Metrics
    from detector.simulate import simulate
    from detector.stream.broker import EmbeddedBroker
    from detector.stream.daemon import Daemon
    from detector.stream.feed import create_topics, produce, read_events

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

        raw_before = _raw_consume_rate(settings("bench-in", "unused"), len(events))
        daemon = Daemon(
            settings("bench-in", "state-e2e"),
            build_engine,
            Metrics(CollectorRegistry()),
            drain_when_idle=True,
        )
        s = daemon.run()
        assert s.first_record_at is not None and s.finished_at is not None
        e2e = len(events) / (s.finished_at - s.first_record_at)
        raw_after = _raw_consume_rate(settings("bench-in", "unused"), len(events))
        raw = (raw_before + raw_after) / 2
        out["raw_consume_events_per_s"] = round(raw)
        out["raw_consume_before_after"] = [round(raw_before), round(raw_after)]
        out["end_to_end_events_per_s"] = round(e2e)
        out["ratio"] = round(e2e / raw, 3)
        out["alerts"] = s.alerts
        out["prefetch_batches"] = daemon.s.prefetch_batches

        stop = threading.Event()
        live = Daemon(
            settings("bench-live", "state-live"), build_engine, Metrics(CollectorRegistry()), stop=stop
        )
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
        lat = live.summary.alert_latency_s
        out["live_speed"] = speed
        out["live_events_per_s"] = round(len(events) / 86400 / days * speed) if days else None
        # produce -> alert handed to the sinks, one sample per batch that raised alerts
        out["latency_batches"] = len(lat)
        out["latency_p50_s"] = round(_quantile(lat, 0.5), 3)
        out["latency_p99_s"] = round(_quantile(lat, 0.99), 3)
        # produce -> batch processed (decoded, merged, released events through the engine), per batch
        proc = live.summary.batch_latency_s
        out["processed_latency_batches"] = len(proc)
        out["processed_latency_p50_s"] = round(_quantile(proc, 0.5), 3)
        out["processed_latency_p99_s"] = round(_quantile(proc, 0.99), 3)
    return out
