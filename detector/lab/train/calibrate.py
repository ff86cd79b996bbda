"""Calibration: Platt scaling fitted on the calibration block, and the operating points it is judged by.

Platt scaling fits ``calibrated = sigmoid(a * log_odds(raw) + b)`` by logistic regression on the
calibration block (two numbers, so fitting them there costs the block little of its independence). It
is monotone: the order of scores, and so the explanation of a score, is unchanged; only the scale is.

It is fitted per *entity* (an account or a cluster within one draw: its highest raw score, in domain,
against whether it is an attacker), not per tick: an alert is about an entity, and an entity is
flagged when any of its ticks scores high, so an honest account watched for many ticks has many chances
to score high once. Fitted per tick (the first try), the map *sharpened* the raw scores (slope 1.4-1.6)
and 82% of the alerts of a one-day draw read 1.00; per entity it answers the question an alert asks.

Why Platt and not isotonic: the map is applied from the manifest after onnxruntime (the graph stays the
one tree-ensemble node that ``detect/models/gemm.py`` rewrites for the GPU); two numbers are a smooth,
strictly increasing map that spreads scores, where an isotonic table is a step function whose plateaus
tie many subjects at one score and whose top step is often exactly 1.0.

Operating points are per *entity* (an account or a cluster within one draw), as an alert is: an entity
is flagged when any of its in-domain ticks scores at or above the threshold, and is an attacker when any
of its rows is labelled one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.detect.models.manifest import Calibration, OperatingPoint, log_odds
from detector.lab.train.fit import RANDOM_STATE

#: Entity key column added to captured frames: ``<draw>:<account or cluster id>``.
ENTITY = "_entity"


def fit_platt(raw: npt.NDArray[np.float64], y: npt.NDArray[np.bool_], draws: Sequence[int]) -> Calibration:
    """The Platt map of ``raw`` scores (one per entity: its highest) to labels ``y`` (sklearn's default
    L2 penalty keeps the slope finite when the block separates perfectly)."""
    from sklearn.linear_model import LogisticRegression

    z = log_odds(raw).reshape(-1, 1)
    lr = LogisticRegression(random_state=RANDOM_STATE).fit(z, y)
    return Calibration(
        a=round(float(lr.coef_[0, 0]), 6),
        b=round(float(lr.intercept_[0]), 6),
        draws=list(draws),
        entities=int(raw.shape[0]),
        positives=int(y.sum()),
    )


def with_entity(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """``frame`` with the ``ENTITY`` column (entities of different draws never merge)."""
    return frame.with_columns(pl.format("{}:{}", pl.col("draw"), pl.col(key)).alias(ENTITY))


def entity_max(frame: pl.DataFrame, scores: npt.NDArray[np.float64]) -> pl.DataFrame:
    """Per entity: the highest score (``_p``) and whether it is an attacker (``label``)."""
    return (
        frame.select(ENTITY, "label")
        .with_columns(pl.Series("_p", scores, dtype=pl.Float64))
        .group_by(ENTITY)
        .agg(pl.col("_p").max(), pl.col("label").any())
    )


def operating_point(per_entity: pl.DataFrame, threshold: float) -> OperatingPoint:
    """Precision and recall of "flag the entity when its highest score reaches ``threshold``"."""
    row = per_entity.select(
        pl.len().alias("entities"),
        pl.col("label").sum().alias("positives"),
        (pl.col("_p") >= threshold).sum().alias("flagged"),
        ((pl.col("_p") >= threshold) & pl.col("label")).sum().alias("tp"),
    ).row(0, named=True)
    entities, positives, flagged, tp = (int(row[k] or 0) for k in ("entities", "positives", "flagged", "tp"))
    return OperatingPoint(
        threshold=threshold,
        entities=entities,
        positives=positives,
        flagged=flagged,
        true_positives=tp,
        false_positives=flagged - tp,
        precision=round(tp / flagged, 6) if flagged else None,
        recall=round(tp / positives, 6) if positives else None,
    )
