"""Metrics: names, bounded labels, engine sync, and no account ids or prompt text in a scrape."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from detector.app import build_engine
from detector.contracts import Alert
from detector.decode import REASONS
from detector.io.files import iter_jsonl
from detector.lab.simulate import simulate
from detector.runtime.metrics import ALLOWLIST_TYPES, Metrics

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"detector_[a-z_]+")
Run = tuple[CollectorRegistry, Metrics, Path]


def _fresh(clock: float = 1_000_000.0) -> tuple[CollectorRegistry, Metrics]:
    registry = CollectorRegistry()
    return registry, Metrics(registry, version="9.9.9", clock=lambda: clock)


def test_names_follow_the_convention() -> None:
    """Every family is detector_* (or client_python's standard process_*); counters end in _total;
    histograms measuring time in _seconds."""
    registry, _ = _fresh()
    families = list(registry.collect())
    assert {f.name for f in families if f.name.startswith("process_")} >= {
        "process_cpu_seconds",
        "process_resident_memory_bytes",
    }
    for family in families:
        if family.name.startswith("process_"):
            continue
        assert NAME.fullmatch(family.name), family.name
        if family.type == "counter":
            assert not family.name.endswith("_total")  # the client adds _total to the samples
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if family.type == "histogram" and "latency" in family.documentation.lower():
            assert family.name.endswith("_seconds")
    text = generate_latest(registry).decode()
    assert 'detector_build_info{version="9.9.9"} 1.0' in text


def test_record_methods() -> None:
    """The daemon's calls land in the right series."""
    registry, m = _fresh()
    m.record_batch(consumed=10, decoded=8, rejects=["not_json", "type_error"], seconds=0.02)
    m.record_batch(consumed=5, decoded=5, rejects={"type_error": 2}, seconds=0.01)
    m.set_lag({0: 7, 3: 0})
    m.record_checkpoint(0.5, True)
    m.record_checkpoint(0.0, False)
    m.set_provider("cluster_gbt", "CPUExecutionProvider")
    m.observe_scores("cluster_gbt", [0.05, 0.95, 0.97])
    get = registry.get_sample_value
    assert get("detector_events_consumed_total") == 15
    assert get("detector_events_decoded_total") == 13
    assert get("detector_events_rejected_total", {"reason": "type_error"}) == 3
    assert get("detector_events_rejected_total", {"reason": "not_json"}) == 1
    assert get("detector_batch_seconds_count") == 2
    assert get("detector_consumer_lag", {"partition": "0"}) == 7
    assert get("detector_checkpoint_seconds_count") == 1
    assert get("detector_checkpoint_failures_total") == 1
    assert get("detector_model_provider", {"model": "cluster_gbt", "provider": "CPUExecutionProvider"}) == 1
    assert get("detector_model_score_bucket", {"model": "cluster_gbt", "le": "0.1"}) == 1
    assert get("detector_model_score_count", {"model": "cluster_gbt"}) == 3
    assert get("detector_last_batch_timestamp_seconds") == 1_000_000.0


def test_known_label_values_start_at_zero() -> None:
    """Reject reasons and allow-list types exist from the first scrape (dashboards and alert rules see 0)."""
    registry, _ = _fresh()
    for reason in REASONS:
        assert registry.get_sample_value("detector_events_rejected_total", {"reason": reason}) == 0
    for kind in ALLOWLIST_TYPES:
        assert registry.get_sample_value("detector_allowlist_suppressed_total", {"type": kind}) == 0


def test_record_alerts_and_cluster_sizes() -> None:
    """Alerts count by severity, kind and campaign type; cluster alerts observe their size."""
    registry, m = _fresh()
    ts = datetime(2026, 3, 1, tzinfo=UTC)
    common = {"schema_version": 1, "revision": 1, "score": 0.9, "first_event_ts": ts, "detected_event_ts": ts}
    reasons = [{"source": "rule", "name": "r"}]
    m.record_alerts(
        [
            Alert.model_validate(
                {
                    **common,
                    "alert_id": "a",
                    "kind": "cluster",
                    "subject": "cl-1",
                    "severity": "high",
                    "account_ids": [f"acct_{i}" for i in range(12)],
                    "campaign_type": "chain_of_thought",
                    "reasons": reasons,
                }
            ),
            Alert.model_validate(
                {
                    **common,
                    "alert_id": "b",
                    "kind": "account",
                    "subject": "acct_x",
                    "severity": "low",
                    "account_ids": ["acct_x"],
                    "campaign_type": None,
                    "reasons": reasons,
                }
            ),
            Alert.model_validate(  # an update of episode "b": a revision, not a new episode
                {
                    **common,
                    "revision": 2,
                    "alert_id": "b",
                    "kind": "account",
                    "subject": "acct_x",
                    "severity": "low",
                    "account_ids": ["acct_x"],
                    "campaign_type": None,
                    "reasons": reasons,
                }
            ),
        ]
    )
    get = registry.get_sample_value
    labels = {"severity": "high", "kind": "cluster", "campaign_type": "chain_of_thought"}
    assert get("detector_alert_episodes_total", labels) == 1
    assert get("detector_alert_revisions_total", labels) == 1
    low = {"severity": "low", "kind": "account", "campaign_type": "unknown"}
    assert get("detector_alert_episodes_total", low) == 1
    assert get("detector_alert_revisions_total", low) == 2
    assert get("detector_alert_cluster_size_bucket", {"le": "10.0"}) == 0
    assert get("detector_alert_cluster_size_bucket", {"le": "20.0"}) == 1
    assert "acct_" not in generate_latest(registry).decode()


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A replay of simulated traffic in batches, as the daemon does it: metrics after each batch."""
    out = tmp_path_factory.mktemp("sim")
    simulate(out, days=0.5, seed=5, scale=0.3)
    registry, m = _fresh(clock=datetime(2026, 3, 2, 12, tzinfo=UTC).timestamp())
    engine = build_engine(ROOT / "rules")
    lines = (out / "events.jsonl").read_bytes().splitlines(keepends=True)
    lines.insert(10, b'{"broken": \n')
    part = out / "part.jsonl"
    for start in range(0, len(lines), 2000):
        part.write_bytes(b"".join(lines[start : start + 2000]))
        for chunk in iter_jsonl(part):
            b = chunk.batch
            alerts = engine.process(b.events)
            m.record_batch(
                consumed=b.records,
                decoded=b.events.height,
                rejects=[r.reason for r in b.rejects],
                seconds=0.01,
            )
            m.record_alerts(alerts)
            m.sync_engine(engine)
            m.sync_engine(engine)  # idempotent: counters follow the engine's totals, never double
    m.record_alerts(engine.flush())
    m.sync_engine(engine)
    return registry, m, out / "events.jsonl"


def test_sync_engine_follows_engine_totals(engine_run: Run) -> None:
    """Processed, ticks, signals, rule hits and gauges mirror the engine; every rule has a series."""
    registry, _, events = engine_run
    get = registry.get_sample_value
    n_events = sum(1 for _ in events.open())
    assert get("detector_events_consumed_total") == n_events + 1
    assert get("detector_events_rejected_total", {"reason": "not_json"}) == 1
    assert get("detector_events_processed_total") == n_events
    assert (get("detector_ticks_total") or 0) > 0
    assert (get("detector_signal_events_total", {"signal": "cot"}) or 0) > 0
    assert (get("detector_accounts_tracked") or 0) > 0
    assert (get("detector_alert_episodes_open") or 0) > 0
    assert get("detector_alert_episodes_closed_total") == 0  # a day is shorter than episode_idle
    # process metrics for the memory and CPU panels
    assert (get("process_resident_memory_bytes") or 0) > 0
    assert get("process_cpu_seconds_total") is not None
    assert (
        sum(
            s.value
            for f in registry.collect()
            if f.name == "detector_rule_hits"
            for s in f.samples
            if s.name.endswith("_total")
        )
        > 0
    )
    hits = {s.labels["rule"] for f in registry.collect() if f.name == "detector_rule_hits" for s in f.samples}
    rules = {p.stem for p in (ROOT / "rules").glob("*.yaml")}
    assert rules <= hits  # every rule has a series; model hits count as rules named model:<stem>
    assert all(h in rules or h.startswith("model:") for h in hits)
    # the watermark delay uses the injected clock: 2026-03-02 12:00 minus (newest event - lateness)
    assert get("detector_watermark_delay_seconds") is not None


def test_scrape_has_no_account_ids_or_prompt_text(engine_run: Run) -> None:
    """After a run the exposition holds no account id, org id, API key, payment fingerprint or prompt."""
    registry, _, events = engine_run
    text = generate_latest(registry).decode()
    secrets: set[str] = set()
    prompts: set[str] = set()
    for line in events.read_text().splitlines():
        e = json.loads(line)
        secrets |= {e["account_id"], e["org_id"], e["api_key_id"], e["account"]["payment_fingerprint"]}
        if e["prompt"].get("text"):
            prompts.add(e["prompt"]["text"][:20])
    assert len(secrets) > 100 and len(prompts) > 10
    leaked = [s for s in secrets | prompts if s and s in text]
    assert leaked == []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for value in sample.labels.values():
                assert re.fullmatch(r"[\w.:+\-]{0,64}", value), (sample.name, value)
