"""Sinks: one small protocol for every output, and the sinks that need no broker.

A sink takes one stream of records (alerts, dead letters; a new stream such as decisions is one more
``SinkGroup`` on ``Outputs``) through four calls, as quix-streams' ``sinks/base/sink.py`` does:

- ``setup()`` once before the first record (open the file, check the URL);
- ``add(record)`` per record: may buffer or send asynchronously; raises ``SinkError`` when a send is
  refused at once;
- ``flush()`` makes everything added so far durable or delivered, and raises ``SinkError`` if any of it
  failed. The commit protocol flushes before it checkpoints, so a failed flush aborts the checkpoint;
- ``close()`` releases what ``setup`` took; calling it twice is harmless.

A record is anything with ``to_json_dict()`` (``Alert``, ``DeadLetter``). Replay and the daemon build
their outputs from these classes; the Kafka sinks live beside the consumer in ``detector.io.kafka``.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeVar, runtime_checkable

import orjson

from detector.contracts import Alert
from detector.decide import Decision
from detector.decode import Reject
from detector.errors import DetectorError


class SinkError(DetectorError, RuntimeError):
    """A record was not delivered (refused at once, or not acknowledged by ``flush``)."""


class SinkUnverified(SinkError):
    """Delivery cannot be confirmed now (the broker does not answer a check); nothing is known lost.
    The commit is skipped and tried again later; the sink keeps what it has to verify."""


class Record(Protocol):
    """What a sink can write: a JSON-ready dict, keys in contract order (deterministic bytes)."""

    def to_json_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Record)
R_contra = TypeVar("R_contra", bound=Record, contravariant=True)


@runtime_checkable
class Sink(Protocol[R_contra]):
    """One output for one stream of records (see the module doc for the contract)."""

    def setup(self) -> None: ...

    def add(self, record: R_contra) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


#: The alert stream's sink type (JSON Lines, Kafka, webhook, in-memory).
AlertSink = Sink[Alert]


@dataclass(frozen=True)
class DeadLetter:
    """A rejected input record and where it came from (the Kafka key and topic/partition/offset)."""

    reject: Reject
    key: bytes | None = None
    source: tuple[str, int, int] | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The reject's JSON form (structure only: the decoder never keeps record content)."""
        return dict(self.reject.to_json_dict())


class JsonlSink(Generic[R]):
    """JSON objects to a file, one per line; ``flush`` hands them to the OS.

    ``append``: keep what the file holds (the daemon's alert copy); otherwise start it empty (replay).
    """

    def __init__(self, path: Path, *, append: bool = False) -> None:
        self.path = path
        self.append = append
        self._fh: IO[bytes] | None = None
        self.written = 0

    def setup(self) -> None:
        """Create the folder and open the file."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("ab" if self.append else "wb")
        except OSError as exc:
            raise SinkError(f"cannot open {self.path}: {type(exc).__name__}") from exc

    def add(self, record: R) -> None:
        """One record per line."""
        if self._fh is None:
            raise SinkError(f"{type(self).__name__}: add before setup")
        try:
            self._fh.write(orjson.dumps(record.to_json_dict()) + b"\n")
        except OSError as exc:
            raise SinkError(f"write to {self.path} failed: {type(exc).__name__}") from exc
        self.written += 1

    def flush(self) -> None:
        """Flush to the OS."""
        if self._fh is not None:
            try:
                self._fh.flush()
            except OSError as exc:
                raise SinkError(f"flush of {self.path} failed: {type(exc).__name__}") from exc

    def close(self) -> None:
        """Flush and close."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class ListSink(Generic[R]):
    """Records kept in memory (tests, and callers that want the run's alerts back)."""

    def __init__(self) -> None:
        self.records: list[R] = []

    def setup(self) -> None:
        """Nothing to open."""

    def add(self, record: R) -> None:
        """Keep the record."""
        self.records.append(record)

    def flush(self) -> None:
        """Nothing to deliver."""

    def close(self) -> None:
        """Nothing to release (the records stay readable)."""


