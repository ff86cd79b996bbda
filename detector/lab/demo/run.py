"""``detector demo``: embedded broker (when no bootstrap servers are set), topics, live simulated traffic,
the daemon, alerts printed as they arrive, metrics served; Ctrl-C or SIGTERM stops it cleanly."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from detector.contracts import SEVERITIES, Severity
from detector.runtime.stream.settings import StreamSettings

log = logging.getLogger("detector.stream")

#: Partitions of the demo's input topic (alerts and dead-letter topics get one each).
DEMO_PARTITIONS = 4


#: Severities the demo prints (``--show-leads`` adds ``low``: model-only leads and weak rules).
ACCUSATIONS = tuple(s.value for s in SEVERITIES if s >= Severity.MEDIUM)


class EpisodePrinter:
    """One readable line per episode change on stdout: ``NEW`` the first time an episode is shown,
    ``UPDATE`` when it escalates or grows (what changed is spelled out). Ids, counts, scores and the
    rule's sentence only: alerts never hold prompt text. Counts episodes and updates for the summary."""

    def __init__(self, show_leads: bool = False) -> None:
        self.show_leads = show_leads
        self.shown: dict[str, tuple[str, int]] = {}  # alert_id -> (severity, accounts) last printed
        self.episodes: dict[str, str] = {}  # alert_id -> latest severity (every episode, shown or not)
        self.updates = 0

    def __call__(self, doc: dict[str, Any]) -> None:
        """Take one emitted alert record."""
        aid, severity, accounts = doc["alert_id"], doc["severity"], len(doc["account_ids"])
        if aid in self.episodes:
            self.updates += 1
        self.episodes[aid] = severity
        if severity not in ACCUSATIONS and not self.show_leads:
            return
        before = self.shown.get(aid)
        self.shown[aid] = (severity, accounts)
        print(self.line(doc, before), flush=True)

    @staticmethod
    def line(doc: dict[str, Any], before: tuple[str, int] | None) -> str:
        """The line for one record; ``before`` is what was last printed for its episode (None: new)."""
        severity, n = doc["severity"], len(doc["account_ids"])
        if before is None:
            mark, change = "NEW   ", f"{n} account{'s' if n != 1 else ''}"
        else:
            mark, parts = "UPDATE", []
            if before[0] != severity:
                parts.append(f"{before[0]} -> {severity}")
            parts.append(f"{before[1]} -> {n} accounts" if before[1] != n else f"{n} accounts")
            change = ", ".join(parts)
        reasons = doc.get("reasons") or []
        why = doc.get("output") or next((r.get("title") for r in reasons if r.get("title")), None)
        why = why or ", ".join(r["name"] for r in reasons)
        return (
            f"{mark} {severity:<8} {doc['kind']:<7} {doc['subject']:<18} {change:<26} "
            f"{doc.get('campaign_type') or '-':<16} score {doc['score']:.2f}  {why}  "
            f"[{doc['alert_id']} rev {doc['revision']}]"
        )

    def totals(self) -> str:
        """Episodes by severity and how many updates, for the stop line."""
        counts = Counter(self.episodes.values())
        by = ", ".join(f"{counts[s]} {s}" for s in reversed(SEVERITIES) if counts[s])
        return f"{len(self.episodes)} alert episodes ({by or 'none'}; {self.updates} updates)"


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
    Logs go to stderr at WARNING unless ``DETECTOR_STREAM_LOG_LEVEL`` asks for more; metrics are served
    on ``settings.metrics_port`` (default 9108; when that default is taken the demo runs without them).
    The working folder is removed on the way out.
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

    if "log_level" not in settings.model_fields_set:
        logging.getLogger("detector").setLevel(logging.WARNING)
    explicit_port = "metrics_port" in settings.model_fields_set  # else the default, 9108, if free
    broker: EmbeddedBroker | None = None
    work = Path(tempfile.mkdtemp(prefix="detector-demo-"))
    printer = EpisodePrinter(show_leads)
    sent = [0]
    started = time.monotonic()
    feeder: threading.Thread | None = None
    server: OpsServer | None = None
    timer: threading.Timer | None = None
    try:
        if not settings.bootstrap_servers:
            broker = EmbeddedBroker()
            broker.start()
            settings = settings.model_copy(
                update={
                    "bootstrap_servers": broker.bootstrap,
                    "state_dir": work / "state",
                    "decisions_topic": settings.decisions_topic or "detector-decisions",
                }
            )
            log.info("embedded broker started", extra={"bootstrap": broker.bootstrap})
        print(f"simulating {days} day(s) of traffic (scale {scale}, seed {seed}) ...", flush=True)
        simulate(work / "sim", days=days, seed=seed, scale=scale)
        events = read_events(work / "sim" / "events.jsonl")
        common = settings.kafka_common()
        admin = KafkaAdminClient(**common)
        create_topics(
            admin,
            {settings.input_topic: DEMO_PARTITIONS, settings.alerts_topic: 1, settings.dead_letter_topic: 1}
            | ({settings.decisions_topic: 1} if settings.decisions_topic else {}),
        )
        admin.close()
        producer = KafkaProducer(**common, linger_ms=20)

        def feed() -> None:
            try:
                sent[0] = produce(producer, settings.input_topic, events, speed=speed, stop=stop)
                if sent[0] == len(events):
                    print(f"producer: all {sent[0]} simulated events sent", flush=True)
            finally:
                producer.close(timeout=5)

        feeder = threading.Thread(target=feed, name="demo-producer", daemon=True)
        metrics = Metrics(CollectorRegistry())
        daemon = Daemon(
            settings,
            partial(build_engine, **engine_args),
            metrics,
            stop=stop,
            on_alert=printer,
            rules=rules,
        )
        if settings.metrics_port:
            try:
                server = OpsServer(
                    metrics.registry, daemon.live, daemon.ready, settings.metrics_host, settings.metrics_port
                ).start()
                print(f"metrics: http://{settings.metrics_host}:{server.port}/metrics", flush=True)
            except OSError as exc:
                if explicit_port:
                    raise
                print(
                    f"metrics: not served, port {settings.metrics_port} is taken ({exc.strerror}); "
                    "pass --metrics-port to choose another",
                    flush=True,
                )
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
        if feeder.is_alive():
            feeder.join(10)
        planned = len(events)
        share = f"{100 * sent[0] / planned:.0f}%" if planned else "-"
        print(
            f"stopped after {time.monotonic() - started:.0f} s: the producer sent {sent[0]} of {planned} "
            f"planned events ({share}); the daemon read {summary.records} records and raised "
            f"{printer.totals()}; {summary.commits} commits",
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
        shutil.rmtree(work, ignore_errors=True)
