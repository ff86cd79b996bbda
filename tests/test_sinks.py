"""Conformance checks run on every sink class (river's ``checks/`` style).

Every class under ``detector.io`` that has ``setup``/``add``/``flush``/``close`` is found on its own; each
must have a harness here (how to build it, and how to read back what it delivered), and then gets every
check: records delivered once and in order after ``flush``, repeated flushes and closes harmless, a sink
that cannot deliver raising ``SinkError`` (never something else, never silently). A new sink class fails
``test_every_sink_has_a_harness`` until it gets one, and then runs every check without a new test.
The Kafka sinks talk to the real embedded broker.
"""

from __future__ import annotations

import http.server
import importlib
import inspect
import itertools
import pkgutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kafka_broker as kb
import orjson
import pytest

import detector.io
from detector.contracts import Alert, Reason
from detector.decode import Reject
from detector.io.kafka import KafkaAlertSink, KafkaDeadLetterSink, KafkaDecisionSink, KafkaKeyedBytesSink
from detector.io.sinks import CallbackSink, DeadLetter, JsonlSink, ListSink, Sink, SinkError, WebhookSink

T0 = datetime(2026, 2, 10, 12, 0, 0, tzinfo=UTC)


def _sink_classes() -> set[type]:
    """Every concrete sink class defined in a module of ``detector.io``."""
    found: set[type] = set()
    for info in pkgutil.walk_packages(detector.io.__path__, "detector.io."):
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or name.startswith("_") or cls is Sink:
                continue
            if all(callable(getattr(cls, m, None)) for m in ("setup", "add", "flush", "close")):
                found.add(cls)
    return found


def _alerts() -> list[Alert]:
    return [
        Alert(
            alert_id=f"a-{i}",
            revision=1 + i % 2,
            kind="account",
            subject=f"acct_{i}",
            account_ids=[f"acct_{i}"],
            severity="high",
            score=0.9,
            first_event_ts=T0,
            detected_event_ts=T0 + timedelta(minutes=i),
            reasons=[Reason(source="rule", name="cot_harvest", detail="share_cot=0.97 >= 0.8")],
            evidence={"requests": 100 + i},
        )
        for i in range(5)
    ]


def _dead_letters() -> list[DeadLetter]:
    return [
        DeadLetter(Reject("not_json", None, "bad", f"in/0@{i}", b"{not json", i), b"acct_x", ("in", 0, i))
        for i in range(4)
    ]


def _keyed_bytes() -> list[tuple[bytes, bytes]]:
    """Records already encoded, as the cluster stage sends its population contexts."""
    return [(f"context|{a.alert_id}".encode(), orjson.dumps(a.to_json_dict())) for a in _alerts()]


def _expected(record: Any) -> tuple[Any, ...]:
    if isinstance(record, tuple):  # (key, value) bytes: the key and the record it carries
        return (record[0], *_identity(orjson.loads(record[1])))
    return _identity(record.to_json_dict())


def _decisions() -> list[Any]:
    from detector.decide import DecisionBook, load_policy

    return DecisionBook(load_policy()).on_alerts(_alerts())


def _identity(doc: dict[str, Any]) -> tuple[Any, ...]:
    """What names one record: an alert by (id, revision), a dead letter by its position, a decision
    by its id."""
    if "decision_id" in doc:
        return (doc["decision_id"],)
    return (doc["alert_id"], doc["revision"]) if "alert_id" in doc else (doc["position"],)


@dataclass
class Harness:
    """A sink under test, what it takes, and how to read back what it delivered."""

    sink: Any
    records: list[Any]
    delivered: Callable[[], list[tuple[Any, ...]]]
    #: A sink of the same class that cannot deliver (None: it has no way to fail).
    broken: Any = None


class _Collector(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes]
    status = 200

    def do_POST(self) -> None:
        type(self).bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def broker() -> Iterator[kb.EmbeddedBroker]:
    yield from kb.broker()


_topics = itertools.count()


def _kafka(cls: type, records: list[Any], bootstrap: str) -> Harness:
    from kafka import KafkaAdminClient, KafkaProducer

    from detector.lab.demo.feed import create_topics

    topic = f"sink-{next(_topics)}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    create_topics(admin, {topic: 1})
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    closed = KafkaProducer(bootstrap_servers=bootstrap)
    closed.close()

    def delivered() -> list[tuple[Any, ...]]:
        producer.close()
        out = []
        for r in kb.read_topic(bootstrap, topic):
            if cls is KafkaDeadLetterSink:
                out.append((dict(r.headers)["position"].decode(),))
            elif cls is KafkaKeyedBytesSink:
                out.append((r.key, *_identity(orjson.loads(r.value))))
            else:
                out.append(_identity(orjson.loads(r.value)))
        return out

    return Harness(cls(producer, topic, 20.0), records, delivered, cls(closed, topic, 5.0))


