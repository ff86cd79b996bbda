"""``detector demo``: embedded broker (when no bootstrap servers are set), topics, live simulated traffic,
the daemon, alerts printed as they arrive, metrics served; Ctrl-C or SIGTERM stops it cleanly."""

from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

from detector.runtime.stream.settings import StreamSettings

log = logging.getLogger("detector.stream")

#: Partitions of the demo's input topic (alerts and dead-letter topics get one each).
DEMO_PARTITIONS = 4


#: Severities the demo prints (``--show-leads`` adds ``low``: model-only leads and weak rules).
ACCUSATIONS = ("medium", "high", "critical")


def print_alert(doc: dict[str, Any]) -> None:
    """One line per alert on stdout (ids, counts and scores only; alerts never hold prompt text)."""
    reasons = ",".join(r["name"] for r in doc.get("reasons", []))
    print(
        f"ALERT {doc['severity']:<8} {doc['kind']:<7} {doc['subject']:<24} "
        f"campaign={doc.get('campaign_type') or '-'} accounts={len(doc['account_ids'])} "
        f"score={doc['score']:.2f} id={doc['alert_id']} rev={doc['revision']} "
        f"detected={doc['detected_event_ts']} why={reasons}",
        flush=True,
    )


def _accusations_only(doc: dict[str, Any]) -> None:
    if doc["severity"] in ACCUSATIONS:
        print_alert(doc)


def run_demo(
    settings: StreamSettings,
    *,
    days: float,
    scale: float,
    seed: int,
    speed: float,
    duration: float,
    stop: threading.Event,
    engine_args: dict[str, Any],
    rules: Any = None,
    show_leads: bool = False,
) -> int:
    """Run the demo until ``stop`` is set or ``duration`` seconds pass (0: no limit); return exit code.

    ``rules``: an optional ``RuleWatcher`` (``detector demo`` passes one; SIGHUP reloads the rules).
    """
    from kafka import KafkaAdminClient, KafkaProducer
    from prometheus_client import CollectorRegistry

    from detector.app import build_engine
    from detector.lab.demo.broker import EmbeddedBroker
    from detector.lab.demo.feed import create_topics, produce, read_events
    from detector.lab.simulate import simulate
    from detector.runtime.metrics import Metrics
    from detector.runtime.stream.daemon import Daemon
    from detector.runtime.stream.http import OpsServer

    broker: EmbeddedBroker | None = None
    work = Path(tempfile.mkdtemp(prefix="detector-demo-"))
    feeder: threading.Thread | None = None
    server: OpsServer | None = None
    timer: threading.Timer | None = None
    try:
        if not settings.bootstrap_servers:
            broker = EmbeddedBroker()
            broker.start()
            settings = settings.model_copy(
                update={"bootstrap_servers": broker.bootstrap, "state_dir": work / "state"}
            )
            log.info("embedded broker started", extra={"bootstrap": broker.bootstrap})
        print(f"simulating {days} day(s) of traffic (scale {scale}, seed {seed}) ...", flush=True)
        simulate(work / "sim", days=days, seed=seed, scale=scale)
        events = read_events(work / "sim" / "events.jsonl")
        common = settings.kafka_common()
        admin = KafkaAdminClient(**common)
        create_topics(
            admin,
            {settings.input_topic: DEMO_PARTITIONS, settings.alerts_topic: 1, settings.dead_letter_topic: 1},
        )
        admin.close()
        producer = KafkaProducer(**common, linger_ms=20)

        def feed() -> None:
            try:
                n = produce(producer, settings.input_topic, events, speed=speed, stop=stop)
                print(f"producer: all {n} simulated events sent", flush=True)
            finally:
                producer.close(timeout=5)

        feeder = threading.Thread(target=feed, name="demo-producer", daemon=True)
        metrics = Metrics(CollectorRegistry())
        daemon = Daemon(
            settings,
            lambda: build_engine(**engine_args),
            metrics,
            stop=stop,
            on_alert=print_alert if show_leads else _accusations_only,
            rules=rules,
        )
        if settings.metrics_port:
            server = OpsServer(
                metrics.registry, daemon.live, daemon.ready, settings.metrics_host, settings.metrics_port
            ).start()
            print(f"metrics: http://{settings.metrics_host}:{server.port}/metrics", flush=True)
        print(
            f"producing {len(events)} events to {settings.input_topic} at {speed:g}x event time; "
            f"alerts at medium or above follow{' (and low leads)' if show_leads else ''} (Ctrl-C stops); "
            f"every alert is on the {settings.alerts_topic} topic",
            flush=True,
        )
        feeder.start()
        if duration > 0:
            timer = threading.Timer(duration, stop.set)
            timer.daemon = True
            timer.start()
        summary = daemon.run()
        print(
            f"stopped: {summary.records} records read, {summary.alerts} alerts, {summary.commits} commits",
            flush=True,
        )
        return 0
    finally:
        stop.set()
        if timer:
            timer.cancel()
        if feeder and feeder.is_alive():
            feeder.join(10)
        if server:
            server.stop()
        if broker:
            broker.stop()
