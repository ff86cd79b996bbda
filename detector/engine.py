"""The detection engine: one object fed decoded batches by replay and by the daemon alike.

Flow per batch: enrich (prompt text dropped) -> buffer -> for every tick boundary the event-time
watermark crosses: de-duplicate, fold into window state, account features, link graph, cluster
features, rules, verdicts, alerts. Event time drives everything: the same events give the same alerts
whatever the batch sizes, the machine or the wall clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.alert.explain import describe
from detector.alert.verdict import AlertBook, Verdict, combine
from detector.contracts import Alert, Reason
from detector.detect.allowlist import AllowList
from detector.detect.evidence import add_axes, apply_trust, axis_reasons
from detector.detect.models.runtime import ModelSet
from detector.detect.rules import RuleSet
from detector.enrich import enrich
from detector.enrich.ipintel import IpIntel
from detector.intel.hashing import PartnerIndex
from detector.schema import UTC_US
from detector.settings import EngineSettings
from detector.window.features import account_features, cluster_features
from detector.window.link import Clusters, build_clusters
from detector.window.state import WindowState, merge_keys

#: Model hits are named ``model:<name>-v<N>`` among the rule hits.
MODEL_PREFIX = "model:"
_RANK_NAME = {1: "low", 2: "medium", 3: "high", 4: "critical"}

#: Account features copied into an account alert's evidence.
ACCOUNT_EVIDENCE = (
    "requests_24h",
    "requests_1h",
    "cot_share_24h",
    "coercion_share_24h",
    "rubric_share_24h",
    "logprob_share_24h",
    "n_gt1_share_24h",
    "tools_heavy_share_24h",
    "new_model_share_24h",
    "hosted_ip_share_24h",
    "active_hours_24h",
    "interarrival_cv_24h",
    "template_top_share_24h",
    "account_age_days",
    "extraction_signals",
    "trusted_customer",
)
CLUSTER_EVIDENCE = (
    "accounts",
    "active_accounts_24h",
    "link_families",
    "requests_24h",
    "requests_per_account_24h",
    "synchrony_24h",
    "cot_share_24h",
    "coercion_share_24h",
    "logprob_share_24h",
    "tools_heavy_share_24h",
    "new_model_share_24h",
    "hosted_ip_share_24h",
    "template_top_share_24h",
    "active_hours_24h",
    "signup_spread_hours",
    "new_account_share",
    "payers",
    "orgs",
    "verified_share",
    "coordination_signals",
    "extraction_signals",
    "one_customer_explains",
    "trusted_customer",
    *(
        f"shared_keys_{f}"
        for f in ("payment", "reseller", "ip", "client", "sysprompt", "template", "signup", "shared_intel")
    ),
)


@dataclass
class EngineStats:
    """Counters the runner reports and the metrics layer exports."""

    events: int = 0
    duplicates: int = 0
    late: int = 0
    ticks: int = 0
    #: alert episodes closed after ``episode_idle`` without a verdict
    episodes_closed: int = 0
    rule_hits: Counter[str] = field(default_factory=Counter)
    shadow_hits: Counter[str] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    #: processed events carrying each signal (SIGNAL_METRICS), for share-of-traffic panels
    signals: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (part of a checkpoint)."""
        return {
            f.name: dict(v) if isinstance(v := getattr(self, f.name), Counter) else v for f in fields(self)
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineStats:
        """Inverse of ``to_dict`` (missing fields start at zero)."""
        out = cls()
        for f in fields(cls):
            if f.name in data:
                value = data[f.name]
                setattr(out, f.name, Counter(value) if isinstance(getattr(out, f.name), Counter) else value)
        return out


#: Per-request signals counted for the metrics layer: name -> boolean column.
SIGNAL_METRICS = {
    "cot": "cot_elicit",
    "coercion": "reasoning_coercion",
    "new_model": "is_new_model",
    "logprob": "is_logprob",
    "tools_heavy": "is_tools_heavy",
    "hosted_ip": "is_hosted_ip",
}


class Engine:
    """Stateful detector. Feed ``process`` decoded batches; call ``flush`` at the end of a replay."""

    def __init__(
        self,
        settings: EngineSettings,
        rules: RuleSet,
        intel: IpIntel | None = None,
        allowlist: AllowList | None = None,
        models: ModelSet | None = None,
        partner: PartnerIndex | None = None,
    ) -> None:
        self.settings = settings
        #: A partner's indicators (``detector intel import``): matches become ``shared_intel`` links.
        self.partner = partner
        self.rules = rules
        self.models = models if models is not None else ModelSet()
        self.intel = intel
        self.allowlist = allowlist or AllowList()
        self.state = WindowState()
        self.book = AlertBook(settings.windows.episode_idle)
        self.stats = EngineStats()
        self._pending: list[pl.DataFrame] = []
        self._max_ts: datetime | None = None
        self._tick_end: datetime | None = None
        self.clusters: Clusters | None = None
        self._touched_since_clusters: list[pl.Series] = []
        self._last_closed: datetime | None = None
        #: Called with (model name, scores) for every scored frame (the score-histogram metric).
        self.on_scores: Callable[[str, npt.NDArray[np.float64]], None] | None = None
        #: Called with (target, feature frame, tick end) each time features are computed (training
        #: data capture). The frame has the key column, every catalogue feature and ``tick_end``
        #: (the event time the row's features describe; one frame may hold several ticks).
        self.on_features: Callable[[str, pl.DataFrame, datetime], None] | None = None

    @property
    def max_event_ts(self) -> datetime | None:
        """Newest event time seen (the watermark is this minus the allowed lateness)."""
        return self._max_ts

    @property
    def closed_through(self) -> datetime | None:
        """End of the last closed tick: every alert up to this event time has been emitted."""
        return self._last_closed

    # ------------------------------------------------------------------------------------------
    def pending_events(self) -> pl.DataFrame | None:
        """Buffered events of ticks not yet closed (part of a checkpoint)."""
        if not self._pending:
            return None
        return pl.concat(self._pending, how="vertical_relaxed")

    def clock_state(self) -> dict[str, Any]:
        """The event-time clock and per-period bookkeeping, JSON-ready (part of a checkpoint)."""
        touched = (
            pl.concat(self._touched_since_clusters).unique().sort().to_list()
            if (self._touched_since_clusters)
            else []
        )
        return {
            "max_ts": self._max_ts.isoformat() if self._max_ts else None,
            "tick_end": self._tick_end.isoformat() if self._tick_end else None,
            "touched_since_clusters": touched,
            "last_closed": self._last_closed.isoformat() if self._last_closed else None,
            "stats": self.stats.to_dict(),
        }

    def restore_clock(self, clock: dict[str, Any], pending: pl.DataFrame | None) -> None:
        """Inverse of ``clock_state`` plus ``pending_events``."""
        self._max_ts = datetime.fromisoformat(clock["max_ts"]) if clock["max_ts"] else None
        self._tick_end = datetime.fromisoformat(clock["tick_end"]) if clock["tick_end"] else None
        last = clock.get("last_closed")
        self._last_closed = datetime.fromisoformat(last) if last else None
        touched = clock.get("touched_since_clusters") or []
        self._touched_since_clusters = [pl.Series("account_id", touched, dtype=pl.String)] if touched else []
        self._pending = [pending] if pending is not None and pending.height else []
        self.stats = EngineStats.from_dict(clock.get("stats") or {})

    # ------------------------------------------------------------------------------------------
    def enrich(self, events: pl.DataFrame) -> pl.DataFrame:
        """Enrichment only (replay enriches chunk by chunk before sorting, to drop text early)."""
        return enrich(events.drop("_pos", strict=False), self.intel)

    def process(self, events: pl.DataFrame, *, enriched: bool = False) -> list[Alert]:
        """Take a batch of decoded (or already enriched) events; return alerts for every closed tick."""
        if events.height == 0:
            return []
        batch = events if enriched else self.enrich(events)
        tick = self.settings.windows.tick
        batch_max = batch["ts"].max()
        assert isinstance(batch_max, datetime)
        if self._tick_end is None:
            batch_min = batch["ts"].min()
            assert isinstance(batch_min, datetime)
            self._tick_end = _floor(batch_min, tick) + tick
        else:
            closed_before = self._tick_end - tick
            late = batch.filter(pl.col("ts") < closed_before).height
            self.stats.late += late
        self._max_ts = batch_max if self._max_ts is None else max(self._max_ts, batch_max)
        self._pending.append(batch)
        watermark = self._max_ts - self.settings.windows.allowed_lateness
        ends: list[datetime] = []
        while self._tick_end <= watermark:
            ends.append(self._tick_end)
            self._tick_end += tick
        return self._close_ticks(ends)

    def flush(self) -> list[Alert]:
        """Close every pending tick (end of input)."""
        if not self._pending or self._tick_end is None:
            return []
        tick = self.settings.windows.tick
        newest = max(p["ts"].max() for p in self._pending)  # type: ignore[type-var]
        assert isinstance(newest, datetime)
        ends: list[datetime] = []
        while self._tick_end <= newest:
            ends.append(self._tick_end)
            self._tick_end += tick
        ends.append(self._tick_end)
        self._tick_end += tick
        return self._close_ticks(ends, final=True)

    # ------------------------------------------------------------------------------------------
    def _close_ticks(self, ends: list[datetime], *, final: bool = False) -> list[Alert]:
        """Close the ticks ending at ``ends`` (ascending, consecutive) in one pass over the frames.

        Every event belongs to the first closing tick whose end is after it (late events to the first
        one). Per-tick semantics are kept exactly: features of a tick see only buckets before its end,
        links see the keys as they stood at that tick, and alerts are emitted tick by tick. ``final``
        (end of input) also links and scores clusters at the last tick, boundary or not.
        """
        if not ends or not self._pending:
            return []
        w = self.settings.windows
        pending = (
            pl.concat(self._pending, how="vertical_relaxed") if len(self._pending) > 1 else self._pending[0]
        )
        last_end = ends[-1]
        due = pending.filter(pl.col("ts") < last_end)
        rest = pending.filter(pl.col("ts") >= last_end)
        self._pending = [rest] if rest.height else []
        if due.height == 0:
            return []
        every = f"{int(w.tick.total_seconds())}s"
        first_end = pl.lit(ends[0], dtype=UTC_US)
        due = due.with_columns(
            pl.max_horizontal(pl.col("ts").dt.truncate(every) + pl.lit(w.tick), first_end).alias("_tick")
        ).sort("_tick", "ts", "request_id")
        due, dup = self.state.drop_seen(due)
        self.stats.duplicates += dup
        if due.height == 0:
            return []
        self.stats.events += due.height
        due = self.state.mark_new_models(due, w.model_warmup, w.new_model)
        keys_before = self.state.keys
        self.state.partner = self.partner  # configuration: survives a state restored from a checkpoint
        key_log = self.state.add(due, w.tick, w.signup_burst)
        last_log_tick = key_log["_tick"].max() if key_log.height else None
        keys_at = ends[0] - w.tick  # keys_before holds the uses of ticks up to here
        sums = due.select(pl.col(c).fill_null(False).sum().alias(n) for n, c in SIGNAL_METRICS.items())
        for name, value in sums.row(0, named=True).items():
            self.stats.signals[name] += int(value)

        per_tick = due.group_by("_tick").agg(
            pl.col("ts").max().alias("detected"), pl.col("account_id").unique().sort().alias("touched")
        )
        per_tick = per_tick.sort("_tick")
        account_verdicts, account_touches = self._account_verdicts(
            due.select("account_id", pl.col("_tick").alias("tick_end")).unique()
        )
        alerts: list[Alert] = []
        last_tick = per_tick["_tick"][-1]
        for now, detected, touched in per_tick.iter_rows():
            self.stats.ticks += 1
            verdicts = account_verdicts.get(now, [])
            self._touched_since_clusters.append(pl.Series("account_id", touched, dtype=pl.String))
            if _is_multiple(now, w.cluster_every) or (final and now == last_tick):
                # the keys as they stood at ``now``: the previous cluster tick's view plus the uses
                # since (after the batch's last tick: the state's own table)
                if last_log_tick is None or now >= last_log_tick:
                    keys_now = self.state.keys
                else:
                    keys_before = merge_keys(
                        keys_before, key_log.filter((pl.col("_tick") > keys_at) & (pl.col("_tick") <= now))
                    )
                    keys_at = now
                    keys_now = keys_before
                if self._last_closed is not None:
                    keys_now = keys_now.filter(pl.col("last_seen") >= self._last_closed - w.link)
                accounts_now = self.state.accounts.filter(pl.col("first_seen") < now)
                if self._last_closed is not None:
                    accounts_now = accounts_now.filter(
                        pl.col("last_seen") >= self._last_closed - w.account_idle
                    )
                all_touched = pl.concat(self._touched_since_clusters).unique().sort()
                verdicts += self._cluster_verdicts(all_touched, now, keys_now, accounts_now)
                self._touched_since_clusters = []
            new = self.book.update(verdicts, detected, now, prepare=_prepare)
            self.book.touch("account", account_touches.get(now, []), now)
            for a in new:
                self.stats.alerts[a.severity] += 1
            alerts += new
            self._last_closed = now
        assert self._last_closed is not None
        self.stats.episodes_closed += self.book.expire(self._last_closed)
        self.state.evict(self._last_closed, w.long + w.tick, w.link, w.account_idle, w.link)
        return alerts

    def _evaluate(self, frame: pl.DataFrame, target: str, key: str) -> pl.DataFrame:
        """Rule hits plus model hits (same columns: a model is a rule named ``model:<name>-v<N>``).

        Fusion: a model corroborates, it does not accuse alone. A model hit on a subject that no live
        rule hit in the same evaluation is capped at ``low`` (an analyst lead); beside a rule hit it
        keeps its own severity, so a model can raise a weak rule's low hit to medium or high, and its
        score joins the noisy-or.
        """
        hits = self.rules.evaluate(frame, target, key=key)
        if len(self.models) and frame.height:
            scores = self.models.scores(frame, target)  # one inference per model, for hits and metrics
            if self.on_scores is not None:
                for name, values in scores.items():
                    self.on_scores(name, values)
            model_hits = self.models.hits(frame, target, key, explain=False, scores=scores)
            ruled = hits.filter(pl.col("mode") != "shadow").select(key).unique()
            model_hits = model_hits.with_columns(
                pl.when(pl.col(key).is_in(ruled[key].implode()))
                .then(pl.col("severity"))
                .otherwise(pl.lit("low"))
                .alias("severity")
            )
            hits = pl.concat([hits, model_hits], how="vertical_relaxed")
        counts = hits.group_by("mode", "rule_id").len()
        for mode, rid, n in counts.iter_rows():
            (self.stats.shadow_hits if mode == "shadow" else self.stats.rule_hits)[rid] += n
        # the evidence model: trust mitigates, and every verdict carries one reason per axis
        live = apply_trust(hits.filter(pl.col("mode") != "shadow"), frame, key)
        return axis_reasons(live, frame, target, key, self.settings.evidence)

    def _account_verdicts(
        self, points: pl.DataFrame
    ) -> tuple[dict[datetime, list[Verdict]], dict[datetime, list[str]]]:
        """Account verdicts for every (account_id, tick_end) point, grouped by tick.

        Only verdicts that change the alert book are built; the second map names, per tick, the accounts
        with a verdict that changes nothing (their episodes are only kept open: ``AlertBook.touch``).
        """
        w = self.settings.windows
        feats = add_axes(
            account_features(self.state, points, w.short, w.long), "account", self.settings.evidence
        )
        if self.on_features is not None:
            self.on_features("account", feats.drop("first_bucket"), points["tick_end"].max())  # type: ignore[arg-type]
        feats = feats.with_columns(
            pl.concat_str(
                [pl.col("tick_end").dt.epoch("us").cast(pl.String), pl.col("account_id")], separator="|"
            ).alias("_point")
        )
        hits = self._evaluate(feats, "account", "_point")
        if hits.height == 0:
            return {}, {}
        combined = combine(hits, "_point")
        rows = combined.join(feats, on="_point", how="left").sort("tick_end", "account_id")
        rows = self._drop_allowed(rows)
        # only rows that open an episode or raise its severity change the alert book (an account
        # alert's membership never grows): skip building the rest, in one vectorised pass. A row opens
        # an episode when the account has none or its last verdict is older than the idle span; it
        # escalates when its rank beats every earlier row of its episode (and the book's, if open).
        book = self.book.ranks("account")
        prev_hit = pl.col("tick_end").shift(1).over("account_id").fill_null(pl.col("_book_last"))
        rows = (
            rows.join(book, left_on="account_id", right_on="subject", how="left", maintain_order="left")
            .with_columns(
                (prev_hit.is_null() | (pl.col("tick_end") - prev_hit > pl.lit(self.book.idle))).alias(
                    "_opens"
                )
            )
            .with_columns(pl.col("_opens").cast(pl.Int32).cum_sum().over("account_id").alias("_episode"))
            .with_columns(
                (
                    pl.col("_opens")
                    | (
                        pl.col("_rank")
                        > pl.max_horizontal(
                            pl.col("_rank").cum_max().shift(1).over("account_id", "_episode"),
                            pl.when(pl.col("_episode") == 0).then(pl.col("_book_rank")),
                        ).fill_null(0)
                    )
                ).alias("_changes")
            )
        )
        quiet = rows.filter(~pl.col("_changes")).group_by("tick_end").agg("account_id")
        touches = dict(zip(quiet["tick_end"].to_list(), quiet["account_id"].to_list(), strict=True))
        out: dict[datetime, list[Verdict]] = {}
        for row in rows.filter(pl.col("_changes")).iter_rows(named=True):
            acct = row["account_id"]
            out.setdefault(row["tick_end"], []).append(
                Verdict(
                    "account",
                    acct,
                    [acct],
                    _RANK_NAME[row["_rank"]],
                    row["score"],
                    row["campaign_type"],
                    self._lazy_reasons(row),
                    {k: row.get(k) for k in ACCOUNT_EVIDENCE},
                    row["first_bucket"],
                )
            )
        return out, touches

    def _drop_allowed(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Account verdict rows minus allow-listed accounts (as the list stood at each tick), counted."""
        if not self.allowlist.entries:
            return rows
        orgs = self.state.accounts.select("account_id", "org_id")
        keep: list[pl.DataFrame] = []
        for (now,), part in rows.group_by(["tick_end"], maintain_order=True):
            assert isinstance(now, datetime)
            allowed = self.allowlist.allowed(part["account_id"], self.state.keys, orgs, now)
            keep.append(self._suppress(part, allowed))
        return pl.concat(keep, how="vertical_relaxed") if keep else rows.clear()

    def _suppress(self, rows: pl.DataFrame, allowed: dict[str, str]) -> pl.DataFrame:
        """``rows`` minus those whose ``account_id`` is allow-listed (account -> entry type), counted
        per entry type."""
        if not allowed:
            return rows
        kinds = rows["account_id"].replace_strict(allowed, default=None, return_dtype=pl.String)
        for kind, n in Counter(k for k in kinds.to_list() if k is not None).items():
            self.stats.suppressed[kind] += n
        return rows.filter(kinds.is_null())

    def _cluster_verdicts(
        self, touched: pl.Series, now: datetime, keys: pl.DataFrame, accounts: pl.DataFrame
    ) -> list[Verdict]:
        """Link the accounts as they stood at ``now``; score the clusters that hold a touched account."""
        w = self.settings.windows
        clusters = build_clusters(keys, accounts, self.settings.link)
        self.clusters = clusters
        if clusters.members.height == 0:
            return []
        live_ids = clusters.members.filter(pl.col("account_id").is_in(touched.implode()))[
            "cluster_id"
        ].unique()
        members = clusters.members.filter(pl.col("cluster_id").is_in(live_ids.implode()))
        feats = cluster_features(self.state, members, clusters.evidence, accounts, now, w.long)
        feats = add_axes(feats, "cluster", self.settings.evidence)
        if self.on_features is not None:
            self.on_features("cluster", feats.with_columns(pl.lit(now).alias("tick_end")), now)
        hits = self._evaluate(feats, "cluster", "cluster_id")
        if hits.height == 0:
            return []
        combined = combine(hits, "cluster_id")
        rows = combined.join(feats, on="cluster_id", how="left")
        alerting = rows["cluster_id"].implode()
        alert_members = members.filter(pl.col("cluster_id").is_in(alerting))
        context = _ClusterContext(keys, alert_members, clusters.links, now)
        # allow-listed members are left out of the accusation (and counted, once per cluster row)
        allowed = self.allowlist.allowed(
            alert_members["account_id"], keys, accounts.select("account_id", "org_id"), now
        )
        named = self._suppress(alert_members, allowed)
        # per cluster: the accused members (sorted) and the earliest bucket any of them has in the
        # window (the alert's first evidence); a cluster with neither raises nothing
        firsts = (
            self.state.buckets.join(named.select("account_id"), on="account_id", how="semi")
            .filter((pl.col("bucket") >= now - w.long) & (pl.col("bucket") < now))
            .group_by("account_id")
            .agg(pl.col("bucket").min())
        )
        per_cluster = (
            named.join(firsts, on="account_id", how="left")
            .group_by("cluster_id")
            .agg(pl.col("account_id").sort().alias("_accounts"), pl.col("bucket").min().alias("_first"))
            .filter(pl.col("_first").is_not_null())
        )
        out: list[Verdict] = []
        for row in rows.join(per_cluster, on="cluster_id", how="inner").iter_rows(named=True):
            evidence = _ClusterEvidence(context, row["cluster_id"], {k: row.get(k) for k in CLUSTER_EVIDENCE})
            out.append(
                Verdict(
                    "cluster",
                    row["cluster_id"],
                    row["_accounts"],
                    _RANK_NAME[row["_rank"]],
                    row["score"],
                    row["campaign_type"],
                    self._lazy_reasons(row),
                    evidence,
                    row["_first"],
                )
            )
        return out

    def _lazy_reasons(self, row: dict[str, Any]) -> _Reasons:
        """The reasons of a verdict row, model explanations computed only if it becomes an alert."""
        return _Reasons(self.models, row, self.rules)


class _Reasons:
    """A verdict row's reasons; model explanations are filled in only for rows that become alerts,
    batched per model across a tick's alerts (``explain_all``), or one by one when called alone."""

    def __init__(self, models: ModelSet, row: dict[str, Any], rules: RuleSet | None = None) -> None:
        self.models = models
        self.rules = rules
        self.row = row
        self.structs: list[dict[str, Any]] = row["reasons"]

    def pending(self) -> list[str]:
        """Model rule ids whose explanation is still missing."""
        return [
            s["rule_id"]
            for s in self.structs
            if s["detail"] is None and s["rule_id"].startswith(MODEL_PREFIX)
        ]

    def fill(self, rule_id: str, detail: str | None) -> None:
        """Set one model's explanation."""
        self.structs = [{**s, "detail": detail} if s["rule_id"] == rule_id else s for s in self.structs]

    def __call__(self) -> list[Reason]:
        for rid in self.pending():
            self.fill(rid, self.models.explain_row(self.row, rid))
        return describe(self.structs, self.rules, self.row)

    @staticmethod
    def explain_all(verdicts: list[Verdict]) -> None:
        """Fill every pending model explanation of ``verdicts`` with one inference per model."""
        todo: dict[str, list[_Reasons]] = {}
        for v in verdicts:
            if isinstance(v.reasons, _Reasons):
                for rid in v.reasons.pending():
                    todo.setdefault(rid, []).append(v.reasons)
        for rid, items in todo.items():
            lines = items[0].models.explain_rows([r.row for r in items], rid)
            for r, line in zip(items, lines, strict=True):
                r.fill(rid, line)


def _shared_keys(keys: pl.DataFrame, members: pl.DataFrame, top: int = 5) -> dict[str, dict[str, list[str]]]:
    """Per cluster: its most-shared linkage values (hashes, prefixes; never content), top per family."""
    k = (
        keys.join(members, on="account_id", how="inner")
        .filter(pl.col("family") != "signup")  # a sign-up burst is a time slot, not a shared value
        .group_by("cluster_id", "family", "key")
        .agg(pl.col("account_id").n_unique().alias("n"))
        .filter(pl.col("n") >= 2)
        .sort(["cluster_id", "family", "n", "key"], descending=[False, False, True, False])
        .group_by("cluster_id", "family", maintain_order=True)
        .head(top)
    )
    out: dict[str, dict[str, list[str]]] = {}
    for cid, fam, key, n in k.iter_rows():
        out.setdefault(cid, {}).setdefault(fam, []).append(f"{key} ({n} accounts)")
    return out


class _ClusterContext:
    """What cluster evidence is read from at one cluster tick; shared-key and link summaries are
    computed for the clusters whose verdicts become alerts (``fill``), not for every scored one."""

    def __init__(self, keys: pl.DataFrame, members: pl.DataFrame, links: pl.DataFrame, now: datetime) -> None:
        self.keys, self.members, self.links, self.now = keys, members, links, now
        self.filled: set[str] = set()
        self.shared: dict[str, dict[str, list[str]]] = {}
        self.link_map: dict[str, list[str]] = {}

    def fill(self, cluster_ids: list[str]) -> None:
        """Summaries for those of ``cluster_ids`` not yet summarised (one pass over keys and links)."""
        todo = sorted(set(cluster_ids) - self.filled)
        if not todo:
            return
        wanted = pl.Series(todo, dtype=pl.String).implode()
        self.shared |= _shared_keys(self.keys, self.members.filter(pl.col("cluster_id").is_in(wanted)))
        self.link_map |= _link_summaries(self.links.filter(pl.col("cluster_id").is_in(wanted)), self.now)
        self.filled.update(todo)


class _ClusterEvidence:
    """A cluster verdict's evidence: its features now, its shared keys and links when read."""

    def __init__(self, context: _ClusterContext, cluster_id: str, features: dict[str, Any]) -> None:
        self.context, self.cluster_id, self.features = context, cluster_id, features

    def __call__(self) -> dict[str, Any]:
        self.context.fill([self.cluster_id])
        return {
            **self.features,
            "shared": self.context.shared.get(self.cluster_id, {}),
            "links": self.context.link_map.get(self.cluster_id, []),
        }

    @staticmethod
    def fill_all(verdicts: list[Verdict]) -> None:
        """Compute the summaries of every cluster verdict in ``verdicts``, one pass per tick context."""
        by_context: dict[int, tuple[_ClusterContext, list[str]]] = {}
        for v in verdicts:
            if isinstance(v.evidence, _ClusterEvidence):
                ctx = v.evidence.context
                by_context.setdefault(id(ctx), (ctx, []))[1].append(v.evidence.cluster_id)
        for ctx, ids in by_context.values():
            ctx.fill(ids)


def _prepare(verdicts: list[Verdict]) -> None:
    """Batch the lazy parts of the verdicts that become alerts: model explanations, cluster evidence."""
    _Reasons.explain_all(verdicts)
    _ClusterEvidence.fill_all(verdicts)


def _link_summaries(links: pl.DataFrame, now: datetime, top: int = 5) -> dict[str, list[str]]:
    """Per cluster, its strongest links as text: type, accounts, weight, age (hours since last held)."""
    out: dict[str, list[str]] = {}
    for cid, link, accounts, weight, last_seen in (
        links.group_by("cluster_id", maintain_order=True).head(top).iter_rows()
    ):
        age = (now - last_seen).total_seconds() / 3600.0
        out.setdefault(cid, []).append(f"{link}: {accounts} accounts, weight {weight:.2f}, {age:.1f} h old")
    return out


def _is_multiple(ts: datetime, step: timedelta) -> bool:
    return _floor(ts, step) == ts


def _floor(ts: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=ts.tzinfo)
    n = (ts - epoch) // step
    return epoch + n * step
