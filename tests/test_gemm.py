"""The matrix form of the tree ensembles (detector.detect.models.gemm): same probabilities as the
skl2onnx tree operator, missing values included, and the form ModelSet loads when CUDA is asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from detector.detect.models.gemm import GemmConversionError, to_gemm
from detector.detect.models.runtime import ModelSet

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
SHIPPED = sorted(MODELS_DIR.glob("*.onnx"))


def _probs(model: bytes, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {sess.get_inputs()[0].name: x})[1])[:, 1]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_matrix_form_scores_as_the_tree_operator(path: Path) -> None:
    tree = path.read_bytes()
    gemm = to_gemm(tree)
    parity = np.load(path.with_name(path.stem + ".parity.npz"))
    x = parity["x"]
    assert np.abs(_probs(gemm, x) - parity["p"]).max() < 1e-6
    # perturbed rows with 5% missing values: a NaN fails only its own split, as in the tree node
    rng = np.random.default_rng(7)
    xr = x[rng.integers(0, len(x), 5000)] * rng.uniform(0.5, 1.5, (5000, x.shape[1])).astype(np.float32)
    xr[rng.random(xr.shape) < 0.05] = np.nan
    assert np.abs(_probs(gemm, xr) - _probs(tree, xr)).max() < 1e-6
    sess = ort.InferenceSession(gemm, providers=["CPUExecutionProvider"])
    labels = sess.run(None, {"features": xr})[0]
    assert labels.shape == (5000,)
    assert set(np.unique(labels)) <= {0, 1}


def test_only_standard_operators() -> None:
    import onnx

    model = onnx.load_from_string(to_gemm(SHIPPED[0].read_bytes()))
    assert {n.domain for n in model.graph.node} == {""}
    assert "TreeEnsembleClassifier" not in {n.op_type for n in model.graph.node}


def test_other_models_are_refused() -> None:
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    linear = to_onnx(LogisticRegression().fit(x, x[:, 0] > 0), x[:1]).SerializeToString()
    with pytest.raises(GemmConversionError):
        to_gemm(linear)


def test_cuda_asked_loads_the_matrix_form_with_the_same_scores() -> None:
    """Asked for CUDA first (on a machine without it onnxruntime falls back to the CPU), ModelSet
    loads the matrix form; its scores equal the tree operator's."""
    cpu = ModelSet.load(MODELS_DIR, available=["CPUExecutionProvider"])
    cuda = ModelSet.load(MODELS_DIR, available=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert {m.form for m in cpu.models} == {"tree"}
    assert {m.form for m in cuda.models} == {"matrix"}
    for a, b in zip(cpu.models, cuda.models, strict=True):
        x = np.load(MODELS_DIR / f"{a.manifest.stem}.parity.npz")["x"]
        assert np.abs(a.predict(x) - b.predict(x)).max() < 1e-6
