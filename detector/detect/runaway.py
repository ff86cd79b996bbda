"""Run-time guard rail: an enforce rule that fires on too much of a tick's traffic is demoted to shadow.

A rule that passed ``rules check`` can still meet traffic its author never saw (a gateway change that
zeroes a field, a feature that drifts). If an enforce rule (or model) fires on more than
``max_fire_share`` of the subjects evaluated in one tick, and that tick evaluated at least
``min_subjects`` of them, the rule is demoted to shadow from that tick on (that tick included:
``guard_now``; the tick after it under ``context_lag``: ``guard_late``) until the rule set is swapped (a
reload): its hits are counted as shadow hits and raise no alert. Its hits in earlier ticks stay live,
however many ticks one evaluation spans, so a replay and a daemon agree. Every demotion
is counted (``EngineStats.demoted``, exported as ``detector_rule_demotions_total``), logged at error
level, and alerted on (``DetectorRuleDemoted``).

A demotion survives a restart: the checkpoint keeps each demoted rule with a fingerprint of what it
decides (target, mode, condition), and a restored engine keeps the demotions whose rule is unchanged.
Without this, a restart would lift them, and the rule's hits in ticks below the limit would raise
alerts that an uninterrupted run (or the replay) never raises. A rule edited while the daemon was down
is a new rule, as after a reload.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import polars as pl

from detector.detect.rules.ruleset import RuleSet
from detector.schema import UTC_US, make_schema
from detector.settings import RuleGuardSettings

log = logging.getLogger(__name__)


def demote(hits: pl.DataFrame, demoted: set[str]) -> pl.DataFrame:
    """Hits of demoted rules turned into shadow hits."""
    if not demoted or hits.height == 0:
        return hits
    return hits.with_columns(
        pl.when(pl.col("rule_id").is_in(sorted(demoted)))
        .then(pl.lit("shadow"))
        .otherwise(pl.col("mode"))
        .alias("mode")
    )


#: The guard's inputs per tick (under ``context_lag``): ``n`` subjects evaluated (``rule_id`` null) and
#: ``n`` subjects each enforce rule fired on; an account stage publishes its own, the population sums them.
COUNT_SCHEMA = make_schema({"tick_end": UTC_US, "rule_id": pl.String, "n": pl.Int64})
#: Local counts in, the counts the demotion reads out: the population's through the frame's last tick.
CountRelay = Callable[[pl.DataFrame], pl.DataFrame]


def tick_counts(hits: pl.DataFrame, frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """The guard's inputs per tick of ``frame`` (``key`` and ``tick_end`` per row): ``COUNT_SCHEMA``."""
    ticks = frame.select(key, "tick_end")
    sizes = ticks.group_by("tick_end").agg(pl.lit(None, pl.String).alias("rule_id"), pl.len().alias("n"))
    fired = (
        hits.filter(pl.col("mode") != "shadow")
        .select("rule_id", key)
        .unique()
        .join(ticks, on=key, how="inner")
        .group_by("tick_end", "rule_id")
        .agg(pl.len().alias("n"))
    )
    return pl.concat([sizes.cast(COUNT_SCHEMA), fired.select(COUNT_SCHEMA.names()).cast(COUNT_SCHEMA)])


def first_runaways(counts: pl.DataFrame, guard: RuleGuardSettings) -> dict[str, tuple[datetime, float]]:
    """Each rule's first tick over the limit in ``counts`` (summed per tick and rule): rule -> (tick,
    share)."""
    summed = counts.group_by("tick_end", "rule_id").agg(pl.col("n").sum())
    sizes = summed.filter(pl.col("rule_id").is_null() & (pl.col("n") >= guard.min_subjects))
    over = (
        summed.filter(pl.col("rule_id").is_not_null())
        .join(sizes.select("tick_end", pl.col("n").alias("_n")), on="tick_end", how="inner")
        .with_columns((pl.col("n") / pl.col("_n")).alias("share"))
        .filter(pl.col("share") > guard.max_fire_share)
        .sort("tick_end", "rule_id")
        .group_by("rule_id", maintain_order=True)
        .agg(pl.col("tick_end").first(), pl.col("share").first())
    )
    return {r: (t, s) for r, t, s in over.iter_rows()}


def guard_late(
    hits: pl.DataFrame,
    frame: pl.DataFrame,
    key: str,
    guard: RuleGuardSettings,
    demoted: tuple[set[str], Counter[str]],
    relay: CountRelay | None = None,
) -> pl.DataFrame:
    """The guard a tick late (``context_lag``, account verdicts): a rule is demoted from the tick after
    the first tick it fired on more than ``max_fire_share`` of the population's subjects (counts that
    ``relay`` sums over every account stage; None: this engine's own, the whole population). The counts
    do not depend on a demotion (a demoted hit is counted before it is turned), so the stages need not
    agree on anything but the sums. ``demoted``: the engine's set and its per-rule demotion counter."""
    local = tick_counts(hits, frame, key)
    counts = relay(local) if relay is not None and local.height else local
    return _hold(hits, frame, key, guard, demoted, counts, late=True)


