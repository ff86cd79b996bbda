"""Rule/model fusion: one frame of features -> the rule hits and the model hits, in one table.

A model is a rule named ``model:<name>-v<N>`` (``MODEL_PREFIX``) among the rule hits, with the same
columns. Fusion rule: a model corroborates, it does not accuse alone. A model hit on a subject that no
live rule hit in the same evaluation is capped at ``low`` (an analyst lead); beside a rule hit it keeps
its own severity, so a model can raise a weak rule's low hit to medium or high, and its score joins the
noisy-or (``detector.alert.verdict.combine``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.contracts import Severity
from detector.detect.models.runtime import ModelSet
from detector.detect.rules import RuleSet

#: Model hits are named ``model:<name>-v<N>`` among the rule hits.
MODEL_PREFIX = "model:"

#: Called with (model name, scores) for every scored frame (the score-histogram metric).
ScoreObserver = Callable[[str, npt.NDArray[np.float64]], None]


def fuse(
    rules: RuleSet,
    models: ModelSet,
    frame: pl.DataFrame,
    target: str,
    key: str,
    on_scores: ScoreObserver | None = None,
) -> pl.DataFrame:
    """Rule hits plus model hits on ``frame`` (shadow hits included: the caller counts, then drops them).

    Columns as ``RuleSet.evaluate``: ``key``, rule_id, severity, score, mode, campaign_type, detail.
    """
    hits = rules.evaluate(frame, target, key=key)
    if not len(models) or not frame.height:
        return hits
    scores = models.scores(frame, target)  # one inference per model, for hits and metrics
    if on_scores is not None:
        for name, values in scores.items():
            on_scores(name, values)
    model_hits = models.hits(frame, target, key, explain=False, scores=scores)
    ruled = hits.filter(pl.col("mode") != "shadow").select(key).unique()
    model_hits = model_hits.with_columns(
        pl.when(pl.col(key).is_in(ruled[key].implode()))
        .then(pl.col("severity"))
        .otherwise(pl.lit(Severity.LOW.value))
        .alias("severity")
    )
    return pl.concat([hits, model_hits], how="vertical_relaxed")
