"""ONNX classifiers: trained with scikit-learn, exported with skl2onnx, scored with onnxruntime.

``ModelSet.load(models_dir)`` loads every ``<name>-v<N>.onnx`` with its manifest and checks it against
the engine's feature catalogues; ``ModelSet.hits(frame, target, key)`` gives rule-shaped hits,
``ModelSet.scores(frame, target)`` the raw probabilities. ``detector train`` rebuilds the models.

Names are imported on first use, so ``detector --help`` (which imports ``detector.models.cli``) does not
load numpy, polars or onnxruntime.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detector.models.manifest import Manifest
    from detector.models.prompt import PROMPT_MODEL_FEATURES, prompt_structure_features
    from detector.models.runtime import ModelError, ModelSet, select_providers
    from detector.models.spec import FILL_VALUE, schema_hash, to_matrix

_WHERE = {
    "Manifest": "manifest",
    "PROMPT_MODEL_FEATURES": "prompt",
    "prompt_structure_features": "prompt",
    "ModelError": "runtime",
    "ModelSet": "runtime",
    "select_providers": "runtime",
    "FILL_VALUE": "spec",
    "schema_hash": "spec",
    "to_matrix": "spec",
}

__all__ = [
    "FILL_VALUE",
    "PROMPT_MODEL_FEATURES",
    "Manifest",
    "ModelError",
    "ModelSet",
    "prompt_structure_features",
    "schema_hash",
    "select_providers",
    "to_matrix",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'detector.models' has no attribute {name!r}")
    return getattr(import_module(f"detector.models.{_WHERE[name]}"), name)