def guard_now(
    hits: pl.DataFrame,
    frame: pl.DataFrame,
    key: str,
    guard: RuleGuardSettings,
    demoted: tuple[set[str], Counter[str]],
) -> pl.DataFrame:
    """The guard in the tick itself: a rule is demoted from the first tick of ``frame`` in which it
    fired on more than ``max_fire_share`` of that tick's subjects (this engine's own), that tick
    included; its hits in the frame's earlier ticks stay live, and later frames see it held. The
    verdicts so do not depend on how many ticks one frame spans (a replay passes many, the daemon a
    few). A frame without ``tick_end`` (a cluster frame: one tick) is one tick."""
    if "tick_end" not in frame.columns:
        frame = frame.with_columns(pl.lit(_ONE_TICK, UTC_US).alias("tick_end"))
    return _hold(hits, frame, key, guard, demoted, tick_counts(hits, frame, key), late=False)


#: The tick a frame without ``tick_end`` stands for (any one instant: only equality is read).
_ONE_TICK = datetime(1970, 1, 1, tzinfo=UTC)


def _hold(
    hits: pl.DataFrame,
    frame: pl.DataFrame,
    key: str,
    guard: RuleGuardSettings,
    demoted: tuple[set[str], Counter[str]],
    counts: pl.DataFrame,
    late: bool,
) -> pl.DataFrame:
    """``hits`` with the held rules' hits shadow, and each newly runaway rule's (first tick over the
    limit in ``counts``) from that tick on: after it when ``late``, that tick included otherwise. The
    new ones join the engine's set (``demoted``: the set and its per-rule demotion counter), counted
    and logged once each."""
    held, counter = demoted
    first = {r: ts for r, ts in first_runaways(counts, guard).items() if r not in held}
    old = demote(hits, held)
    for rule_id, (_, share) in first.items():
        held.add(rule_id)
        counter[rule_id] += 1
        log_demotion(rule_id, share, guard)
    if not first or old.height == 0:
        return old
    since = pl.DataFrame(
        {"rule_id": list(first), "_since": [t for t, _ in first.values()]},
        schema={"rule_id": pl.String, "_since": UTC_US},
    )
    after = pl.col("_since") < pl.col("_tick") if late else pl.col("_since") <= pl.col("_tick")
    gone = pl.col("_since").is_not_null() & after
    return (
        old.join(frame.select(key, _tick="tick_end"), on=key, how="left", maintain_order="left")
        .join(since, on="rule_id", how="left", maintain_order="left")
        .with_columns(pl.when(gone).then(pl.lit("shadow")).otherwise(pl.col("mode")).alias("mode"))
        .drop("_tick", "_since")
    )


def log_demotion(rule_id: str, share: float, guard: RuleGuardSettings) -> None:
    """The loud line an operator sees (and the alert rule points at)."""
    log.error(
        "rule demoted to shadow: it fired on %.0f%% of one tick's subjects (limit %.0f%%)",
        share * 100,
        guard.max_fire_share * 100,
        extra={"rule": rule_id, "share": round(share, 4)},
    )


def rule_fingerprint(rules: RuleSet, rule_id: str) -> str | None:
    """What the rule decides, hashed (None: no such rule, e.g. a model's id)."""
    rule = rules.get(rule_id)
    if rule is None:
        return None
    what = "\0".join((rule.target, rule.mode, rule.condition))
    return hashlib.sha256(what.encode()).hexdigest()[:16]


def demotions_state(rules: RuleSet, demoted: Iterable[str]) -> dict[str, str | None]:
    """The demotions for a checkpoint: rule id -> fingerprint (None for a model: kept while it exists)."""
    return {rule_id: rule_fingerprint(rules, rule_id) for rule_id in sorted(demoted)}


def restore_demotions(rules: RuleSet, saved: dict[str, str | None]) -> set[str]:
    """The saved demotions still in force: the same rule (same fingerprint) in ``rules``."""
    kept = {rule_id for rule_id, fp in saved.items() if rule_fingerprint(rules, rule_id) == fp}
    for rule_id in sorted(kept):
        log.warning("rule stays demoted to shadow (demoted before the restart)", extra={"rule": rule_id})
    for rule_id in sorted(set(saved) - kept):
        log.info("rule changed while stopped: its demotion is lifted", extra={"rule": rule_id})
    return kept


def keep_demotions(old: RuleSet, new: RuleSet, demoted: Iterable[str]) -> set[str]:
    """The demotions that carry over when a restored engine takes the rule set in force (not a
    reload): those of rules that ``new`` holds unchanged."""
    return {r for r in demoted if rule_fingerprint(old, r) == rule_fingerprint(new, r)}
