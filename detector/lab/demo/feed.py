"""Produce gateway events (JSON Lines) to the input topic, keyed by account id, at a chosen pace.

Used by ``detector demo`` (live simulated traffic), the tests and the benchmark. ``speed`` is event-time
seconds per wall second (0: as fast as the producer goes). Each record's Kafka timestamp is its event
time; the producer's send time is carried in the ``produced_at`` header (ms) for latency figures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson


def read_events(path: Path) -> list[tuple[bytes, bytes, int]]:
    """(key, value, event time ms) for every line of a JSON Lines file of gateway events."""
    out: list[tuple[bytes, bytes, int]] = []
    with path.open("rb") as fh:
        for line in fh:
            line = line.rstrip(b"\n")
            if not line:
                continue
            doc = orjson.loads(line)
            ts = datetime.fromisoformat(doc["ts"].replace("Z", "+00:00"))
            out.append((str(doc["account_id"]).encode(), line, int(ts.timestamp() * 1000)))
    return out


def paced(events: list[tuple[bytes, bytes, int]], speed: float) -> Iterator[tuple[bytes, bytes, int]]:
    """Yield events, sleeping so that event time advances ``speed`` times faster than wall time."""
    if not events:
        return
    t0_event = events[0][2]
    t0_wall = time.monotonic()
    for ev in events:
        if speed > 0:
            due = t0_wall + (ev[2] - t0_event) / 1000.0 / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield ev


def produce(
    producer: Any,
    topic: str,
    events: list[tuple[bytes, bytes, int]],
    speed: float = 0.0,
    stop: threading.Event | None = None,
) -> int:
    """Send ``events`` to ``topic``; return how many were sent (fewer if ``stop`` was set)."""
    n = 0
    for key, value, ts_ms in paced(events, speed):
        if stop is not None and stop.is_set():
            break
        now_ms = str(int(time.time() * 1000)).encode()
        producer.send(topic, key=key, value=value, timestamp_ms=ts_ms, headers=[("produced_at", now_ms)])
        n += 1
    producer.flush()
    return n


def create_topics(admin: Any, topics: dict[str, int]) -> None:
    """Create topics (name -> partitions) that do not exist yet."""
    from kafka.admin import NewTopic

    existing = set(admin.list_topics())
    new = [NewTopic(name, parts, 1) for name, parts in topics.items() if name not in existing]
    if new:
        admin.create_topics(new)
