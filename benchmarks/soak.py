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
3. **figures**: RSS of this process and its decoding worker (the daemon), and of the broker apart (a
   child process too, but its memory storage keeps every record: it must never be counted as the
   daemon's), sampled every ``--sample`` seconds with the rows of every engine table; events lost
   (sent and acknowledged, never read by the daemon: 0 expected); rejects by reason; the daemon's
   alerts against ``detector replay`` of the exact bytes sent (the producer writes them to a gzip
   file), as recall and extras; and a verdict line: the RSS slope over the second half (MB/min, a
   least-squares fit) and the table rows at start, middle (just before the restart) and end, so a
   growth can be put down to a table or to nothing the engine holds. ``--tracemalloc`` adds the
   Python allocations that grew most between the first and the last sample (polars' and Arrow's
   buffers are outside it: their growth shows in the table rows).

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
import tracemalloc
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


#: A daemon whose RSS grows by less than this over the second half is flat. The engine's tables are
#: full after the first week of event time (7 loops, about a minute); after that a flat daemon's RSS
#: saws by +-50 MB as batches of different sizes come and go, and the least-squares slope of a
#: 4-minute stretch of it lay between -6 and +6 MB/min on the shared machine (a 10-minute run). The
#: broker counted as the daemon's, as the first version of this harness did, gives about +280.
FLAT_MB_PER_MIN = 10.0
#: Seconds the tables take to fill at the soak rate (a week of event time: 7 loops of the base traffic).
FILL_S = 60.0


def slope_mb_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) points, in MB per minute (None with fewer than 3)."""
    if len(points) < 3:
        return None
    n = len(points)
    mt, mm = sum(t for t, _ in points) / n, sum(m for _, m in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return 60 * sum((t - mt) * (m - mm) for t, m in points) / var


def table_rows(daemon: Any) -> dict[str, int]:
    """Rows of every engine table and of what waits on the clock, the merge and the alert book (read
    from the sampling thread: each is one reference read, the processing thread swaps whole frames)."""
    from detector.window.state import TABLES

    engine = daemon.engine
    if engine is None:
        return {}
    rows = {t: getattr(engine.state, t).height for t in TABLES}
    rows["seen"] = engine.state.seen_hashes().len()  # request ids (the table holds a list per tick)
    rows["pending"] = sum(f.height for f in list(engine.clock.pending))
    rows["merge_held"] = daemon.merge.held()
    rows["episodes"] = len(engine.book.episodes)
    return rows


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
                sent.value = n  # exact at the pause: the restart's count of records before it
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


def settings(bootstrap: str, topic: str, state: Path, *, slow: bool = False) -> Any:
    """The daemon's settings; ``slow`` (``--tracemalloc``: every Python allocation traced, snapshots
    that hold the interpreter for seconds) gives the group 10 times the timeouts, else the daemon
    is evicted between polls again and again and reads nothing."""
    from detector.runtime.stream.settings import StreamSettings

    k = 10 if slow else 1
    return StreamSettings(
        bootstrap_servers=bootstrap,
        input_topic=topic,
        alerts_topic="soak-alerts",
        dead_letter_topic="soak-dlq",
        group_id=f"soak-{topic}",
        state_dir=state,
        session_timeout_ms=6000 * k,
        heartbeat_interval_ms=1000 * k,
        max_poll_interval_ms=6000 * k,
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


def grown(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int = 12) -> list[str]:
    """The Python allocation sites that grew most between two snapshots (file:line, KiB, blocks)."""
    stats = after.compare_to(before, "lineno")
    return [
        f"{s.traceback[0].filename}:{s.traceback[0].lineno} {s.size_diff / 1024:+,.0f} KiB {s.count_diff:+,}"
        for s in sorted(stats, key=lambda s: s.size_diff, reverse=True)[:top]
    ]


def verdict(samples: list[dict[str, Any]], restart_at: int | None, seconds: float) -> dict[str, Any]:
    """RSS slopes (MB/min) over the second half of the traffic, the verdict, and the table rows at the
    start, the middle (the last sample before the broker restart) and the end."""
    half = restart_at if restart_at is not None else seconds / 2
    second = [s for s in samples if s["t_s"] > half]

    def slope(key: str, part: list[dict[str, Any]] = second) -> float | None:
        fit = slope_mb_per_min([(s["t_s"], s[key]) for s in part if s[key] is not None])
        return None if fit is None else round(fit, 2)

    # the first half after its first minute (the tables fill with the first week of event time)
    settled = [s for s in samples if FILL_S < s["t_s"] <= half]

    before = [s for s in samples if s["t_s"] <= half and s["rows"]]
    points = {
        "start": next((s for s in samples if s["rows"] and s["read"]), None),
        "middle": before[-1] if before else None,
        "end": samples[-1] if samples else None,
    }
    daemon_slope = slope("daemon_rss_mb")
    return {
        "daemon_mb_per_min": daemon_slope,
        "daemon_first_half_mb_per_min": slope("daemon_rss_mb", settled),
        "worker_mb_per_min": slope("worker_rss_mb"),
        "broker_mb_per_min": slope("broker_rss_mb"),
        "flat": daemon_slope is not None and daemon_slope < FLAT_MB_PER_MIN,
        "second_half_samples": len(second),
        "rss_mb": {k: s["daemon_rss_mb"] if s else None for k, s in points.items()},
        "rows": {k: s["rows"] if s else None for k, s in points.items()},
    }


def verdict_line(v: dict[str, Any]) -> str:
    """One line: flat or growing, the slopes, and each table's rows at start/middle/end."""
    word = "FLAT" if v["flat"] else "GROWING"
    rows = v["rows"]
    tables = list((rows["end"] or rows["middle"] or rows["start"] or {}).keys())
    sizes = ", ".join(
        f"{t} " + "/".join(str((rows[k] or {}).get(t, "-")) for k in ("start", "middle", "end"))
        for t in tables
    )
    rss = "/".join(str(v["rss_mb"][k]) for k in ("start", "middle", "end"))
    return (
        f"verdict: daemon RSS {word} (second half {v['daemon_mb_per_min']} MB/min over "
        f"{v['second_half_samples']} samples, limit {FLAT_MB_PER_MIN}; first half after {FILL_S:.0f} s "
        f"{v['daemon_first_half_mb_per_min']}; decoding worker "
        f"{v['worker_mb_per_min']}, broker apart {v['broker_mb_per_min']}); daemon RSS MB "
        f"start/middle/end {rss}; rows start/middle/end: {sizes}"
    )


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
    ap.add_argument("--tracemalloc", action="store_true", help="Python allocations that grew (slower)")
    a = ap.parse_args()

    from prometheus_client import CollectorRegistry

    from detector.app import build_engine
    from detector.lab.demo.broker import EmbeddedBroker
    from detector.lab.demo.feed import read_events
    from detector.lab.simulate import simulate
    from detector.runtime.metrics import Metrics
    from detector.runtime.replay import replay
    from detector.runtime.stream.daemon import Daemon
    from detector.runtime.workers import pool_pids

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
            settings(broker.bootstrap, "soak-in", work / "state-soak", slow=a.tracemalloc),
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

        if a.tracemalloc:
            tracemalloc.start(1)
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
        traced: tracemalloc.Snapshot | None = None
        while proc.is_alive():
            now = time.monotonic() - t0
            if now >= next_sample:
                next_sample += a.sample
                # the daemon is this process and its decoding worker: not the broker (a child process
                # too, whose memory storage keeps every record) nor the producer
                decoder = daemon.decoder
                pool = decoder._pool if decoder is not None else None
                worker_rss = sum(rss_mb(w) for w in pool_pids(pool)) if pool is not None else 0.0
                bpid = broker.proc.pid if broker.proc is not None else None
                samples.append(
                    {
                        "t_s": round(now),
                        "daemon_rss_mb": round(rss_mb(me) + worker_rss),
                        "worker_rss_mb": round(worker_rss),
                        "broker_rss_mb": round(rss_mb(bpid)) if bpid else None,
                        "sent": sent.value,
                        "read": daemon.summary.records,
                        "ready": daemon.ready(),
                        "rows": table_rows(daemon),
                    }
                )
                print(json.dumps(samples[-1]), flush=True)
                if a.tracemalloc and traced is None and daemon.summary.records:
                    traced = tracemalloc.take_snapshot()
            if not restart and now >= 0.5 * seconds:
                pause.set()
                wait(paused.is_set, 60)
                caught = wait(lambda: daemon.summary.records >= sent.value and not daemon._dirty, 300)
                sent_before, read_before = sent.value, daemon.summary.records
                t_restart = time.monotonic()
                broker.stop()
                went_unready = wait(lambda: not daemon.ready(), 20)
                broker.start()
                make_topics(broker.bootstrap)
                pause.clear()
                ready_again = wait(daemon.ready, 120)
                restart = {
                    "at_s": round(now),
                    "sent_before": sent_before,
                    "read_before": read_before,
                    "caught_up_before": caught,
                    "unready_while_down": went_unready,
                    "ready_again_after_s": round(time.monotonic() - t_restart, 1) if ready_again else None,
                }
                print(json.dumps({"broker_restart": restart}), flush=True)
            time.sleep(0.2)
        proc.join()
        if traced is not None:
            out["tracemalloc_top"] = grown(traced, tracemalloc.take_snapshot())
            tracemalloc.stop()
        total = sent.value
        # after the restart the daemon reads the new log from offset 0: its next offsets there count
        # what it read of it (records read under the old topic id before the reset are read again,
        # so the daemon's record count alone would hide a loss)
        sent_before = restart.get("sent_before", 0)

        def new_log_read() -> int:
            return sum(dict(daemon.merge.next_offset).values()) if restart else daemon.summary.records

        caught = wait(lambda: new_log_read() >= total - sent_before, 900)
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
            "events_lost": max(0, sent_before - restart.get("read_before", 0))
            + max(0, total - sent_before - new_log_read()),
            # read twice: fetched from the new log at the old offsets before the reset, then again
            "read_again": daemon.summary.records - restart.get("read_before", 0) - new_log_read()
            if restart
            else 0,
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
        out["verdict"] = verdict(samples, restart.get("at_s"), seconds)
    ref_path = work / "replay-alerts.jsonl"
    replay([sent_file], build_engine(), ref_path)
    ref = {(d["alert_id"], d["revision"]) for d in map(orjson.loads, ref_path.read_bytes().splitlines())}
    out["replay_alerts"] = len(ref)
    out["daemon_alerts"] = len(alerts)
    out["recall_vs_replay"] = round(len(alerts & ref) / len(ref), 4) if ref else None
    out["extra_vs_replay"] = len(alerts - ref)
    print(json.dumps({k: v for k, v in out.items() if k not in ("rss_samples", "verdict")}, indent=1))
    if "verdict" in out:
        print(verdict_line(out["verdict"]), flush=True)
    (work / "soak.json").write_text(json.dumps(out, indent=1))
    sys.exit(0 if out["events_lost"] == 0 else 1)


if __name__ == "__main__":
    main()
