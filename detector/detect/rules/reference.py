"""The honest reference population shipped with the rules: a guard rail for ``rules check``.

``<rules>/reference/`` holds the account and cluster features the engine computed for a simulated
population's honest personas (``account.parquet``, ``cluster.parquet``: ``persona``, ``subject`` and
feature columns) and ``population.json`` (how it was made, and ``max_honest_share``: the one place the
threshold lives). An enforce rule that fires on more than that share of one persona's subjects at any
hour fails the check: a condition that accuses honest users wholesale (``requests_24h >= 0``) never
reaches a deployment. Shadow rules are exempt: shadow mode is where such a rule is measured.
Regenerate with ``scripts/make_rules_reference.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from detector.detect.rules.errors import RuleError
from detector.detect.rules.ruleset import CompiledRule

REFERENCE_DIR = "reference"


def check_reference(directory: Path, rules: list[CompiledRule]) -> list[RuleError]:
    """One error per enforce rule that fires on too many honest subjects of a persona (none without a
    reference folder)."""
    ref = directory / REFERENCE_DIR
    manifest = ref / "population.json"
    if not manifest.is_file():
        return []
    try:
        limit = float(json.loads(manifest.read_text())["max_honest_share"])
        frames = {t: pl.read_parquet(ref / f"{t}.parquet") for t in ("account", "cluster")}
    except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError) as exc:
        return [RuleError(manifest, None, None, f"reference population unreadable: {exc}")]
    errors: list[RuleError] = []
    for rule in rules:
        frame = frames.get(rule.target)
        if rule.shadow or frame is None or frame.height == 0:
            continue
        missing = [f for f in rule.features if f not in frame.columns]
        if missing:
            message = f"reference population has no column {missing} (regenerate it)"
            errors.append(RuleError(rule.path, 1, 1, message))
            continue
        shares = (
            frame.with_columns(rule.expr.fill_null(False).alias("_fired"))
            .group_by("persona", "subject")
            .agg(pl.col("_fired").any())
            .group_by("persona")
            .agg(pl.col("_fired").mean().alias("share"), pl.len().alias("subjects"))
            .filter(pl.col("share") > limit)
            .sort("share", "persona", descending=[True, False])
        )
        if shares.height:
            worst = ", ".join(f"{p} {s:.0%} of {n}" for p, s, n in shares.iter_rows())
            message = (
                f"enforce rule fires on more than {limit:.0%} of honest {rule.target}s of the reference "
                f"population ({worst}): narrow it, or run it in shadow mode"
            )
            errors.append(RuleError(rule.path, 1, 1, message))
    return errors
