"""Prometheus metrics: every name the daemon exports, on a registry passed in.

Label values come from small closed sets (reject reasons, severities, rule ids, campaign types, model
names, partitions, state tables); an account id, a cluster id or any prompt text never becomes a label.
The engine keeps plain cumulative counters (``EngineStats``); ``sync_engine`` turns their growth into
counter increments, so the engine never depends on prometheus-client.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, get_args

from prometheus_client import CollectorRegistry, Gauge, Histogram, Info, ProcessCollector
from prometheus_client import Counter as PCounter

from detector.contracts import KINDS, SEVERITIES
from detector.decode import REASONS
from detector.detect.allowlist import EntryType
from detector.engine import SIGNAL_METRICS, Observers
from detector.window.eventtime import REASONS as TIME_REASONS

if TYPE_CHECKING:
    from detector.contracts import Alert
    from detector.decide import Decision
    from detector.engine import Engine

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SCORE_BUCKETS = tuple(i / 10 for i in range(1, 11))
_SIZE_BUCKETS = (2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 20000)
_UNKNOWN = "unknown"
#: Label values known up front, initialised to zero so dashboards and alert rules see every series from
#: the first scrape (a labelled counter that never moved exports nothing, and ``rate`` of nothing is empty).
ALLOWLIST_TYPES: tuple[str, ...] = get_args(EntryType)
RULE_MODES = {"enforce": "live", "shadow": "shadow"}
ACTIONS = ("monitor", "step_up_verification", "rate_limit", "fallback_model", "suspend")
VERDICTS = ("confirm", "false_positive", "benign_explained")


class Metrics:
    """The daemon's metrics. One instance per registry."""

    def __init__(
        self,
        registry: CollectorRegistry,
        version: str = "0.1.0",
        clock: Callable[[], float] = time.time,
    ) -> None:
        r = registry
        self.registry = registry
        self._clock = clock
        # process_cpu_seconds_total, process_resident_memory_bytes, open fds... for the memory/CPU panels
        ProcessCollector(registry=r)
        self.build_info = Info("detector_build", "Build information.", registry=r)
        self.build_info.info({"version": version})
        self.consumed = PCounter(
            "detector_events_consumed_total", "Records read from the source.", registry=r
        )
        self.decoded = PCounter("detector_events_decoded_total", "Records decoded into events.", registry=r)
        self.rejected = PCounter(
            "detector_events_rejected_total",
            "Records sent to the dead-letter output.",
            ["reason"],
            registry=r,
        )
        self.processed = PCounter(
            "detector_events_processed_total", "Events folded into window state.", registry=r
        )
        self.duplicates = PCounter(
            "detector_events_duplicate_total", "Events dropped as already counted.", registry=r
        )
        self.late = PCounter(
            "detector_events_late_total", "Events older than the closed ticks (folded in late).", registry=r
        )
        self.demotions = PCounter(
            "detector_rule_demotions_total",
            "Enforce rules demoted to shadow at run time: they fired on too much of one tick's traffic.",
            ["rule"],
            registry=r,
        )
        self.evicted = PCounter(
            "detector_state_evicted_rows_total",
            "State rows dropped, by table and cause (age: event time; cap: the table's row cap).",
            ["table", "cause"],
            registry=r,
        )
        self.late_folded = PCounter(
            "detector_events_late_folded_total",
            "Late events folded at once because too many were waiting (the event-time clock was stuck).",
            registry=r,
        )
        self.signals = PCounter(
            "detector_signal_events_total",
            "Processed events carrying a signal (cot, coercion, new_model, logprob, tools_heavy...).",
            ["signal"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "detector_batch_seconds", "Wall time to process one batch.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.lag = Gauge(
            "detector_consumer_lag", "Records behind the partition end.", ["partition"], registry=r
        )
        self.watermark_delay = Gauge(
            "detector_watermark_delay_seconds", "Wall clock minus the event-time watermark.", registry=r
        )
        self.accounts_tracked = Gauge("detector_accounts_tracked", "Accounts in window state.", registry=r)
        self.clusters_tracked = Gauge(
            "detector_clusters_tracked", "Linked clusters at last build.", registry=r
        )
        self.state_bytes = Gauge("detector_state_bytes", "Estimated state size.", ["table"], registry=r)
        # The counting unit is the episode (one alert_id); a revision is an update to it.
        self.episodes = PCounter(
            "detector_alert_episodes_total",
            "Alert episodes opened (one per alert_id), by the severity and campaign type they opened with.",
            ["severity", "kind", "campaign_type"],
            registry=r,
        )
        self.revisions = PCounter(
            "detector_alert_revisions_total",
            "Alert records emitted: an episode's first record and each update (escalation, growth).",
            ["severity", "kind", "campaign_type"],
            registry=r,
        )
        # response decisions (docs/response.md) and analysts' dispositions: closed label sets, all
        # initialised so the panels show zeros before the first decision
        self.decisions = PCounter(
            "detector_decisions_total",
            "Response decisions emitted: applies and lifts, by action (lift reason: expired or withdrawn).",
            ["op", "action", "reason"],
            registry=r,
        )
        for action in ACTIONS:
            self.decisions.labels(op="apply", action=action, reason="alert")
            for why in ("expired", "withdrawn"):
                self.decisions.labels(op="lift", action=action, reason=why)
        self.dispositions = PCounter(
            "detector_dispositions_total",
            "Analyst dispositions received, by verdict.",
            ["verdict"],
            registry=r,
        )
        for verdict in VERDICTS:
            self.dispositions.labels(verdict=verdict)
        self.accounts_under_alert = Gauge(
            "detector_accounts_under_alert", "Distinct accounts named by open alert episodes.", registry=r
        )
        self.episodes_open = Gauge(
            "detector_alert_episodes_open", "Open alert episodes (bounded: idle ones close).", registry=r
        )
        self.episodes_closed = PCounter(
            "detector_alert_episodes_closed_total",
            "Alert episodes closed after episode_idle without a verdict.",
            registry=r,
        )
        self.cluster_size = Histogram(
            "detector_alert_cluster_size",
            "Accounts per emitted cluster alert.",
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        self.rule_hits = PCounter(
            "detector_rule_hits_total",
            "Rule hits (shadow rules with mode=shadow).",
            ["rule", "mode"],
            registry=r,
        )
        self.model_score = Histogram(
            "detector_model_score", "Model scores.", ["model"], buckets=_SCORE_BUCKETS, registry=r
        )
        self.model_provider = Gauge(
            "detector_model_provider",
            "1 for the execution provider each model runs on.",
            ["model", "provider"],
            registry=r,
        )
        self.suppressed = PCounter(
            "detector_allowlist_suppressed_total",
            "Alerts suppressed by the allow-list.",
            ["type"],
            registry=r,
        )
        self.checkpoint_seconds = Histogram(
            "detector_checkpoint_seconds",
            "Wall time of one commit (flush, checkpoint, offsets).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.checkpoint_failures = PCounter(
            "detector_checkpoint_failures_total", "Commits that failed.", registry=r
        )
        self.checkpoint_fallbacks = PCounter(
            "detector_checkpoint_fallbacks_total",
            "Loads that passed over a damaged checkpoint and took an older one.",
            registry=r,
        )
        self.last_event_ts = Gauge(
            "detector_last_event_timestamp_seconds", "Event time of the newest event seen.", registry=r
        )
        self.ticks = PCounter(
            "detector_ticks_total", "Event-time ticks closed (features computed, rules run).", registry=r
        )
        self.last_batch_ts = Gauge(
            "detector_last_batch_timestamp_seconds", "Wall-clock time of the last source batch.", registry=r
        )
        for reason in (*REASONS, *TIME_REASONS):
            self.rejected.labels(reason=reason)
        for kind in ALLOWLIST_TYPES:
            self.suppressed.labels(type=kind)
        self._registry = r
        self.rule_reloads: PCounter | None = None
        self._initialised_rules = False
        self._seen: dict[str, Counter[str]] = {}
        self._seen_scalars: dict[str, int] = {}

    # -----------------------------------------------------------------------------------------
    def record_batch(
        self, *, consumed: int, decoded: int, rejects: Mapping[str, int] | Iterable[str], seconds: float
    ) -> None:
        """One source batch: records read, events decoded, rejects by reason, processing time."""
        self.consumed.inc(consumed)
        self.decoded.inc(decoded)
        counts = Counter(rejects) if not isinstance(rejects, Mapping) else rejects
        for reason, n in counts.items():
            self.rejected.labels(reason=reason).inc(n)
        self.batch_seconds.observe(seconds)
        self.last_batch_ts.set(self._clock())

    def record_alerts(self, alerts: Iterable[Alert]) -> None:
        """Alert records just emitted: each counts as a revision, a first revision also as an episode."""
        for a in alerts:
            labels = {"severity": a.severity, "kind": a.kind, "campaign_type": a.campaign_type or _UNKNOWN}
            self.revisions.labels(**labels).inc()
            if a.revision == 1:
                self.episodes.labels(**labels).inc()
            if a.kind == "cluster":
                self.cluster_size.observe(len(a.account_ids))

    def record_decisions(self, decisions: Iterable[Decision]) -> None:
        """Decisions and lifts just handed to the sinks."""
        for d in decisions:
            self.decisions.labels(op=d.op, action=d.action, reason=d.lift_reason or "alert").inc()

    def record_disposition(self, verdict: str) -> None:
        """One analyst disposition received."""
        if verdict in VERDICTS:
            self.dispositions.labels(verdict=verdict).inc()

    def set_lag(self, lags: Mapping[int, int]) -> None:
        """Consumer lag per partition (partition numbers are a small bounded set)."""
        for partition, lag in lags.items():
            self.lag.labels(partition=str(partition)).set(lag)

    def record_checkpoint(self, seconds: float, ok: bool) -> None:
        """One commit's duration, or a failure."""
        if ok:
            self.checkpoint_seconds.observe(seconds)
        else:
            self.checkpoint_failures.inc()

    def track_rule_reloads(self) -> None:
        """Export ``detector_rule_reloads_total`` (only a daemon that watches its rules reloads them)."""
        if self.rule_reloads is None:
            self.rule_reloads = PCounter(
                "detector_rule_reloads_total",
                "Rule reloads (SIGHUP or changed files) by result.",
                ["result"],
                registry=self._registry,
            )
            for result in ("ok", "failed"):
                self.rule_reloads.labels(result=result)

    def record_rule_reload(self, ok: bool) -> None:
        """One rule reload that swapped a new rule set in, or one that failed to load."""
        self.track_rule_reloads()
        assert self.rule_reloads is not None
        self.rule_reloads.labels(result="ok" if ok else "failed").inc()

    def set_provider(self, model: str, provider: str) -> None:
        """The onnxruntime execution provider a model runs on."""
        self.model_provider.labels(model=model, provider=provider).set(1)

    def observers(self) -> Observers:
        """What an engine built for these metrics reports to: its model scores (the score histogram)."""
        return Observers(on_scores=self.observe_scores)

    def observe_scores(self, model: str, scores: Iterable[float]) -> None:
        """Model scores of one batch."""
        h = self.model_score.labels(model=model)
        for s in scores:
            h.observe(float(s))

    # -----------------------------------------------------------------------------------------
    def _inc_scalar(self, name: str, value: int, counter: PCounter) -> None:
        delta = value - self._seen_scalars.get(name, 0)
        if delta > 0:
            counter.inc(delta)
        self._seen_scalars[name] = max(value, self._seen_scalars.get(name, 0))

    def _inc_labelled(
        self, name: str, values: Mapping[str, int], counter: PCounter, label: str, **fixed: str
    ) -> None:
        seen = self._seen.setdefault(name, Counter())
        for key, value in values.items():
            delta = value - seen[key]
            if delta > 0:
                counter.labels(**{label: key}, **fixed).inc(delta)
                seen[key] = value

    def _init_rule_series(self, engine: Engine) -> None:
        """Zero series for every rule, and for every (severity, kind, campaign type) an alert can carry."""
        for signal in SIGNAL_METRICS:
            self.signals.labels(signal=signal)
        campaigns = {rule.campaign_type or _UNKNOWN for rule in engine.rules}
        for rule in engine.rules:
            self.rule_hits.labels(rule=rule.id, mode=RULE_MODES.get(rule.mode, "live"))
        for severity in SEVERITIES:
            for kind in KINDS:
                for campaign in campaigns:
                    self.episodes.labels(severity=severity, kind=kind, campaign_type=campaign)
                    self.revisions.labels(severity=severity, kind=kind, campaign_type=campaign)
        self._initialised_rules = True

    def sync_engine(self, engine: Engine) -> None:
        """Copy the engine's cumulative counters and gauges into the metrics.

        The first call also records the execution provider each model runs on. The score histogram is
        fed by the engine's observers (``observers``), given when the engine is built.
        """
        if not self._initialised_rules:
            self._init_rule_series(engine)
            for model, provider in engine.models.providers.items():
                self.set_provider(model, provider)
            for stem in engine.models.providers:
                self.model_score.labels(model=stem)
        st = engine.stats
        self._inc_scalar("processed", st.events, self.processed)
        self._inc_scalar("ticks", st.ticks, self.ticks)
        self._inc_scalar("duplicates", st.duplicates, self.duplicates)
        self._inc_scalar("late", st.late, self.late)
        self._inc_labelled("signals", st.signals, self.signals, "signal")
        self._inc_labelled("rule_hits", st.rule_hits, self.rule_hits, "rule", mode="live")
        self._inc_labelled("shadow_hits", st.shadow_hits, self.rule_hits, "rule", mode="shadow")
        self._inc_labelled("suppressed", st.suppressed, self.suppressed, "type")
        self._inc_labelled("demotions", st.demoted, self.demotions, "rule")
        self._inc_scalar("late_folded", st.late_folded, self.late_folded)
        seen = self._seen.setdefault("evicted", Counter())
        for key, value in st.evicted.items():
            if value > seen[key]:
                table, cause = key.split("/")
                self.evicted.labels(table=table, cause=cause).inc(value - seen[key])
                seen[key] = value
        self.accounts_tracked.set(engine.state.accounts.height)
        self.clusters_tracked.set(
            engine.clusters.members["cluster_id"].n_unique() if engine.clusters is not None else 0
        )
        for table, size in engine.state.size_bytes().items():
            self.state_bytes.labels(table=table).set(size)
        self.accounts_under_alert.set(len({a for ep in engine.book.episodes.values() for a in ep.accounts}))
        self.episodes_open.set(len(engine.book.episodes))
        self._inc_scalar("episodes_closed", st.episodes_closed, self.episodes_closed)
        if engine.max_event_ts is not None:
            self.last_event_ts.set(engine.max_event_ts.timestamp())
            watermark = engine.max_event_ts - engine.settings.windows.allowed_lateness
            self.watermark_delay.set(self._clock() - watermark.timestamp())
