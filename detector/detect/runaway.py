"""Run-time guard rail: an enforce rule that fires on too much of a tick's traffic is demoted to shadow.

A rule that passed ``rules check`` can still meet traffic its author never saw (a gateway change that
zeroes a field, a feature that drifts). If an enforce rule (or model) fires on more than
``max_fire_share`` of the subjects evaluated in one tick, and that tick evaluated at least
``min_subjects`` of them, the rule is demoted to shadow until the rule set is swapped (a reload): its
hits are counted as shadow hits and raise no alert. Every demotion
is counted (``EngineStats.demoted``, exported as ``detector_rule_demotions_total``), logged at error
level, and alerted on (``DetectorRuleDemoted``).
"""

from __future__ import annotations

import logging

import polars as pl

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
