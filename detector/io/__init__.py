"""I/O layer: the only code that touches files or Kafka."""
