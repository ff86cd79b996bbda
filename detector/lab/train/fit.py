"""Fitting: one estimator recipe, out-of-fold scores for the threshold, held-out metrics.

The estimator is scikit-learn's ``GradientBoostingClassifier`` (depth-3 trees, 100 rounds, row
subsampling with a fixed ``random_state``): small once exported (tens of KB), deterministic, exported
exactly by skl2onnx's tree-ensemble converter (``HistGradientBoostingClassifier``'s converter fails on
this skl2onnx/onnx pair).

The decision threshold is chosen on *out-of-fold* scores (each training group scored by a model fitted
without it), never on the held-out data: the highest per-entity benign score plus ``THRESHOLD_MARGIN``
(entities are accounts or clusters: an account is accused when any of its ticks scores high), clipped to
[``MIN_THRESHOLD``, ``MAX_THRESHOLD``], or for prompts the ``PROMPT_FP_QUANTILE`` quantile of benign
out-of-fold scores. The high band sits halfway between the threshold and 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

#: The fixed seed of every estimator (determinism).
RANDOM_STATE: Final = 20260301
ESTIMATOR_PARAMS: Final[dict[str, Any]] = {
    "n_estimators": 100,
    "max_depth": 3,
    "learning_rate": 0.1,
    "subsample": 0.5,
    "random_state": RANDOM_STATE,
}
#: Added to the highest benign out-of-fold entity score: out-of-fold scores are optimistic for new data.
THRESHOLD_MARGIN: Final = 0.1
#: A threshold below 0.5 would accuse on a minority vote; above 0.95 leaves no room for the high band.
MIN_THRESHOLD: Final = 0.5
MAX_THRESHOLD: Final = 0.95
#: Prompt model: the share of benign prompts allowed over the threshold (out of fold) is 1 - this.
PROMPT_FP_QUANTILE: Final = 0.99


def make_estimator(**overrides: Any) -> Any:
    """A fresh, unfitted ``GradientBoostingClassifier`` with the project's parameters."""
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(**{**ESTIMATOR_PARAMS, **overrides})


def positive_proba(estimator: Any, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """scikit-learn's probability of the positive class."""
    return np.asarray(estimator.predict_proba(x), dtype=np.float64)[:, 1]


def out_of_fold(
    xs: Sequence[npt.NDArray[np.float32]], ys: Sequence[npt.NDArray[np.bool_]], **overrides: Any
) -> list[npt.NDArray[np.float64]]:
    """For each group i: scores of group i by a model fitted on every other group."""
    out = []
    for i in range(len(xs)):
        x = np.concatenate([g for j, g in enumerate(xs) if j != i])
        y = np.concatenate([g for j, g in enumerate(ys) if j != i])
        out.append(positive_proba(make_estimator(**overrides).fit(x, y), xs[i]))
    return out


def entity_threshold(benign_entity_max: float) -> float:
    """The decision threshold from the highest benign out-of-fold entity score (module docstring)."""
    raw = math.ceil((benign_entity_max + THRESHOLD_MARGIN) * 100) / 100
    return float(min(MAX_THRESHOLD, max(MIN_THRESHOLD, raw)))


def quantile_threshold(benign_scores: npt.NDArray[np.float64]) -> float:
    """The prompt model's threshold: a high quantile of benign out-of-fold scores, at least 0.5."""
    q = float(np.quantile(benign_scores, PROMPT_FP_QUANTILE)) if benign_scores.size else 0.0
    return float(min(MAX_THRESHOLD, max(MIN_THRESHOLD, math.ceil(q * 100) / 100)))


def high_band(threshold: float) -> float:
    """The score from which a hit is ``high``: halfway from the threshold to 1."""
    return round(threshold + (1.0 - threshold) / 2, 4)


def benign_reference(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.bool_], names: Sequence[str]
) -> dict[str, float]:
    """Per feature, the median over benign rows (what "normal" looks like, for explanations)."""
    benign = x[~y] if (~y).any() else x
    return {n: float(np.median(benign[:, j])) for j, n in enumerate(names)}


def roc_auc(y: npt.NDArray[np.bool_], p: npt.NDArray[np.float64]) -> float | None:
    """ROC AUC, or None when only one class is present."""
    from sklearn.metrics import roc_auc_score

    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, p))


@dataclass(frozen=True)
class GroupRate:
    """Entities of one campaign family / benign persona / source, and how many scored >= threshold."""

    group: str
    attack: bool
    n: int
    flagged: int

    @property
    def rate(self) -> float:
        """Recall for an attack group, false-positive rate for a benign one."""
        return self.flagged / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the manifest."""
        return {
            "group": self.group,
            "attack": self.attack,
            "n": self.n,
            "flagged": self.flagged,
            "rate": self.rate,
        }


def group_rates(
    entities: pl.DataFrame, scores: npt.NDArray[np.float64], key: str, threshold: float
) -> list[GroupRate]:
    """Per group: entities (``key``) whose highest score over their rows reaches ``threshold``.

    ``entities`` has ``key``, ``label`` and ``group`` per scored row; an entity's group is its most common
    one, its label whether any of its rows is an attack.
    """
    per = (
        entities.select(key, "label", "group")
        .with_columns(pl.Series("_p", scores))
        .group_by(key)
        .agg(pl.col("_p").max(), pl.col("label").any(), pl.col("group").mode().sort().first())
    )
    agg = (
        per.group_by("group", "label")
        .agg(pl.len().alias("n"), (pl.col("_p") >= threshold).sum().alias("flagged"))
        .sort("label", "group", descending=[True, False])
    )
    return [GroupRate(g, bool(lab), int(n), int(f)) for g, lab, n, f in agg.iter_rows()]
