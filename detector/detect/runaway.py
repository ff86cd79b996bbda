"""Run-time guard rail: an enforce rule that fires on too much of a tick's traffic is demoted to shadow.

A rule that passed ``rules check`` can still meet traffic its author never saw (a gateway change that
zeroes a field, a feature that drifts). If an enforce rule (or model) fires on more than
``max_fire_share`` of the subjects evaluated in one tick, and that tick evaluated at least
``min_subjects`` of them, the rule is demoted to shadow until the rule set is swapped (a reload): its
hits are counted as shadow hits and raise no alert. Every demotion
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
from collections.abc import Iterable

import polars as pl

from detector.detect.rules.ruleset import RuleSet
from detector.settings import RuleGuardSettings

log = logging.getLogger(__name__)


def runaway_rules(
    hits: pl.DataFrame, frame: pl.DataFrame, key: str, guard: RuleGuardSettings
) -> dict[str, float]:
    """Enforce rules firing on more than the allowed share of one tick's subjects: rule -> worst share.

    ``frame`` is what was evaluated (``key`` per row; ``tick_end`` when it spans several ticks).
    """
    live = hits.filter(pl.col("mode") != "shadow")
    if live.height == 0:
        return {}
    tick = pl.col("tick_end") if "tick_end" in frame.columns else pl.lit(0)
    ticks = frame.select(key, tick.alias("_t"))
    active = ticks.group_by("_t").agg(pl.len().alias("_n")).filter(pl.col("_n") >= guard.min_subjects)
    if active.height == 0:
        return {}
    shares = (
        live.select("rule_id", key)
        .unique()
        .join(ticks, on=key, how="inner")
        .group_by("rule_id", "_t")
        .agg(pl.len().alias("_fired"))
        .join(active, on="_t", how="inner")
        .with_columns((pl.col("_fired") / pl.col("_n")).alias("share"))
        .filter(pl.col("share") > guard.max_fire_share)
        .group_by("rule_id")
        .agg(pl.col("share").max())
    )
    return dict(zip(shares["rule_id"].to_list(), shares["share"].to_list(), strict=True))


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
