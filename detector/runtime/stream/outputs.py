"""The daemon's outputs from its settings: alerts to Kafka (plus an optional JSON Lines copy and a
webhook), rejects to the dead-letter topic; one producer serves both topics. A ``TopicGuard`` after each
Kafka sink checks that its topic exists at start and was not deleted or recreated (``faults``)."""

from __future__ import annotations

from detector.contracts import Alert
from detector.decide import Decision
from detector.io.kafka import KafkaAlertSink, KafkaDeadLetterSink, KafkaDecisionSink
from detector.io.sinks import DeadLetter, JsonlSink, Outputs, Sink, SinkGroup, WebhookSink
from detector.runtime.stream.faults import FaultMetrics, OutputTopics, TopicGuard
from detector.runtime.stream.settings import StreamSettings


def stream_outputs(s: StreamSettings, metrics: FaultMetrics | None = None) -> Outputs:
    """Sinks for one daemon run (the producer is closed with the outputs)."""
    from kafka import KafkaProducer

    topics = OutputTopics(s.kafka_common())

    def guard(topic: str, stream: str, setting: str) -> TopicGuard:
        return TopicGuard(topics, topic, stream, f"DETECTOR_STREAM_{setting}", metrics)

    producer = KafkaProducer(
        **s.kafka_common(),
        acks="all",
        linger_ms=20,
        max_request_size=8 << 20,
        retries=2**31 - 1,
        # at-least-once with (alert_id, revision) as the identity; idempotent producer ids do not
        # survive a broker that lost its state (the embedded broker keeps everything in memory)
        enable_idempotence=False,
    )
    alerts: list[Sink[Alert]] = [
        KafkaAlertSink(producer, s.alerts_topic, s.flush_timeout_s),
        guard(s.alerts_topic, "alerts", "ALERTS_TOPIC"),
    ]
    if s.alerts_file:
        alerts.append(JsonlSink[Alert](s.alerts_file, append=True))
    if s.webhook_url:
        alerts.append(WebhookSink[Alert](s.webhook_url, s.webhook_timeout_s))
    dead: list[Sink[DeadLetter]] = [
        KafkaDeadLetterSink(producer, s.dead_letter_topic, s.flush_timeout_s),
        guard(s.dead_letter_topic, "dead_letter", "DEAD_LETTER_TOPIC"),
    ]
    decisions: list[Sink[Decision]] = []
    if s.decisions_topic:
        decisions.append(KafkaDecisionSink(producer, s.decisions_topic, s.flush_timeout_s))
        decisions.append(guard(s.decisions_topic, "decisions", "DECISIONS_TOPIC"))
    if s.decisions_webhook_url:
        decisions.append(WebhookSink[Decision](s.decisions_webhook_url, s.webhook_timeout_s))
    return Outputs(
        SinkGroup(alerts),
        SinkGroup(dead),
        [lambda: producer.close(timeout=s.flush_timeout_s), topics.close],
        SinkGroup(decisions),
    )
