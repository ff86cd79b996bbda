"""Export a fitted estimator: ``<name>-v<N>.onnx``, its manifest, its parity probe and its model card.

The ONNX graph is skl2onnx's (``zipmap`` off, so the probabilities come out as one float tensor). The
parity probe (``<name>-v<N>.parity.npz``) holds a few hundred held-out feature rows (aggregate numbers,
never text) and scikit-learn's raw probabilities for them (before the manifest's calibration), so the
contract tests compare onnxruntime with scikit-learn for every shipped model without shipping the
scikit-learn object.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from detector.detect.models.manifest import Calibration, Manifest, OperatingPoint, write_manifest
from detector.detect.models.spec import FILL_VALUE, catalogue, schema_hash
from detector.lab.train.fit import positive_proba

INPUT_NAME: Final = "features"
PROBABILITY_OUTPUT: Final = "probabilities"
#: ONNX opsets the graphs target (old enough for every onnxruntime >= 1.18).
TARGET_OPSET: Final[Mapping[str, int]] = {"": 17, "ai.onnx.ml": 3}
#: Rows kept in the parity probe.
PARITY_ROWS: Final = 256


def to_onnx_bytes(estimator: Any, n_features: int) -> bytes:
    """The estimator as a serialized ONNX model reading a float32 ``[N, n_features]`` input."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(
        estimator,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options={id(estimator): {"zipmap": False}},
        target_opset=dict(TARGET_OPSET),
    )
    outputs = [o.name for o in onx.graph.output]
    if PROBABILITY_OUTPUT not in outputs:
        raise RuntimeError(f"skl2onnx produced outputs {outputs}, expected '{PROBABILITY_OUTPUT}'")
    # skl2onnx lists the opsets in set order, which follows the process's string-hash seed: sorted, the
    # same training gives the same bytes in every process
    opsets = sorted(((o.domain, o.version) for o in onx.opset_import), key=lambda o: o[0])
    del onx.opset_import[:]
    for domain, version in opsets:
        onx.opset_import.add(domain=domain, version=version)
    data: bytes = onx.SerializeToString()
    return data


def library_versions() -> dict[str, str]:
    """Versions of the libraries that trained and exported the model."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "polars"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def parity_rows(x: npt.NDArray[np.float32], rows: int = PARITY_ROWS) -> npt.NDArray[np.float32]:
    """An evenly spaced, deterministic sample of ``x``'s rows."""
    if x.shape[0] <= rows:
        return x
    idx = np.linspace(0, x.shape[0] - 1, rows).astype(np.int64)
    return np.ascontiguousarray(x[idx])


def export_model(
    estimator: Any,
    *,
    name: str,
    version: int,
    target: str,
    features: Sequence[str],
    threshold: float,
    high_threshold: float,
    reference: Mapping[str, float],
    training: Mapping[str, Any],
    heldout: Mapping[str, Any],
    parity_x: npt.NDArray[np.float32],
    out_dir: Path,
    required: Sequence[str] = (),
    calibration: Calibration | None = None,
    operating: Mapping[str, OperatingPoint] | None = None,
) -> Manifest:
    """Write the ONNX file, manifest and parity probe into ``out_dir``; return the manifest."""
    cat = catalogue(target)
    data = to_onnx_bytes(estimator, len(features))
    importances = getattr(estimator, "feature_importances_", np.zeros(len(features)))
    manifest = Manifest(
        name=name,
        version=version,
        target=target,
        features=list(features),
        feature_dtypes={f: str(cat[f]) for f in features},
        feature_schema_hash=schema_hash(features, cat),
        fill_value=FILL_VALUE,
        required=list(required),
        threshold=threshold,
        high_threshold=high_threshold,
        reference={k: float(v) for k, v in reference.items()},
        importances={f: round(float(v), 6) for f, v in zip(features, importances, strict=True)},
        onnx_sha256=hashlib.sha256(data).hexdigest(),
        input_name=INPUT_NAME,
        probability_output=PROBABILITY_OUTPUT,
        estimator={"class": type(estimator).__name__, "params": _params(estimator)},
        libraries=library_versions(),
        training=dict(training),
        heldout=dict(heldout),
        calibration=calibration,
        operating=dict(operating or {}),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{manifest.stem}.onnx").write_bytes(data)
    write_manifest(manifest, out_dir / f"{manifest.stem}.json")
    probe = parity_rows(parity_x)
    buf = io.BytesIO()
    np.savez_compressed(buf, x=probe, p=positive_proba(estimator, probe))
    (out_dir / f"{manifest.stem}.parity.npz").write_bytes(buf.getvalue())
    return manifest


def _params(estimator: Any) -> dict[str, Any]:
    params = estimator.get_params()
    return {k: v for k, v in sorted(params.items()) if isinstance(v, int | float | str | bool) or v is None}
