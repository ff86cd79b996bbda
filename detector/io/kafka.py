"""Stream sinks: alerts to a Kafka topic (and optionally JSON Lines and a webhook), rejects to a dead-letter
topic. Sends are asynchronous; ``flush`` waits for every acknowledgement and raises if any send failed,
so the commit function never checkpoints past an alert that was not delivered.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from detector.contracts import Alert
from detector.decode import Reject

log = logging.getLogger("detector.stream")


class SinkError(RuntimeError):
    """An alert or dead-letter record was not acknowledged."""


class StreamSinks:
    """Where alerts and rejects go. One Kafka producer serves both topics."""

    def __init__(
        self,
        producer: Any,
        alerts_topic: str,
        dead_letter_topic: str,
        alerts_file: Path | None = None,
        webhook_url: str | None = None,
        webhook_timeout_s: float = 5.0,
        on_alert: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.producer = producer
        self.alerts_topic = alerts_topic
        self.dead_letter_topic = dead_letter_topic
        self._file = alerts_file.open("ab") if alerts_file else None
        if alerts_file:
            alerts_file.parent.mkdir(parents=True, exist_ok=True)
        self._webhook = webhook_url
        self._webhook_timeout = webhook_timeout_s
        self._webhook_queue: list[bytes] = []
        self._on_alert = on_alert
        self._failures: list[str] = []

    def _errback(self, what: str) -> Callable[[BaseException], None]:
        def record(exc: BaseException) -> None:
            self._failures.append(f"{what}: {type(exc).__name__}")

        return record

    def alert(self, alert: Alert) -> None:
        """Send one alert (``emitted_at`` set now), keyed by its subject."""
        doc = alert.model_copy(update={"emitted_at": datetime.now(UTC)}).to_json_dict()
        value = orjson.dumps(doc)
        try:  # send raises at once on a full buffer or missing metadata (max_block_ms), a closed producer
            future = self.producer.send(self.alerts_topic, key=alert.subject.encode(), value=value)
            future.add_errback(self._errback("alert"))
            if self._file:
                self._file.write(value + b"\n")
        except Exception as exc:
            raise SinkError(f"alert send failed: {type(exc).__name__}") from exc
        if self._webhook:
            self._webhook_queue.append(value)
        if self._on_alert:
            self._on_alert(doc)

    def reject(self, reject: Reject, key: bytes | None, source: tuple[str, int, int]) -> None:
        """Send one reject (raw bytes with ``prompt.text`` already redacted), the reason in headers."""
        headers = [
            ("reason", reject.reason.encode()),
            ("field", (reject.field or "").encode()),
            ("detail", reject.detail.encode()[:1024]),
            ("position", reject.position.encode()),
            ("source.topic", source[0].encode()),
            ("source.partition", str(source[1]).encode()),
            ("source.offset", str(source[2]).encode()),
        ]
        try:
            future = self.producer.send(self.dead_letter_topic, key=key, value=reject.raw, headers=headers)
        except Exception as exc:
            raise SinkError(f"dead-letter send failed: {type(exc).__name__}") from exc
        future.add_errback(self._errback("dead-letter"))

    def flush(self, timeout_s: float) -> None:
        """Wait for every send; post queued webhook calls; raise ``SinkError`` on any failure."""
        try:
            self.producer.flush(timeout=timeout_s)
        except Exception as exc:
            raise SinkError(f"producer flush failed: {type(exc).__name__}") from exc
        if self._failures:
            failures, self._failures = self._failures, []
            raise SinkError(f"{len(failures)} sends failed, first: {failures[0]}")
        if self._file:
            self._file.flush()
        while self._webhook_queue:
            self._post(self._webhook_queue[0])
            self._webhook_queue.pop(0)

    def _post(self, body: bytes) -> None:
        assert self._webhook is not None
        if not self._webhook.startswith(("http://", "https://")):
            raise SinkError("webhook URL must be http(s)")
        req = urllib.request.Request(  # noqa: S310 - scheme checked above
            self._webhook, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self._webhook_timeout) as resp:  # noqa: S310
                resp.read()
        except Exception as exc:  # not only OSError: http.client's InvalidURL is a ValueError
            # the cause is dropped: its message can quote the URL, whose path, query or user:pass@ is the
            # webhook's credential (``nonnumeric port: 'tok@host'``), and log.exception prints the chain
            status = f" {exc.code}" if isinstance(exc, urllib.error.HTTPError) else ""
            raise SinkError(f"webhook failed: {type(exc).__name__}{status}") from None

    def close(self) -> None:
        """Close the JSON Lines file (the producer belongs to the caller)."""
        if self._file:
            self._file.close()
            self._file = None
