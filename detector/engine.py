"""The detection engine: one object fed decoded batches by replay and by the daemon alike.

Flow per batch: enrich (prompt text dropped) -> buffer -> for every tick boundary the event-time
watermark crosses: de-duplicate, fold into window state, account features, link graph, cluster
features, rules, verdicts, alerts. Event time drives everything: the same events give the same alerts
whatever the batch sizes, the machine or the wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

import polars as pl

from detector.alert.changes import book_changes
from detector.alert.evidence import ClusterContext, account_verdict, accused, cluster_verdict, prepare
from detector.alert.verdict import AlertBook, Verdict, combine, own_detection
from detector.contracts import Alert, Kind
from detector.detect.aged import AgedSeats, Release, weigh
from detector.detect.allowlist import AllowList, drop_allowed, suppress
from detector.detect.context import population_sheets
from detector.detect.evidence import add_axes
from detector.detect.fusion import fuse
from detector.detect.models.runtime import ModelSet
from detector.detect.room import RoomContext, spare_rooms, spare_sheets
from detector.detect.rules import RuleSet
from detector.detect.runaway import guard_late, guard_now
from detector.detect.seat import SeatWalk
from detector.engine_types import SIGNAL_METRICS, EngineClock, EngineStats, Observers, floor_time, is_multiple
from detector.enrich import enrich
from detector.enrich.ipintel import IpIntel
from detector.enrich.prompt.hashing import TextKey
from detector.intel.hashing import PartnerIndex
from detector.memory import after_pass
from detector.schema import UTC_US
from detector.settings import EngineSettings
from detector.window.asof import KeyTimeline, change_ticks, lapse_ticks
from detector.window.batches import account_features_in_parts, with_points
from detector.window.context import new_model_flags
from detector.window.eventtime import EventTimeGuard
from detector.window.features import cluster_features
from detector.window.link import Clusters, build_clusters
from detector.window.samples import with_cluster_samples
from detector.window.sheets import with_sheets
from detector.window.state import WindowState

#: ``EngineStats``, ``EngineClock``, ``Observers``, ``SIGNAL_METRICS``: in ``engine_types.py`` (imported too).
__all__ = ["SIGNAL_METRICS", "Engine", "EngineClock", "EngineFactory", "EngineStats", "Observers"]


class EngineFactory(Protocol):
    """Builds a fresh engine with the given observers (the daemon builds one per ownership)."""

    def __call__(self, *, observers: Observers | None = None) -> Engine: ...


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
        observers: Observers | None = None,
        text_key: TextKey | None = None,
    ) -> None:
        self.settings = settings
        self.text_key = text_key  #: the secret key on ``text_fp`` (``EngineSettings.text_key``); None: public
        #: rules demoted to shadow since the rule set was last swapped in (checkpointed with a
        #: fingerprint of each rule: a restart keeps the demotions of unchanged rules, ``runaway``)
        self.demoted: set[str] = set()
        self._rules = rules
        self.models = models if models is not None else ModelSet()
        self.intel = intel
        self.allowlist = allowlist or AllowList()
        self.observers = observers or Observers()
        #: A partner's indicators (``detector intel import``): matches become ``shared_intel`` links.
        self.partner = partner
        self.state = WindowState()
        self.book = AlertBook(settings.windows.episode_idle)
        self.stats = EngineStats()
        self.clock = EngineClock()
        self.clusters: Clusters | None = None
        #: the two-stage split (``runtime/shards.py``, under ``context_lag``): "account" raises account
        #: verdicts only, "cluster" cluster verdicts only (and builds the contexts); "both": one engine
        self.stage: Literal["both", "account", "cluster"] = "both"
        #: screens future and implausible event times out before ``process`` (replay and daemon)
        self.time_guard = EventTimeGuard(settings.event_time)

    @property
    def rules(self) -> RuleSet:
        """The rule set; swapping in a new one (a reload) lifts every run-time demotion."""
        return self._rules

    @rules.setter
    def rules(self, rules: RuleSet) -> None:
        self._rules = rules
        self.demoted = set()

    @property
    def max_event_ts(self) -> datetime | None:
        """Newest event time seen (the watermark is this minus the allowed lateness)."""
        return self.clock.max_ts

    @property
    def closed_through(self) -> datetime | None:
        """End of the last closed tick: every alert up to this event time has been emitted."""
        return self.clock.last_closed

    # ------------------------------------------------------------------------------------------
    def enrich(self, events: pl.DataFrame) -> pl.DataFrame:
        """Enrichment only (replay enriches chunk by chunk before sorting, to drop text early)."""
        return enrich(events.drop("_pos", strict=False), self.intel, self.text_key)

    def process(self, events: pl.DataFrame, *, enriched: bool = False) -> list[Alert]:
        """Take a batch of decoded (or already enriched) events; return alerts for every closed tick."""
        if events.height == 0:
            return []
        batch = events if enriched else self.enrich(events)
        tick = self.settings.windows.tick
        if self.clock.tick_end is not None:  # a re-read event is a duplicate now, not a late event
            batch, dup = self.state.drop_counted(batch, self.clock.tick_end - tick)
            self.stats.duplicates += dup
            if batch.height == 0:
                return []
        batch_max = batch["ts"].max()
        assert isinstance(batch_max, datetime)
        if self.clock.tick_end is None:
            batch_min = batch["ts"].min()
            assert isinstance(batch_min, datetime)
            self.clock.tick_end = floor_time(batch_min, tick) + tick
        else:
            closed_before = self.clock.tick_end - tick
            late = batch.filter(pl.col("ts") < closed_before).height
            self.stats.late += late
            self.clock.late_waiting += late
        self.clock.max_ts = batch_max if self.clock.max_ts is None else max(self.clock.max_ts, batch_max)
        self.clock.pending.append(batch)
        alerts: list[Alert] = []
        if self.clock.late_waiting > self.settings.event_time.max_late_events:
            # the clock is stuck (or the stream far behind it): fold the late events into the last
            # closed tick now rather than hold them without limit
            self.stats.late_folded += self.clock.late_waiting
            alerts += self._close_ticks(self.clock.tick_end - tick, self.clock.tick_end - tick)
        lateness = self.settings.windows.allowed_lateness
        # the watermark's floor is year 1 (``datetime.min``): it stays in range
        watermark = max(self.clock.max_ts, datetime.min.replace(tzinfo=UTC) + lateness) - lateness
        if self.clock.tick_end <= watermark:
            # every tick ending at or before the watermark closes: computed, not listed (a gap of
            # centuries between two events is two numbers, not millions of ticks)
            last = self.clock.tick_end + (watermark - self.clock.tick_end) // tick * tick
            first, self.clock.tick_end = self.clock.tick_end, last + tick
            alerts += self._close_ticks(first, last)
        return alerts

    def flush(self) -> list[Alert]:
        """Close every pending tick (end of input)."""
        if not self.clock.pending or self.clock.tick_end is None:
            return []
        tick = self.settings.windows.tick
        newest = max(p["ts"].max() for p in self.clock.pending)  # type: ignore[type-var]
        assert isinstance(newest, datetime)
        first = self.clock.tick_end
        last = first + max(timedelta(0), newest - first) // tick * tick
        if last <= newest:
            last += tick
        self.clock.tick_end = last + tick
        return self._close_ticks(first, last, final=True)

    def time_healthy(self, now: datetime) -> bool:
        """False while the clock is implausible (ahead of ``now`` by more than the allowed skew) or
        too many late events wait (readiness)."""
        e = self.settings.event_time
        return self.clock.healthy(now, e.future_skew, e.max_late_events)

    # ------------------------------------------------------------------------------------------
    def _close_ticks(self, first_end: datetime, last_end: datetime, *, final: bool = False) -> list[Alert]:
        """Close the ticks ending from ``first_end`` to ``last_end`` (consecutive) in one pass.

        Every event belongs to the first closing tick whose end is after it (late events to the first
        one). Per-tick semantics are kept exactly: features of a tick see only buckets before its end,
        links see the keys as they stood at that tick, and alerts are emitted tick by tick. ``final``
        (end of input) also links and scores clusters at the last tick, boundary or not.
        """
        if not self.clock.pending:
            return []
        w = self.settings.windows
        buffered = self.clock.pending
        pending = pl.concat(buffered, how="vertical_relaxed") if len(buffered) > 1 else buffered[0]
        self.clock.late_waiting = 0  # every late event is before ``first_end``: due now
        due = pending.filter(pl.col("ts") < last_end)
        rest = pending.filter(pl.col("ts") >= last_end)
        self.clock.pending = [rest] if rest.height else []
        if due.height == 0:
            return []
        every = f"{int(w.tick.total_seconds())}s"
        due = due.with_columns(
            pl.max_horizontal(
                pl.col("ts").dt.truncate(every) + pl.lit(w.tick), pl.lit(first_end, dtype=UTC_US)
            ).alias("_tick")
        ).sort("_tick", "ts", "request_id")
        idle = {"account_id": self.state.accounts, "model": self.state.models}
        splits = {*lapse_ticks(due, idle, w.account_idle), *change_ticks(due, self.state.accounts)}
        if splits:  # in parts (evicting in between, account attributes as they stood), as tick by tick
            self.clock.pending = [pending]
            ends = [*(t - w.tick for t in sorted(splits)), last_end]
            parts = zip([first_end, *sorted(splits)], ends, strict=True)
            return [a for f, e in parts for a in self._close_ticks(f, e, final=final and e == last_end)]
        due, dup = self.state.drop_seen(due)
        self.stats.duplicates += dup
        if due.height == 0:
            return []
        self.stats.events += due.height
        due = new_model_flags(self.state, due, self.settings, self.observers.on_models)
        keys_before = self.state.keys
        self.state.partner = self.partner  # configuration: survives a state restored from a checkpoint
        key_log = self.state.add(due, w.tick, w.signup_burst)
        # every reader at a tick reads the keys as they stood then (``window.asof``), never the table
        # after the whole batch
        timeline = KeyTimeline.stored(keys_before, key_log, self.state, w.cluster_every)
        sums = due.select(pl.col(c).fill_null(False).sum().alias(n) for n, c in SIGNAL_METRICS.items())
        for name, value in sums.row(0, named=True).items():
            self.stats.signals[name] += int(value)

        per_tick = due.group_by("_tick").agg(
            pl.col("ts").max().alias("detected"), pl.col("account_id").unique().sort().alias("touched")
        )
        # the link window as eviction after the previous closed tick left it: keys used since
        per_tick = per_tick.sort("_tick").with_columns(
            (pl.col("_tick").shift(1).fill_null(pl.lit(self.clock.last_closed, dtype=UTC_US)) - w.link).alias(
                "since"
            )
        )
        account_verdicts, account_touches = self._account_verdicts(
            due.select("account_id", pl.col("_tick").alias("tick_end")).unique(),
            timeline,
            per_tick.select(pl.col("_tick").alias("tick_end"), "since"),
        )
        if self.settings.context_lag:  # an account alert's time is its own newest event (a shard's own)
            own_detection(account_verdicts, due)
        alerts: list[Alert] = []
        last_tick = per_tick["_tick"][-1]
        for now, detected, touched, since in per_tick.iter_rows():
            self.stats.ticks += 1
            verdicts = account_verdicts.get(now, [])
            if self.stage != "account":
                self.clock.touched.append(pl.Series("account_id", touched, dtype=pl.String))
            if self.stage != "account" and (
                is_multiple(now, w.cluster_every) or (final and now == last_tick)
            ):
                keys_now = timeline.at(now, since)
                accounts_now = self.state.accounts.filter(pl.col("first_seen") < now)
                if self.clock.last_closed is not None:
                    accounts_now = accounts_now.filter(
                        pl.col("last_seen") >= self.clock.last_closed - w.account_idle
                    )
                all_touched = pl.concat(self.clock.touched).unique().sort()
                verdicts += self._cluster_verdicts(all_touched, now, keys_now, accounts_now)
                self.clock.touched = []
            new = self.book.update(verdicts, detected, now, prepare=prepare)
            self.book.touch("account", account_touches.get(now, []), now)
            for a in new:
                self.stats.alerts[a.severity.value] += 1
            alerts += new
            self.clock.last_closed = now
        assert self.clock.last_closed is not None
        self.stats.episodes_closed += self.book.expire(self.clock.last_closed)
        self.stats.evicted.update(
            self.state.evict(
                self.clock.last_closed,
                w.long + w.tick,
                w.link,
                w.account_idle,
                w.dedup,
                self.settings.state_caps,
            )
        )
        after_pass(self.settings.release_memory)  # what the pass freed goes back (``detector.memory``)
        return alerts

    def _evaluate(
        self, frame: pl.DataFrame, target: Kind, key: str, release: Release | None = None
    ) -> pl.DataFrame:
        """Live rule and model hits (``fuse``); every hit counted, shadow ones dropped after."""
        hits = fuse(self.rules, self.models, frame, target, key, self.observers.on_scores)
        guard, held = self.settings.rule_guard, (self.demoted, self.stats.demoted)
        if self.settings.context_lag and target == "account":  # a tick late, over the population
            hits = guard_late(hits, frame, key, guard, held, self.observers.on_guard)
        else:
            hits = guard_now(hits, frame, key, guard, held)
        counts = hits.group_by("mode", "rule_id").len()
        for mode, rid, n in counts.iter_rows():
            (self.stats.shadow_hits if mode == "shadow" else self.stats.rule_hits)[rid] += n
        live = hits.filter(pl.col("mode") != "shadow")  # the evidence model: trust, a group's release, axes
        return weigh(live, frame, target, key, self.settings.evidence, release)

    def _account_verdicts(
        self, points: pl.DataFrame, timeline: KeyTimeline, since: pl.DataFrame
    ) -> tuple[dict[datetime, list[Verdict]], dict[datetime, list[str]]]:
        """Account verdicts for every (account_id, tick_end) point, grouped by tick (``since``: each
        tick's link window, for the keys the allow-list matches as they stood at that tick). Only verdicts
        that change the alert book are built; the second map names, per tick, the accounts with a verdict
        that changes nothing (their episodes are only kept open: ``AlertBook.touch``)."""
        w, ev = self.settings.windows, self.settings.evidence
        first_tick = points["tick_end"].min()
        assert isinstance(first_tick, datetime)
        lag = w.tick if self.settings.context_lag else timedelta(0)  # the population a tick ago (issue 13)
        # under the lag the population only through each tick's context (``detect/context.py``, round 15)
        relay = self.observers.on_context
        own = self.stage != "cluster"  # the cluster stage: the contexts (its part), no account verdict
        sheets, contexts = population_sheets(self.state, points, timeline, since, self.settings, relay, own)
        if not own:
            return {}, {}
        feats = account_features_in_parts(
            self.state, points, w.short, w.long, self.settings.feature_batch_points
        )
        feats = add_axes(with_sheets(feats, sheets, ["account_id", "tick_end"]), "account", ev)
        if self.observers.on_features is not None:
            self.observers.on_features("account", feats.drop("first_bucket"), points["tick_end"].max())  # type: ignore[arg-type]
        feats = with_points(feats)  # below: a router seat's sign-up group may lift the trust cap (round 20)
        aged = AgedSeats.of(self.state, timeline, since, self.settings, lag, contexts)
        hits = self._evaluate(feats, "account", "_point", aged)
        if hits.height == 0:
            return {}, {}
        # a tutorial's exercises are the room's, not the account's own harvest (``detect/room.py``)
        rooms = RoomContext(
            timeline.fresh(),
            since,
            self.state.template_rows(points["account_id"].unique(), first_tick - w.long),
            self.state.accounts,
            self.settings.link.min_overlap,
            lag,
            contexts,
        )
        # a course's exercise sheet is not a sweep (``detect/sheets.py``), and a router sub-account's
        # tool reasoning is its team's (``detect/seat.py``): one walk over the ticks for rooms and seats
        seats = SeatWalk(hits, feats, rooms, self.state, ev, w.long)
        hits = seats.spare(spare_sheets(spare_rooms(hits, feats, rooms, ev, w.long, seats.visit), feats, ev))
        combined = combine(hits, "_point")
        rows = combined.join(feats, on="_point", how="left").sort("tick_end", "account_id")
        orgs = self.state.accounts.select("account_id", "org_id")
        if self.allowlist.entries:
            keys = timeline.at_points(
                rows.select("account_id", "tick_end").unique().join(since, on="tick_end")
            )
            rows = drop_allowed(self.allowlist, rows, keys, orgs, self.stats.suppressed)
        # only rows that open an episode or raise its severity change the alert book: build those
        changing, touches = book_changes(rows, self.book)
        out: dict[datetime, list[Verdict]] = {}
        for row in changing.iter_rows(named=True):
            out.setdefault(row["tick_end"], []).append(account_verdict(row, self.models, self.rules))
        return out, touches

    def _cluster_verdicts(
        self, touched: pl.Series, now: datetime, keys: pl.DataFrame, accounts: pl.DataFrame
    ) -> list[Verdict]:
        """Link the accounts as they stood at ``now``; score the clusters that hold a touched account."""
        w = self.settings.windows
        clusters = build_clusters(keys, accounts, self.settings.link)
        self.clusters = clusters
        if clusters.members.height == 0:
            return []
        live = clusters.members.filter(pl.col("account_id").is_in(touched.implode()))["cluster_id"]
        members = clusters.members.filter(pl.col("cluster_id").is_in(live.implode()))
        feats = cluster_features(
            self.state, members, clusters.evidence, accounts, now, w.long, clusters.subaccounts, keys=keys
        )
        ev = self.settings.evidence
        feats = add_axes(with_cluster_samples(feats, self.state, members, now, w.long, ev), "cluster", ev)
        if self.observers.on_features is not None:
            self.observers.on_features("cluster", feats.with_columns(pl.lit(now).alias("tick_end")), now)
        hits = self._evaluate(feats, "cluster", "cluster_id")
        if hits.height == 0:
            return []
        rows = combine(hits, "cluster_id").join(feats, on="cluster_id", how="left")
        alert_members = members.filter(pl.col("cluster_id").is_in(rows["cluster_id"].implode()))
        context = ClusterContext(keys, alert_members, clusters.links, now)
        # allow-listed members are left out of the accusation (and counted, once per cluster row)
        allowed = self.allowlist.allowed(
            alert_members["account_id"], keys, accounts.select("account_id", "org_id"), now
        )
        named = suppress(alert_members, allowed, self.stats.suppressed)
        per_cluster = accused(
            named, self.state.bucket_rows(named["account_id"].unique(), now - w.long, now), now, w.long
        )
        return [
            cluster_verdict(row, context, self.models, self.rules)
            for row in rows.join(per_cluster, on="cluster_id", how="inner").iter_rows(named=True)
        ]