def _webhook(records: list[Any]) -> Iterator[Harness]:
    ok = type("Ok", (_Collector,), {"bodies": [], "status": 200})
    bad = type("Bad", (_Collector,), {"bodies": [], "status": 500})
    servers = [http.server.HTTPServer(("127.0.0.1", 0), h) for h in (ok, bad)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    urls = [f"http://127.0.0.1:{s.server_address[1]}/hook" for s in servers]
    try:
        yield Harness(
            WebhookSink[Any](urls[0], 5),
            records,
            lambda: [_identity(orjson.loads(b)) for b in ok.bodies],
            WebhookSink[Any](urls[1], 5),
        )
    finally:
        for s in servers:
            s.shutdown()


HARNESSES = [
    "jsonl",
    "list",
    "callback",
    "webhook",
    "kafka_alerts",
    "kafka_dead_letters",
    "kafka_decisions",
    "kafka_keyed_bytes",
]
COVERS = {
    JsonlSink: "jsonl",
    ListSink: "list",
    CallbackSink: "callback",
    WebhookSink: "webhook",
    KafkaAlertSink: "kafka_alerts",
    KafkaDeadLetterSink: "kafka_dead_letters",
    KafkaDecisionSink: "kafka_decisions",
    KafkaKeyedBytesSink: "kafka_keyed_bytes",
}


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    name = request.param
    if name == "jsonl":
        path = tmp_path / "out" / "alerts.jsonl"
        (tmp_path / "file").write_text("")
        yield Harness(
            JsonlSink[Alert](path),
            _alerts(),
            lambda: [_identity(orjson.loads(x)) for x in path.read_bytes().splitlines()],
            JsonlSink[Alert](tmp_path / "file" / "alerts.jsonl"),  # its folder is a file
        )
    elif name == "list":
        kept = ListSink[DeadLetter]()
        yield Harness(kept, _dead_letters(), lambda: [_identity(r.to_json_dict()) for r in kept.records])
    elif name == "callback":
        docs: list[dict[str, Any]] = []
        yield Harness(CallbackSink[Alert](docs.append), _alerts(), lambda: [_identity(d) for d in docs])
    elif name == "webhook":
        yield from _webhook(_alerts())
    else:
        bootstrap = request.getfixturevalue("broker").bootstrap
        if name == "kafka_alerts":
            yield _kafka(KafkaAlertSink, _alerts(), bootstrap)
        elif name == "kafka_decisions":
            yield _kafka(KafkaDecisionSink, _decisions(), bootstrap)
        elif name == "kafka_keyed_bytes":
            yield _kafka(KafkaKeyedBytesSink, _keyed_bytes(), bootstrap)
        else:
            yield _kafka(KafkaDeadLetterSink, _dead_letters(), bootstrap)


def test_every_sink_has_a_harness() -> None:
    classes = _sink_classes()
    assert classes >= {JsonlSink, KafkaAlertSink}  # the discovery finds sinks at all
    missing = sorted(c.__qualname__ for c in classes if c not in COVERS)
    assert not missing, f"sink classes without a conformance harness in tests/test_sinks.py: {missing}"


def test_a_sink_delivers_every_record_once_in_order_on_flush(harness: Harness) -> None:
    sink = harness.sink
    assert isinstance(sink, Sink)
    sink.setup()
    sink.flush()  # nothing added: nothing to do
    for r in harness.records:
        sink.add(r)
    sink.flush()
    sink.flush()  # a second flush delivers nothing twice
    sink.close()
    sink.close()  # closing twice is harmless
    assert harness.delivered() == [_expected(r) for r in harness.records]


def test_a_sink_that_cannot_deliver_raises_sink_error(harness: Harness) -> None:
    if harness.broken is None:
        assert type(harness.sink) in (ListSink, CallbackSink)  # only in-memory sinks cannot fail
        return
    broken = harness.broken
    with pytest.raises(SinkError):
        broken.setup()
        for r in harness.records:
            broken.add(r)
        broken.flush()
    broken.close()
