"""Rule/model fusion: one frame of features -> the rule hits and the model hits, in one table.

A model is a rule named ``model:<name>-v<N>`` (``MODEL_PREFIX``) among the rule hits, with the same
columns. Fusion rule: a model corroborates; it accuses alone only where it has earned the vote.

- Beside a live rule hit on the same subject in the same evaluation, a model hit keeps its own severity,
  so a model can raise a weak rule's low hit to medium or high, and its score joins the noisy-or
  (``detector.alert.verdict.combine``).
- Alone, a model hit is capped at ``low`` (an analyst lead), unless the model's manifest records a
  precision of at least ``settings.model_vote_precision`` (0.99) at its medium threshold, measured on the
  calibration block of simulator draws (``ModelSet.voters``): then it is capped at ``medium``. A model
  alone never reaches ``high``.
- On a cluster, the voter's lone medium also needs ``accounts >= settings.model_vote_min_accounts`` (5):
  the group size every cluster rule that accuses on coordination already requires (rules/cluster_*.yaml).
  A voter alone on a smaller cluster is a low lead. Account models are unchanged.
- ... and the farm rules' provenance gate (the ``no_customer_explains`` column ``evidence.add_axes``
  writes, which the rules read): "is there a known customer who explains the pattern?" is the evidence
  model's third question, and a model must ask it as the rules do. A customer's team, a room (a
  hackathon behind one address), a router tenant's established seats: the rules spare them, so a lone
  vote must too.
- ... and coordination beyond one artefact: ``rare_artefact_families >=
  settings.model_vote_min_artefact_families`` (2, the farm rule's floor), on accounts that could be a
  farm's (the ``farm_accounts`` column ``add_axes`` writes, ``provenance.farm_accounts``: nearly all
  new, mostly unverified or bulk-provisioned, the rules' freshness gate, its bars in settings). A
  startup's engineers on their in-house build, a tool's established users, a one-template group: the
  rules accuse them only beside a content signal, so a lone vote does not (issue 17, round 16).

Scores are the models' calibrated probabilities (``detector.detect.models.manifest.Calibration``).
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

#: The columns a lone vote on a cluster reads (group size, provenance, coordination, freshness).
VOTE_GATE = (
    "accounts",
    "no_customer_explains",
    "rare_artefact_families",
    "farm_accounts",
)

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
    votes = pl.col("rule_id").is_in(sorted(models.voters()))
    if target == "cluster":  # a lone vote on a cluster needs the group a coordination rule needs
        if not set(VOTE_GATE) <= set(frame.columns):  # no group size or provenance known: no lone vote
            votes = pl.lit(False)
        else:  # the group a coordination rule needs, that no customer, room or tenant explains
            unexplained = pl.col("no_customer_explains").fill_null(False)
            big = (pl.col("accounts") >= models.vote_min_accounts) & unexplained
            # ... coordinated beyond one artefact, on accounts that could be a farm's
            big = (
                big
                & (pl.col("rare_artefact_families") >= models.vote_min_artefacts)
                & pl.col("farm_accounts").fill_null(False)
            )
            votes = votes & pl.col(key).is_in(frame.filter(big)[key].implode())
    lone_cap = pl.when(votes).then(pl.lit(Severity.MEDIUM.value)).otherwise(pl.lit(Severity.LOW.value))
    model_hits = model_hits.with_columns(
        pl.when(pl.col(key).is_in(ruled[key].implode()))
        .then(pl.col("severity"))
        .otherwise(lone_cap)  # a model hit is medium or high: alone, medium for a voter, else low
        .alias("severity")
    )
    return pl.concat([hits, model_hits], how="vertical_relaxed")
