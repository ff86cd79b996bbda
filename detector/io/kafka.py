"""Kafka sinks: alerts to a topic, rejects to a dead-letter topic (the ``Sink`` protocol of
``detector.io.sinks``). Sends are asynchronous; ``flush`` waits for every acknowledgement and raises if
any send failed, so the commit function never checkpoints past a record that was not delivered.

Both sinks may share one producer (the caller owns it and closes it); flushing either waits for all of
its sends, and each raises only for the failures of its own topic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from detector.contracts import Alert
from detector.decide import Decision
from detector.io.sinks import DeadLetter, SinkError


class _KafkaSink:
    """Shared parts: the producer, the topic, failures recorded by the send callbacks."""

    what = "record"

    def __init__(self, producer: Any, topic: str, flush_timeout_s: float = 30.0) -> None:
        self.producer = producer
        self.topic = topic
        self.flush_timeout_s = flush_timeout_s
        self._failures: list[str] = []

    def _errback(self) -> Callable[[BaseException], None]:
        def record(exc: BaseException) -> None:
            self._failures.append(f"{self.what}: {type(exc).__name__}")

        return record

    def _send(self, **kw: Any) -> None:
        try:  # send raises at once on a full buffer or missing metadata (max_block_ms), a closed producer
            future = self.producer.send(self.topic, **kw)
        except Exception as exc:
            raise SinkError(f"{self.what} send failed: {type(exc).__name__}") from exc
        future.add_errback(self._errback())

    def setup(self) -> None:
        """Nothing to open: the producer is the caller's."""

    def flush(self) -> None:
        """Wait for every send; raise ``SinkError`` if the producer or any send of this topic failed."""
        try:
            self.producer.flush(timeout=self.flush_timeout_s)
        except Exception as exc:
            raise SinkError(f"producer flush failed: {type(exc).__name__}") from exc
        if self._failures:
            failures, self._failures = self._failures, []
            raise SinkError(f"{len(failures)} sends failed, first: {failures[0]}")

    def close(self) -> None:
        """Nothing to release: the producer is the caller's."""


class KafkaAlertSink(_KafkaSink):
    """Alerts as JSON, keyed by their subject (account or cluster id)."""

    what = "alert"

    def add(self, record: Alert) -> None:
        """Send one alert."""
        self._send(key=record.subject.encode(), value=orjson.dumps(record.to_json_dict()))


class KafkaDeadLetterSink(_KafkaSink):
    """Rejected records: their structural payload (never the record itself), the reason in headers."""

    what = "dead-letter"

    def add(self, record: DeadLetter) -> None:
        """Send one dead letter, keyed by the input record's key."""
        reject, source = record.reject, record.source or ("", -1, -1)
        headers = [
            ("reason", reject.reason.encode()),
            ("field", (reject.field or "").encode()),
            ("detail", reject.detail.encode()[:1024]),
            ("position", reject.position.encode()),
            ("source.topic", source[0].encode()),
            ("source.partition", str(source[1]).encode()),
            ("source.offset", str(source[2]).encode()),
        ]
        self._send(key=record.key, value=reject.raw, headers=headers)


class KafkaDecisionSink(_KafkaSink):
    """Response decisions and lifts as JSON, keyed by account id (the latest record per key wins)."""

    what = "decision"

    def add(self, record: Decision) -> None:
        """Send one decision or lift."""
        self._send(key=record.account_id.encode(), value=orjson.dumps(record.to_json_dict()))


class KafkaKeyedBytesSink(_KafkaSink):
    """Records already encoded: (key, value) bytes as they are, with headers when given (the cluster
    stage's population contexts and their signatures)."""

    what = "population context"
    _size = 0

    def add(self, record: tuple[bytes, bytes] | tuple[bytes, bytes, list[tuple[str, bytes]]]) -> None:
        """Send one keyed record (no headers: sent without any, as before signatures)."""
        key, value = record[0], record[1]
        headers = record[2] if len(record) == 3 else None
        self._size = len(value)  # named when the record is refused for its size
        try:
            if headers:
                self._send(key=key, value=value, headers=headers)
            else:
                self._send(key=key, value=value)
        except SinkError as exc:  # over the producer's own max_request_size: refused at once
            raise SinkError(f"{exc}{_too_large(exc.__cause__, len(value))}") from exc.__cause__

    def _errback(self) -> Callable[[BaseException], None]:
        size, record = self._size, super()._errback()

        def named(exc: BaseException) -> None:
            record(exc)
            if hint := _too_large(exc, size):
                self._failures[-1] += hint

        return named


def _too_large(exc: BaseException | None, size: int) -> str:
    """What to raise when a record was refused for its size (the broker's or the producer's limit)."""
    if type(exc).__name__ != "MessageSizeTooLargeError":
        return ""
    return (
        f" (a record of {size} bytes: raise max.message.bytes on the topic, and the broker's "
        "message.max.bytes, above it; the stages send up to 64 MB)"
    )
