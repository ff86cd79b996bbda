"""The manifest beside every shipped model: ``models/<name>-v<N>.json``.

It says what the model reads (feature names in order, the feature-schema hash, the fill value), how to
decide (threshold and high band), what explains a score (the benign reference value of each feature),
how it was made (estimator, library versions, the training command, draws and data hashes) and how well
it did on held-out data. Only aggregate numbers and hashes: never prompt text, never an account id.

``calibration`` maps the ONNX graph's raw probability to a calibrated one (Platt scaling on the raw
log-odds, fitted on the calibration block of simulator draws); thresholds, hits and alert scores are on
the calibrated scale. It is applied here, after onnxruntime, rather than exported into the graph, so the
graph stays the single tree-ensemble node that ``gemm.py`` rewrites for the GPU. ``operating`` holds the
precision and recall measured on the calibration block at the medium and high thresholds, with the counts
behind them: the fusion lets a model raise a subject to medium on its own only where that precision is
high enough (``detector.detect.fusion``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

#: Calibrated scores are kept to this many decimals (alerts must not depend on float summation order).
SCORE_DECIMALS: Final = 4

#: ``<name>-v<N>``: a model's file stem.
STEM = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)-v(?P<version>[1-9][0-9]*)$")


#: Raw probabilities are clipped to [EPS, 1 - EPS] before their log-odds are taken (an exact 0 or 1).
EPS: Final = 1e-7


def log_odds(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``log(p / (1 - p))`` of probabilities clipped to [``EPS``, 1 - ``EPS``]."""
    q = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.asarray(np.log(q) - np.log1p(-q), dtype=np.float64)


class Calibration(BaseModel):
    """Platt scaling: ``calibrated = sigmoid(a * log_odds(raw) + b)``, fitted on ``draws``.

    Fitted per entity (an account or cluster within one draw: its highest raw score against whether it
    is an attacker), as an alert is about an entity: the calibrated score reads as "of the subjects
    whose score reached this, the share that were attackers" on the calibration block's mix."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["platt"] = "platt"
    a: float
    b: float
    #: Simulator draw indices the map was fitted on (the calibration block) and the entities behind it.
    draws: list[int]
    entities: int = Field(ge=0)
    positives: int = Field(ge=0)

    def apply(self, raw: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Calibrated probabilities of raw ones (monotone: the order of scores is kept)."""
        z = self.a * log_odds(raw) + self.b
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


class OperatingPoint(BaseModel):
    """Entities (accounts or clusters, per draw) at one threshold on the calibration block.

    An entity is flagged when any of its ticks scores at or above ``threshold``; it is an attacker when
    any of its rows is labelled one. Precision and recall are None when their denominator is 0.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float
    entities: int = Field(ge=0)
    positives: int = Field(ge=0)
    flagged: int = Field(ge=0)
    true_positives: int = Field(ge=0)
    false_positives: int = Field(ge=0)
    precision: float | None
    recall: float | None


class Manifest(BaseModel):
    """Everything about one exported model except its weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int = Field(ge=1)
    target: str
    features: list[str]
    #: Per feature, the catalogue dtype it was trained on (``str(polars dtype)``).
    feature_dtypes: dict[str, str]
    feature_schema_hash: str
    fill_value: float
    #: Features never missing in the training data. A row missing any of them lies outside what the
    #: model has seen (a gateway that sends no account creation time, say): it gets no score and no hit.
    required: list[str] = []
    #: Scores at or above this give a hit of severity ``medium``.
    threshold: float = Field(gt=0.0, lt=1.0)
    #: Scores at or above this give a hit of severity ``high``.
    high_threshold: float = Field(gt=0.0, le=1.0)
    #: Per feature, its median over benign training rows (the "normal" value an explanation compares to).
    reference: dict[str, float]
    #: Per feature, the estimator's impurity importance (for the model card).
    importances: dict[str, float]
    onnx_sha256: str
    input_name: str
    probability_output: str
    estimator: dict[str, Any]
    libraries: dict[str, str]
    training: dict[str, Any]
    heldout: dict[str, Any]
    #: Raw -> calibrated probability; None: the raw probability is the score (an uncalibrated model).
    calibration: Calibration | None = None
    #: "medium" / "high" -> the calibration block measured at ``threshold`` / ``high_threshold``.
    operating: dict[str, OperatingPoint] = {}

    def calibrate(self, raw: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The score thresholds and alerts read: calibrated when the model has a calibration."""
        if self.calibration is None:
            return raw
        # four decimals: a window feature summed in another batch order moves the raw probability in
        # its 7th digit, and calibrated scores (no longer saturated at 1.0) would carry that into alerts
        return np.round(self.calibration.apply(raw), SCORE_DECIMALS)

    def votes(self, min_precision: float) -> bool:
        """Whether the model may raise a subject to medium on its own: the precision measured on the
        calibration block at the medium threshold is at least ``min_precision`` *with 95% confidence*
        (the Wilson lower bound of true over flagged). A point estimate on a few hundred clusters is
        not evidence: 274 of 276 reads 0.993 and may well be 0.975."""
        point = self.operating.get("medium")
        return point is not None and point.flagged > 0 and precision_lower_bound(point) >= min_precision

    @property
    def stem(self) -> str:
        """``<name>-v<N>``."""
        return f"{self.name}-v{self.version}"

    @property
    def rule_id(self) -> str:
        """The id its hits carry: ``model:<name>-v<N>``."""
        return f"model:{self.stem}"


def read_manifest(path: Path) -> Manifest:
    """Parse and validate a manifest file."""
    return Manifest.model_validate_json(path.read_bytes())


def write_manifest(manifest: Manifest, path: Path) -> None:
    """Write a manifest as indented JSON with sorted keys (stable bytes for stable inputs)."""
    import json

    text = json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True)
    path.write_text(text + "\n", encoding="utf-8")


def precision_lower_bound(point: OperatingPoint, z: float = 1.96) -> float:
    """The Wilson score interval's lower end for the precision ``true_positives / flagged``."""
    n = point.flagged
    if n == 0:
        return 0.0
    p = point.true_positives / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)
