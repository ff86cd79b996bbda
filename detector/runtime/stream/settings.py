"""Daemon settings (pydantic-settings): env vars ``DETECTOR_STREAM_*`` and an optional dotenv-style file.

Engine settings (windows, allowed lateness, rules, allow-list, IP intelligence) stay in
``detector.settings.EngineSettings`` (``DETECTOR_*``); the same optional file feeds both (see
``config_file``). Secrets are ``SecretStr``: they print as ``**********`` and are never logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from detector.errors import ConfigError
from detector.runtime.stream.source import SourceName

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"]


class StreamSettings(BaseSettings):
    """Everything the daemon needs beyond the engine: Kafka, topics, state, sinks, timing."""

    model_config = SettingsConfigDict(env_prefix="DETECTOR_STREAM_", extra="ignore", populate_by_name=True)

    #: Comma-separated ``host:port`` list. Empty: ``detector demo`` starts the embedded broker.
    bootstrap_servers: str = ""
    input_topic: str = "gateway-events"
    alerts_topic: str = "detector-alerts"
    dead_letter_topic: str = "detector-dead-letter"
    group_id: str = "distillation-detector"
    #: The Kafka client: ``kafka-python`` (default) or ``confluent`` (librdkafka; the ``confluent`` extra).
    source: SourceName = "kafka-python"
    #: ``confluent`` only: the one-partition topic whose partition 0 is the ownership lease (create it).
    lease_topic: str = "detector-lease"
    client_id: str = "distillation-detector"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None
    #: Checkpoints live here (``CURRENT`` + ``ckpt-*``); share it between replicas so state follows them.
    state_dir: Path = Path("state")
    #: Optional JSON Lines copy of every alert (appended) and a webhook that receives each alert (POST).
    alerts_file: Path | None = None
    webhook_url: str | None = None
    webhook_timeout_s: float = 5.0
    #: Response decisions (docs/response.md): the topic they go to, keyed by account (unset: none are
    #: made; create the topic first), the policy (unset: the shipped one), dry run, and a webhook that
    #: receives each decision and lift (POST), e.g. the gateway's enforcement endpoint.
    decisions_topic: str | None = None
    policy: Path | None = None
    decisions_dry_run: bool = False
    decisions_webhook_url: str | None = None
    #: Analyst dispositions over HTTP (``POST /dispositions`` on the metrics port): the append-only store
    #: and the bearer token (or a file holding it); without a store and a token the endpoint is off.
    dispositions_store: Path | None = None
    dispositions_token: SecretStr | None = None
    dispositions_token_file: Path | None = None
    #: Records per poll and the poll timeout.
    max_poll_records: int = Field(default=5000, ge=1)
    poll_timeout_ms: int = Field(default=500, ge=1)
    #: Polled batches the consumer thread may hold ahead of processing (the prefetch queue's bound);
    #: their decoding starts when they are polled, so a deeper queue lets the decoding workers run ahead.
    prefetch_batches: int = Field(default=8, ge=1)
    #: Worker processes that decode polled records (JSON, validation, prompt features) ahead of the
    #: engine; 0 decodes on the processing thread.
    decode_workers: int = Field(default=1, ge=0)
    #: Commit (flush sinks, checkpoint, commit offsets) at most this often while records flow.
    commit_interval_s: float = Field(default=5.0, gt=0)
    #: Liveness fails once checkpoints have failed for this many commit intervals in a row (60 s at the
    #: default interval): long enough to ride out a slow or briefly full volume, short enough that a
    #: supervisor restarts (and someone is paged) before much counted work exists only in memory.
    checkpoint_stale_intervals: int = Field(default=12, ge=1)
    #: Longest wait for sinks to acknowledge on commit; a failure ends the daemon (exit 3) unacknowledged.
    flush_timeout_s: float = Field(default=30.0, gt=0)
    #: A caught-up partition with no record for this long no longer holds the event-time merge back.
    idle_partition_s: float = Field(default=1.0, ge=0)
    #: kafka-python group timings (Tansu waits ``max_poll_interval_ms`` before a new group's first
    #: assignment, so keep it short).
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 2_000
    max_poll_interval_ms: int = 10_000
    #: A recreated input topic (a new topic id: a broker restarted empty, a topic deleted and created
    #: again) or offsets outside the log (beyond its end, or before its start after retention):
    #: ``earliest`` reads the partitions again from their first offset (counted, one error line);
    #: ``fail`` stops the daemon with one error line. Never a silent skip (docs/robustness.md).
    on_topic_reset: Literal["earliest", "fail"] = "earliest"
    #: Records larger than this are fetched (so they can be dead-lettered) up to this size per partition.
    max_partition_fetch_bytes: int = 8 << 20
    #: ``/metrics``, ``/healthz`` and ``/readyz``; 0 disables the HTTP server. 9108 is the one default
    #: port of the images, the Helm chart, the compose file and the demo.
    metrics_port: int = 9108
    metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"
    #: The two-stage split (docs/runtime.md, "Stages"; env ``DETECTOR_STAGE``): ``all`` (one engine, every
    #: partition: the default), ``cluster`` (every partition, cluster verdicts, publishes the population
    #: contexts) or ``account`` (a share of the partitions, account verdicts, reads the contexts). A stage
    #: runs in its own group (``group_id`` + ``-cluster``/``-account``) and state directory (a subfolder).
    stage: Literal["all", "cluster", "account"] = Field(default="all", validation_alias="DETECTOR_STAGE")
    #: The cluster stage's contexts, keyed ``kind|as_of`` (one partition; retention at least as long as an
    #: account stage may lag or be down), and how long an account stage waits for a tick's context.
    contexts_topic: str = "detector-contexts"
    context_wait_s: float = Field(default=60.0, gt=0)
    #: The deployment's key on the contexts topic (at least 16 bytes), or a file holding it (the variable
    #: wins): the cluster stage signs each record, the account stage reads only records signed under it
    #: (``contextsign``). Set it on both stages or neither. Never logged. The previous key (round 18):
    #: also accepted when reading, never used to sign, so a new key rolls through the stages one by one.
    contexts_key: SecretStr | None = None
    contexts_key_file: Path | None = None
    contexts_key_previous: SecretStr | None = None
    contexts_key_previous_file: Path | None = None

    @field_validator(
        "contexts_key",
        "contexts_key_file",
        "contexts_key_previous",
        "contexts_key_previous_file",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    def for_stage(self) -> StreamSettings:
        """These settings as the stage runs them: its own group and state directory (``all``: as is)."""
        if self.stage == "all":
            return self
        return self.model_copy(
            update={"group_id": f"{self.group_id}-{self.stage}", "state_dir": self.state_dir / self.stage}
        )

    def kafka_common(self) -> dict[str, Any]:
        """kafka-python keyword arguments shared by consumer, producer and admin (security included)."""
        cfg: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()],
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            cfg["sasl_mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            cfg["sasl_plain_username"] = self.sasl_username
        if self.sasl_password is not None:
            cfg["sasl_plain_password"] = self.sasl_password.get_secret_value()
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, key)
            if value is not None:
                cfg[key] = str(value)
        if self.ssl_password is not None:
            cfg["ssl_password"] = self.ssl_password.get_secret_value()
        return cfg

    def consumer_config(self) -> dict[str, Any]:
        """kafka-python consumer keyword arguments (security, fetch sizes, poll size; no group settings).

        The daemon adds its group settings; ``detector bench-stream`` uses exactly this for the raw
        consume rate, so both read the same topic with the same fetch configuration.
        """
        return {
            **self.kafka_common(),
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": self.max_poll_records,
            "max_partition_fetch_bytes": self.max_partition_fetch_bytes,
            "fetch_max_bytes": max(self.max_partition_fetch_bytes, 50 << 20),
        }

    def redacted(self) -> dict[str, Any]:
        """The settings as a loggable dict (secrets masked)."""
        out = self.model_dump(mode="json")
        secrets = ("sasl_password", "ssl_password", "dispositions_token")
        for key in (*secrets, "contexts_key", "contexts_key_previous"):
            if out.get(key) is not None:
                out[key] = "**********"
        for hook in ("webhook_url", "decisions_webhook_url"):
            if out.get(hook):  # webhook URLs carry their credential (path token, query, user:pass@)
                try:
                    url = urlsplit(out[hook])
                    out[hook] = f"{url.scheme}://{url.hostname or ''}/**********"
                except ValueError:
                    out[hook] = "**********"
        return out


def config_file(path: Path | None) -> Path | None:
    """``path``, checked: a dotenv-style file of ``DETECTOR_...=value`` lines, or None.

    The composition root reads it once per process into both settings objects
    (``StreamSettings(_env_file=path)`` and ``detector.app.engine_settings(config=path)``), so one file
    configures the daemon and the engine (windows, lateness, rules...). Real environment variables win
    over the file; nothing is written to the environment.
    """
    if path is not None and not path.is_file():
        raise ConfigError("config file not found; give an existing dotenv-style file", str(path))
    return path
