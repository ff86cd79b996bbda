"""Soak: the daemon at a share (80%) of its measured maximum for a while, with one future-dated event,
one poison record and one broker restart injected (issue 14).

In one run, on the embedded broker:

1. **maximum**: a backlog of ``--calibrate`` events is produced, and a daemon (decoding worker, the
   shipped rules) drains it; events / wall seconds from its first record to its final checkpoint;
2. **soak**: a producer process sends the simulated traffic, looped (each loop shifted by the base
   span in event time, request ids suffixed), at ``--fraction`` of that rate for ``--minutes``, to a
   daemon in this process. At 25% of the time it sends a copy of a normal event dated one day ahead of
   its Kafka timestamp, at 40% a poison record (zlib magic), at 50% it pauses: once the daemon has read
   everything and checkpointed, the broker is restarted empty, the topics created again, and the
   traffic resumes (the daemon must notice the recreated topic and read the new log from offset 0);
3. **figures**: RSS of this process and its decoding worker (the daemon; the broker is another
   process, reported apart: its memory storage keeps every record), sampled every ``--sample``
   seconds; events lost (sent and acknowledged, never read by the daemon: 0 expected); rejects by
   reason; and the daemon's alerts against ``detector replay`` of the exact bytes sent (the producer
   writes them to a gzip file), as recall and extras.

    .venv/bin/python benchmarks/soak.py --minutes 2          # development
    nice -n 5 .venv/bin/python benchmarks/soak.py --minutes 20
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

Event = tuple[bytes | None, bytes, int]
PARTITIONS = 4
DAY_MS = 86_400_000
POISON = b"x\x9c soak poison record: zlib magic, not JSON"


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """Child process ids (the decoding worker)."""
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def looped(events: list[Event]) -> Iterator[Event]:
    """The events again and again, each loop shifted by the base span (whole days) in event time, its
    request ids suffixed with the loop number (new requests, the same accounts). The two fields are
    spliced into each record's bytes (a template made once), not re-encoded: the producer must keep
    ahead of the daemon on a shared machine."""
    span = ((events[-1][2] - events[0][2]) // DAY_MS + 1) * DAY_MS
    templates = []
    for key, value, ms in events:
        doc = orjson.loads(value)
        rid, ts = f'"request_id":"{doc["request_id"]}"'.encode(), f'"ts":"{doc["ts"]}"'.encode()
        i, j = value.index(rid), value.index(ts)
        assert i < j, "request_id before ts, as the simulator writes them"
        templates.append(
            (key, ms, value[:i], doc["request_id"].encode(), value[i + len(rid) : j], value[j + len(ts) :])
        )
    k = 0
    while True:
        if k == 0:
            yield from events
        else:
            suffix = f"-l{k}".encode()
            for key, ms, head, rid, mid, tail in templates:
                t = ms + k * span
                body = b"".join(
                    (head, b'"request_id":"', rid, suffix, b'"', mid, b'"ts":"', _iso(t).encode(), b'"', tail)
                )
                yield key, body, t
        k += 1


def future_copy(event: Event) -> Event:
    """A copy of a normal event whose body says one day after its Kafka timestamp."""
    key, value, ms = event
    doc = orjson.loads(value)
    doc["ts"] = _iso(ms + DAY_MS)
    doc["request_id"] = "soak-future-dated"
    return key, orjson.dumps(doc), ms


def produce_paced(
    bootstrap: str,
    topic: str,
    base: str,
    rate: float,
    seconds: float,
    out: str,
    pause: Any,
    paused: Any,
    sent: Any,
    failed: Any,
) -> None:
    """The producer process: looped traffic at ``rate`` per second for ``seconds`` (pauses excluded),
    the injections, and every value sent written to ``out`` (gzip JSON Lines, for the replay)."""
    from kafka import KafkaProducer

    from detector.lab.demo.feed import read_events

    events = read_events(Path(base))

    def errback(exc: BaseException) -> None:
        with failed.get_lock():
            failed.value += 1

    def new_producer() -> Any:
        return KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all", enable_idempotence=False)

    producer = new_producer()
    injections = {0.25: "future", 0.40: "poison"}
    start = time.monotonic()
    paused_for = 0.0
    n = 0
    with gzip.open(out, "wb", compresslevel=1) as fh:
        for key, value, ms in looped(events):
            active = time.monotonic() - start - paused_for
            if active >= seconds:
                break
            if pause.is_set():
                producer.flush()
                producer.close()
                t0 = time.monotonic()
                paused.set()
                while pause.is_set():
                    time.sleep(0.05)
                paused.clear()
                paused_for += time.monotonic() - t0
                producer = new_producer()
            for at, what in list(injections.items()):
                if active >= at * seconds:
                    del injections[at]
                    extra = future_copy((key, value, ms)) if what == "future" else (None, POISON, ms)
                    producer.send(topic, key=extra[0], value=extra[1], timestamp_ms=ms).add_errback(errback)
                    fh.write(extra[1] + b"\n")
                    n += 1
            producer.send(topic, key=key, value=value, timestamp_ms=ms).add_errback(errback)
            fh.write(value + b"\n")
            n += 1
            if n % 500 == 0:
                sent.value = n
                ahead = n / rate - (time.monotonic() - start - paused_for)
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush()
        producer.close()
    sent.value = n


def measure_max(broker: Any, events: list[Event], n: int, work: Path) -> tuple[float, int]:
    """Events per second of a daemon draining a backlog of ``n`` looped events."""
    from kafka import KafkaProducer
    from prometheus_client import CollectorRegistry

    from detector.app import build_engine
    from detector.lab.bench.stream import BenchProbe
    from detector.runtime.metrics import Metrics
    from detector.runtime.stream.daemon import Daemon

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20)
    it = looped(events)
    for _ in range(n):
        key, value, ms = next(it)
        producer.send("soak-max", key=key, value=value, timestamp_ms=ms)
    producer.flush()
    producer.close()
    probe = BenchProbe()
    daemon = Daemon(
        settings(broker.bootstrap, "soak-max", work / "state-max"),
        build_engine,
        Metrics(CollectorRegistry()),
        drain_when_idle=True,
        probe=probe,
    )
    probe.daemon = daemon
    summary = daemon.run()
    assert probe.first_record_at is not None and probe.finished_at is not None
    return n / (probe.finished_at - probe.first_record_at), summary.records


def settings(bootstrap: str, topic: str, state: Path) -> Any:
    from detector.runtime.stream.settings import StreamSettings

    return StreamSettings(
        bootstrap_servers=bootstrap,
        input_topic=topic,
        alerts_topic="soak-alerts",
        dead_letter_topic="soak-dlq",
        group_id=f"soak-{topic}",
        state_dir=state,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_poll_interval_ms=6000,
        poll_timeout_ms=200,
    )


def make_topics(bootstrap: str) -> None:
    from kafka import KafkaAdminClient

    from detector.lab.demo.feed import create_topics

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        create_topics(admin, {"soak-max": PARTITIONS, "soak-in": PARTITIONS, "soak-alerts": 1, "soak-dlq": 1})
    finally:
        admin.close()


def wait(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--fraction", type=float, default=0.8)
    ap.add_argument("--calibrate", type=int, default=150_000, help="backlog events for the maximum")
    ap.add_argument("--days", type=float, default=0.5)
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--work", type=Path, default=None)
    a = ap.parse_args()

    from prometheus_client import CollectorRegistry

    from detector.app import build_engine
    from detector.lab.demo.broker import EmbeddedBroker
    from detector.lab.demo.feed import read_events
    from detector.lab.simulate import simulate
    from detector.runtime.metrics import Metrics
    from detector.runtime.replay import replay
    from detector.runtime.stream.daemon import Daemon

    work = a.work or Path(tempfile.mkdtemp(prefix="detector-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    simulate(work / "sim", days=a.days, seed=a.seed, scale=a.scale)
    base = work / "sim" / "events.jsonl"
    events = read_events(base)
    out: dict[str, Any] = {"base_events": len(events), "minutes": a.minutes, "fraction": a.fraction}
    print(f"base: {len(events)} events ({a.days} days, scale {a.scale}); work dir {work}", flush=True)
    with EmbeddedBroker() as broker:
        make_topics(broker.bootstrap)
        max_rate, _ = measure_max(broker, events, a.calibrate, work)
        rate = a.fraction * max_rate
        out |= {"max_events_per_s": round(max_rate), "soak_events_per_s": round(rate)}
        print(f"maximum: {max_rate:,.0f} events/s; soak at {rate:,.0f} events/s", flush=True)

        alerts: set[tuple[str, int]] = set()
        daemon = Daemon(
            settings(broker.bootstrap, "soak-in", work / "state-soak"),
            build_engine,
            Metrics(CollectorRegistry()),
            on_alert=lambda d: alerts.add((d["alert_id"], d["revision"])),
        )
        errors: list[BaseException] = []

        def run() -> None:
            try:
                daemon.run()
            except BaseException as exc:
                errors.append(exc)

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        wait(daemon.ready, 60)
        ctx = mp.get_context("spawn")
        pause, paused = ctx.Event(), ctx.Event()
        sent, failed = ctx.Value("q", 0), ctx.Value("q", 0)
        sent_file = work / "sent.jsonl.gz"
        seconds = a.minutes * 60
        proc = ctx.Process(
            target=produce_paced,
            args=(
                broker.bootstrap,
                "soak-in",
                str(base),
                rate,
                seconds,
                str(sent_file),
                pause,
                paused,
                sent,
                failed,
            ),
        )
        t0 = time.monotonic()
        proc.start()
        samples: list[dict[str, Any]] = []
        restart: dict[str, Any] = {}
        me = os.getpid()
        next_sample = 0.0
        while proc.is_alive():
            now = time.monotonic() - t0
            if now >= next_sample:
                next_sample += a.sample
                daemon_rss = rss_mb(me) + sum(rss_mb(c) for c in children(me) if c != proc.pid)
                bpid = broker.proc.pid if broker.proc is not None else None
                samples.append(
                    {
                        "t_s": round(now),
                        "daemon_rss_mb": round(daemon_rss),
                        "broker_rss_mb": round(rss_mb(bpid)) if bpid else None,
                        "sent": sent.value,
                        "read": daemon.summary.records,
                        "ready": daemon.ready(),
                    }
                )
                print(json.dumps(samples[-1]), flush=True)
            if not restart and now >= 0.5 * seconds:
                pause.set()
                wait(paused.is_set, 60)
                caught = wait(lambda: daemon.summary.records >= sent.value and not daemon._dirty, 300)
                t_restart = time.monotonic()
                broker.stop()
                went_unready = wait(lambda: not daemon.ready(), 20)
                broker.start()
                make_topics(broker.bootstrap)
                pause.clear()
                ready_again = wait(daemon.ready, 120)
                restart = {
                    "at_s": round(now),
                    "caught_up_before": caught,
                    "unready_while_down": went_unready,
                    "ready_again_after_s": round(time.monotonic() - t_restart, 1) if ready_again else None,
                }
                print(json.dumps({"broker_restart": restart}), flush=True)
            time.sleep(0.2)
        proc.join()
        total = sent.value
        caught = wait(lambda: daemon.summary.records >= total, 900)
        daemon.drain_when_idle = True
        runner.join(300)
        if errors:
            raise errors[0]
        reg = daemon.metrics.registry

        def sample(name: str, labels: dict[str, str] | None = None) -> int:
            return int(reg.get_sample_value(name, labels or {}) or 0)

        out |= {
            "sent": total,
            "send_failures": failed.value,
            "read": daemon.summary.records,
            "events_lost": total - daemon.summary.records,
            "caught_up_at_end": caught,
            "rejects": {
                m.labels["reason"]: int(m.value)
                for f in reg.collect()
                if f.name == "detector_events_rejected"
                for m in f.samples
                if m.name == "detector_events_rejected_total" and m.value
            },
            "input_topic_resets": sample("detector_input_topic_resets_total", {"cause": "topic_id"}),
            "broker_restart": restart,
            "rss_samples": samples,
        }
    rss = [s["daemon_rss_mb"] for s in samples]
    if rss:
        half = len(rss) // 2
        out["daemon_rss_mb"] = {
            "min": min(rss),
            "max": max(rss),
            "first_half_max": max(rss[: half or 1]),
            "second_half_max": max(rss[half:]),
        }
    ref_path = work / "replay-alerts.jsonl"
    replay([sent_file], build_engine(), ref_path)
    ref = {(d["alert_id"], d["revision"]) for d in map(orjson.loads, ref_path.read_bytes().splitlines())}
    out["replay_alerts"] = len(ref)
    out["daemon_alerts"] = len(alerts)
    out["recall_vs_replay"] = round(len(alerts & ref) / len(ref), 4) if ref else None
    out["extra_vs_replay"] = len(alerts - ref)
    print(json.dumps({k: v for k, v in out.items() if k != "rss_samples"}, indent=1))
    (work / "soak.json").write_text(json.dumps(out, indent=1))
    sys.exit(0 if out["events_lost"] == 0 else 1)


if __name__ == "__main__":
    main()
