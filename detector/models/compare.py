"""Rules alone vs. rules plus models, on a held-out simulator run (the issue's acceptance table).

Fusion is emulated from the engine's own per-tick feature frames (``detector.models.data.capture``): at
each tick, an account is *flagged* when a live rule of severity medium or above fires on its account
row, on a cluster it belongs to at that tick, or, with models, when ``ModelSet.hits`` does the same.
An account's detection time is the first such tick. Recall per campaign family and false-positive rate
per benign persona are then counted as ``detector evaluate`` counts them (flagged at medium or above).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from detector.models.data import Captured
from detector.models.runtime import ModelSet

_MEDIUM = ("medium", "high", "critical")


@dataclass(frozen=True)
class Row:
    """One family or persona, rules alone vs. rules plus models."""

    group: str
    attack: bool
    n: int
    rules: int
    fused: int
    #: Median hours from the account's first tick to its detection, rules alone and fused.
    rules_ttd_h: float | None
    fused_ttd_h: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _flags(hits: pl.DataFrame, key: str, members: pl.DataFrame | None) -> pl.DataFrame:
    """(account_id, tick_end) of medium-or-above live hits (expanded to members for clusters)."""
    live = hits.filter((pl.col("mode") != "shadow") & pl.col("severity").is_in(_MEDIUM))
    live = live.select(key, "tick_end").unique()
    if members is not None:
        live = live.join(members, on=[key, "tick_end"], how="inner").select("account_id", "tick_end")
    return live.select("account_id", "tick_end")


def _hits(frame: pl.DataFrame, target: str, key: str, rules: Any, models: ModelSet | None) -> pl.DataFrame:
    parts = []
    for tick, part in frame.partition_by("tick_end", as_dict=True).items():
        h = rules.evaluate(part, target, key=key)
        if models is not None:
            h = pl.concat([h, models.hits(part, target, key)], how="vertical_relaxed")
        parts.append(h.with_columns(pl.lit(tick[0]).alias("tick_end")))
    return pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame()


def first_detection(run: Captured, rules: Any, models: ModelSet | None) -> dict[str, datetime]:
    """account_id -> the first tick at which it is flagged (medium or above)."""
    acc = _flags(_hits(run.account, "account", "account_id", rules, models), "account_id", None)
    members = run.cluster.select("cluster_id", "tick_end", pl.col("members").alias("account_id")).explode(
        "account_id"
    )
    clu = _flags(_hits(run.cluster, "cluster", "cluster_id", rules, models), "cluster_id", members)
    first = pl.concat([acc, clu]).group_by("account_id").agg(pl.col("tick_end").min())
    return dict(zip(first["account_id"].to_list(), first["tick_end"].to_list(), strict=True))


def compare(run: Captured, rules: Any, models: ModelSet) -> list[Row]:
    """Per family and persona: accounts flagged by rules alone and by rules plus models."""
    alone = first_detection(run, rules, None)
    fused = first_detection(run, rules, models)
    seen = run.account.group_by("account_id").agg(pl.col("tick_end").min())
    first_seen: Mapping[str, datetime] = dict(
        zip(seen["account_id"].to_list(), seen["tick_end"].to_list(), strict=True)
    )
    groups: dict[tuple[str, bool], list[str]] = {}
    for acct, info in sorted(run.accounts.items()):
        if acct in first_seen:
            groups.setdefault((str(info["group"]), bool(info["attacker"])), []).append(acct)

    def ttd(flagged: Mapping[str, datetime], accts: list[str]) -> float | None:
        hours = sorted((flagged[a] - first_seen[a]).total_seconds() / 3600 for a in accts if a in flagged)
        return round(hours[len(hours) // 2], 2) if hours else None

    rows = [
        Row(
            g,
            att,
            len(a),
            sum(x in alone for x in a),
            sum(x in fused for x in a),
            ttd(alone, a),
            ttd(fused, a),
        )
        for (g, att), a in groups.items()
    ]
    return sorted(rows, key=lambda r: (not r.attack, r.group))


def render(rows: list[Row], seed: int) -> str:
    """The Markdown table of ``compare``'s rows."""
    out = [
        f"Held-out simulator seed {seed}: accounts flagged at medium or above (recall for campaign families, "
        "false-positive rate for honest personas); TTD = median hours from the account's first tick.",
        "",
        "| group | kind | accounts | rules | rules + models | rules TTD h | rules + models TTD h |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kind = "campaign" if r.attack else "honest"
        out.append(
            f"| {r.group} | {kind} | {r.n} | {r.rules} ({r.rules / r.n:.2f}) "
            f"| {r.fused} ({r.fused / r.n:.2f}) "
            f"| {r.rules_ttd_h if r.rules_ttd_h is not None else '-'} "
            f"| {r.fused_ttd_h if r.fused_ttd_h is not None else '-'} |"
        )
    att = [r for r in rows if r.attack]
    ben = [r for r in rows if not r.attack]
    na, nb = sum(r.n for r in att), sum(r.n for r in ben)
    out.append(
        f"| **all campaigns** | | {na} | {sum(r.rules for r in att)} | {sum(r.fused for r in att)} | | |"
    )
    out.append(f"| **all honest** | | {nb} | {sum(r.rules for r in ben)} | {sum(r.fused for r in ben)} | | |")
    return "\n".join(out)
