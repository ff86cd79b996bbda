"""The streaming daemon: Kafka source, the same engine as replay, alert and dead-letter sinks, commits."""
