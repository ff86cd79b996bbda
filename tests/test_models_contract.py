"""Contract tests run on every model shipped in ``models/``, picked up automatically.

A new ``<name>-v<N>.onnx`` gets every check here without anyone writing a test: the manifest agrees
with the engine's feature catalogue, onnxruntime agrees with scikit-learn (the parity probe recorded at
export), scoring is deterministic, the held-out AUC clears a floor (the recorded one, and one measured
afresh on data the model never saw), the file is small and the card is current.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from detector.detect.models.manifest import read_manifest
from detector.detect.models.runtime import LoadedModel, ModelSet, check_manifest
from detector.detect.models.spec import catalogue, schema_hash, to_matrix
from detector.detect.rules.ruleset import HIT_COLUMNS
from detector.lab.train.card import render_card
from detector.lab.train.fit import roc_auc
from detector.window.features import CATALOGUES

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
STEMS = sorted(p.stem for p in MODELS_DIR.glob("*.onnx"))
#: Held-out ROC AUC every shipped model must reach (per row).
AUC_FLOOR = 0.9
#: onnxruntime vs scikit-learn probability, absolute (float32 inputs and tree sums).
PARITY_TOL = 1e-4
MAX_BYTES = 500_000


@pytest.fixture(scope="module")
def model_set() -> ModelSet:
    return ModelSet.load(MODELS_DIR)


def _model(ms: ModelSet, stem: str) -> LoadedModel:
    return next(m for m in ms.models if m.manifest.stem == stem)


def _probe(stem: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(io.BytesIO((MODELS_DIR / f"{stem}.parity.npz").read_bytes()))
    return data["x"], data["p"]


def test_models_are_shipped() -> None:
    assert {s.split("-v")[0] for s in STEMS} >= {"account_gb", "cluster_gb", "prompt_gb"}


def test_every_model_loads(model_set: ModelSet) -> None:
    assert sorted(model_set.providers) == STEMS
    assert all(p in ("CUDAExecutionProvider", "CPUExecutionProvider") for p in model_set.providers.values())


@pytest.mark.parametrize("stem", STEMS)
def test_manifest_agrees_with_catalogue(stem: str) -> None:
    m = read_manifest(MODELS_DIR / f"{stem}.json")
    cat = catalogue(m.target)
    check_manifest(m, cat, MODELS_DIR / f"{stem}.json")
    assert m.feature_schema_hash == schema_hash(m.features, cat)
    assert m.features and len(set(m.features)) == len(m.features)
    assert m.threshold < m.high_threshold <= 1.0
    if m.target in CATALOGUES:
        assert set(m.features) <= set(CATALOGUES[m.target])


@pytest.mark.parametrize("stem", STEMS)
def test_onnxruntime_matches_sklearn(model_set: ModelSet, stem: str) -> None:
    x, p_sklearn = _probe(stem)
    assert x.shape[0] >= 50 and x.dtype == np.float32
    p_onnx = _model(model_set, stem).predict(x)
    assert np.abs(p_onnx - p_sklearn).max() <= PARITY_TOL
    # the probe spans both sides of the decision, so parity is checked where it matters
    assert (p_sklearn >= 0.5).any() and (p_sklearn < 0.5).any()


@pytest.mark.parametrize("stem", STEMS)
def test_scoring_is_deterministic(stem: str) -> None:
    x, _ = _probe(stem)
    a = _model(ModelSet.load(MODELS_DIR), stem).predict(x)
    b = _model(ModelSet.load(MODELS_DIR), stem).predict(x)
    one_by_one = np.concatenate(
        [_model(ModelSet.load(MODELS_DIR), stem).predict(x[i : i + 1]) for i in range(8)]
    )
    assert np.array_equal(a, b)
    assert np.allclose(one_by_one, a[:8], rtol=0, atol=1e-6)


@pytest.mark.parametrize("stem", STEMS)
def test_recorded_heldout_auc_and_size(stem: str) -> None:
    m = read_manifest(MODELS_DIR / f"{stem}.json")
    assert m.heldout["auc"] >= AUC_FLOOR
    assert (MODELS_DIR / f"{stem}.onnx").stat().st_size <= MAX_BYTES
    assert m.training["command"].startswith("detector train")


@pytest.mark.parametrize("stem", STEMS)
def test_card_is_current(stem: str) -> None:
    m = read_manifest(MODELS_DIR / f"{stem}.json")
    assert (MODELS_DIR / f"{stem}.md").read_text(encoding="utf-8") == render_card(m)


@pytest.mark.parametrize("stem", STEMS)
def test_hits_have_the_rule_hit_schema(model_set: ModelSet, stem: str) -> None:
    m = _model(model_set, stem)
    man = m.manifest
    x, _ = _probe(stem)
    frame = pl.DataFrame({f: x[:, j] for j, f in enumerate(man.features)}).with_row_index("key")
    frame = frame.with_columns(pl.col("key").cast(pl.String))
    hits = model_set.hits(frame, man.target, "key")
    assert hits.schema == pl.Schema({"key": pl.String, **HIT_COLUMNS})
    ours = hits.filter(pl.col("rule_id") == man.rule_id)
    assert ours.height == int((m.score(x) >= man.threshold).sum()) > 0  # thresholds read calibrated scores
    assert set(ours["severity"]) <= {"medium", "high"}
    assert (ours.filter(pl.col("severity") == "high")["score"] >= man.high_threshold).all()
    assert ours["mode"].unique().to_list() == ["live"]
    assert all(any(f"{f}=" in d for f in man.features) for d in ours["detail"])


def test_fresh_heldout_seed_clears_the_floor(model_set: ModelSet, tmp_path: Path) -> None:
    """Account and cluster models on a simulator seed no model was trained or thresholded on."""
    from detector.lab.train.data import capture, simulate_run

    run = capture(simulate_run(tmp_path / "seed6", seed=6, days=1.0, scale=0.3))
    checked = 0
    for target in ("account", "cluster"):
        frame = getattr(run, target)
        y = frame["label"].to_numpy().astype(bool)
        for stem, p in model_set.scores(frame, target).items():
            auc = roc_auc(y, p)
            assert auc is not None and auc >= AUC_FLOOR, (stem, auc)
            checked += 1
    assert checked >= 2


@pytest.mark.shared
def test_prompt_model_on_heldout_sources(model_set: ModelSet, shared_dir: Path) -> None:
    """The prompt model on the held-out sources (never seen in training), recomputed from the corpora."""
    from detector.lab.train.prompt_data import load_prompt_set

    data = load_prompt_set(shared_dir).frame
    ho = data.filter(pl.col("split") == "heldout")
    assert set(ho["source"]).isdisjoint(set(data.filter(pl.col("split") == "train")["source"]))
    for m in model_set.for_target("prompt"):
        p = m.predict(to_matrix(ho, m.manifest.features))
        auc = roc_auc(ho["label"].to_numpy().astype(bool), p)
        assert auc is not None and auc >= AUC_FLOOR
        assert auc == pytest.approx(m.manifest.heldout["auc"], abs=1e-3)
