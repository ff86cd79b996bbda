"""Sinks: alerts as JSON Lines, rejects to a dead-letter JSON Lines file. Writes are flushed on commit."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import orjson

from detector.contracts import Alert
from detector.decode import Reject


class JsonlSink:
    """Append JSON objects to a file, one per line; ``flush`` makes them durable."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh: IO[bytes] = path.open("wb")
        self.written = 0

    def write_alert(self, alert: Alert) -> None:
        """One alert per line, keys in contract order (deterministic bytes)."""
        self._fh.write(orjson.dumps(alert.to_json_dict()) + b"\n")
        self.written += 1

    def write_reject(self, reject: Reject) -> None:
        """One dead-letter record per line (prompt text already redacted by the decoder)."""
        self._fh.write(orjson.dumps(reject.to_json_dict()) + b"\n")
        self.written += 1

    def flush(self) -> None:
        """Flush to the OS."""
        self._fh.flush()

    def close(self) -> None:
        """Flush and close."""
        self._fh.close()
