"""The manifest beside every shipped model: ``models/<name>-v<N>.json``.

It says what the model reads (feature names in order, the feature-schema hash, the fill value), how to
decide (threshold and high band), what explains a score (the benign reference value of each feature),
how it was made (estimator, library versions, the training command, seeds and data hashes) and how well
it did on held-out data. Only aggregate numbers and hashes: never prompt text, never an account id.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: ``<name>-v<N>``: a model's file stem.
STEM = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)-v(?P<version>[1-9][0-9]*)$")


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