class CallbackSink(Generic[R]):
    """Each record's JSON dict handed to a function as it is added (the demo's printer, test hooks).

    An exception from the function propagates from ``add`` unchanged: the batch fails.
    """

    def __init__(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self.fn = fn

    def setup(self) -> None:
        """Nothing to open."""

    def add(self, record: R) -> None:
        """Call the function."""
        self.fn(record.to_json_dict())

    def flush(self) -> None:
        """Nothing to deliver."""

    def close(self) -> None:
        """Nothing to release."""


class WebhookSink(Generic[R]):
    """Each record POSTed as JSON on ``flush`` (in order; a failure keeps the rest queued).

    The URL is its own credential: errors name only the exception type (and HTTP status), never the
    URL, and drop the chained cause (whose message can quote it).
    """

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._queue: list[bytes] = []

    def setup(self) -> None:
        """Refuse a URL that is not http(s) before the first record."""
        if not self.url.startswith(("http://", "https://")):
            raise SinkError("webhook URL must be http(s)")

    def add(self, record: R) -> None:
        """Queue the record for the next flush."""
        self._queue.append(orjson.dumps(record.to_json_dict()))

    def flush(self) -> None:
        """Post every queued record; raise ``SinkError`` on the first failure."""
        while self._queue:
            self._post(self._queue[0])
            self._queue.pop(0)

    def _post(self, body: bytes) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise SinkError("webhook URL must be http(s)")
        req = urllib.request.Request(  # noqa: S310 - scheme checked above
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                resp.read()
        except Exception as exc:  # not only OSError: http.client's InvalidURL is a ValueError
            # the cause is dropped: its message can quote the URL, whose path, query or user:pass@ is the
            # webhook's credential (``nonnumeric port: 'tok@host'``), and log.exception prints the chain
            status = f" {exc.code}" if isinstance(exc, urllib.error.HTTPError) else ""
            raise SinkError(f"webhook failed: {type(exc).__name__}{status}") from None

    def close(self) -> None:
        """Drop what was never flushed (a run that stops without a commit raises it again)."""
        self._queue.clear()


@dataclass
class SinkGroup(Generic[R]):
    """Every sink of one record stream: ``add`` fans a record out to each, in order."""

    sinks: list[Sink[R]] = field(default_factory=list)

    def add(self, record: R) -> None:
        """Hand the record to every sink."""
        for sink in self.sinks:
            sink.add(record)

    def __iter__(self) -> Iterator[Sink[R]]:
        return iter(self.sinks)


@dataclass
class Outputs:
    """The record streams a runner writes: alerts and dead letters (add a stream as one more group).

    ``flush`` goes through the dead letters first, then the alerts, so every Kafka acknowledgement is
    checked before any webhook is posted. ``closers`` run after every sink is closed (a Kafka producer
    the sinks share).
    """

    alerts: SinkGroup[Alert] = field(default_factory=SinkGroup)
    dead_letters: SinkGroup[DeadLetter] = field(default_factory=SinkGroup)
    closers: list[Callable[[], None]] = field(default_factory=list)
    #: Response decisions and lifts (docs/response.md), flushed after the alerts they come from.
    decisions: SinkGroup[Decision] = field(default_factory=SinkGroup)

    def all(self) -> list[Sink[Any]]:
        """Every sink, in flush order."""
        return [*self.dead_letters, *self.alerts, *self.decisions]

    def setup(self) -> None:
        """Set every sink up."""
        for sink in self.all():
            sink.setup()

    def flush(self) -> None:
        """Flush every sink; the first ``SinkError`` propagates (the commit then stops)."""
        for sink in self.all():
            sink.flush()

    def close(self) -> None:
        """Close every sink, then run the closers (each runs even if one before it failed)."""
        try:
            for sink in self.all():
                sink.close()
        finally:
            for closer in self.closers:
                closer()
