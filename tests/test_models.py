"""Unit tests of detector.detect.models: providers, feature matrix, manifest checks, export, explanations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from toy_models import NAMES, export_toy, toy_data

from detector.detect.models.prompt import prompt_structure_features
from detector.detect.models.runtime import ModelError, ModelSet, select_providers
from detector.detect.models.spec import FILL_VALUE, model_features, schema_hash, to_matrix
from detector.detect.rules.ruleset import HIT_COLUMNS
from detector.lab.train.export import to_onnx_bytes
from detector.lab.train.fit import entity_threshold, high_band, make_estimator, positive_proba

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


# -- providers -------------------------------------------------------------------------------------------


def test_providers_prefer_cuda_then_cpu() -> None:
    assert select_providers(["CPUExecutionProvider", "CUDAExecutionProvider", "AzureExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert select_providers(["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(ModelError, match="no usable"):
        select_providers(["AzureExecutionProvider"])


def test_cpu_only_machine_runs_on_cpu() -> None:
    ms = ModelSet.load(MODELS_DIR, available=["CPUExecutionProvider"])
    assert set(ms.providers.values()) == {"CPUExecutionProvider"}


# -- feature matrix --------------------------------------------------------------------------------------


def test_to_matrix_fills_nulls_nan_and_infinities() -> None:
    frame = pl.DataFrame(
        {"a": [1, None, 3], "b": [0.5, float("nan"), float("inf")], "c": [True, None, False]},
        schema={"a": pl.Int64, "b": pl.Float64, "c": pl.Boolean},
    )
    m = to_matrix(frame, ["c", "a", "b"])
    assert m.dtype == np.float32 and m.flags.c_contiguous
    assert m.tolist() == [[1.0, 1.0, 0.5], [FILL_VALUE, FILL_VALUE, FILL_VALUE], [0.0, 3.0, FILL_VALUE]]
    with pytest.raises(ValueError, match="lacks model features: d"):
        to_matrix(frame, ["a", "d"])


def test_model_features_are_numeric_catalogue_subsets() -> None:
    assert "tier" not in NAMES and "requests_24h" in NAMES
    assert "shares_payment" in model_features("cluster")
    assert schema_hash(NAMES[:3], {n: pl.Int64() for n in NAMES[:3]}) != schema_hash(
        NAMES[:3], {n: pl.Float64() for n in NAMES[:3]}
    )


#: Cluster evidence kept out of models until the round-10 retrain weighed it (spec.py's ``_EXCLUDED``).
WEIGHED_IN_ROUND_10 = (
    "network_keys_per_account",
    "top_network_key_share",
    "second_network_key_share",
    "client_key_inside_share",
    "client_outside_holders",
    "extraction_lift_over_client",
    "stands_out_from_client",
    "cross_org_card_member_share",
    "harvest_excess_share_24h",
    "harvest_excess_requests_24h",
    "harvest_beyond_tool_excess_share_24h",
    "signup_cohort_accounts",
)


def test_priors_stay_out_and_the_shipped_cluster_model_reads_the_weighed_evidence() -> None:
    """Age, time observed, tier and the clock never feed a model; the shipped cluster model was trained
    with the evidence once kept out "until a retrain weighs it" (docs/models.md, "v3")."""
    from detector.detect.models.manifest import read_manifest

    priors = {"tier", "tick_end", "account_age_days", "observed_hours"}
    for target in ("account", "cluster"):
        assert not priors & set(model_features(target))
    assert set(WEIGHED_IN_ROUND_10) <= set(model_features("cluster"))
    (cluster,) = sorted(MODELS_DIR.glob("cluster_gb-v*.json"))
    manifest = read_manifest(cluster)
    assert set(WEIGHED_IN_ROUND_10) <= set(manifest.features)
    for path in MODELS_DIR.glob("*_gb-v*.json"):
        assert not priors & set(read_manifest(path).features), path.name


#: Round 14 weighs the shares of what a group holds in common (spec.py); the volumes beside them are the
#: simulator's drawn rates, session lengths and resend habits, and ``low_yield`` a rule's verdict.
WEIGHED_IN_ROUND_14 = {
    "account": ("sheet_share_24h",),
    "cluster": ("sheet_share_24h", "shared_text_share_24h", "opener_shared_share_24h"),
}
SIMULATOR_VOLUMES = (
    "reasoning_requests_24h",
    "sheet_sends_per_text_24h",
    "sampled_requests_per_account_24h",
    "low_yield",
    "opener_sends_per_text_24h",
    "openers_per_agent_24h",
    "tools_heavy_turns_per_open_24h",
    "tools_heavy_per_agent_24h",
)


def test_round_14_weighs_the_shares_and_keeps_the_simulators_volumes_out() -> None:
    from detector.window.features import CATALOGUES

    for target, shares in WEIGHED_IN_ROUND_14.items():
        names = set(model_features(target))
        assert set(shares) <= names, target
        assert not set(SIMULATOR_VOLUMES) & names, target
    # every kept-out volume is still a catalogue feature: the list names real columns, not stale ones
    assert set(SIMULATOR_VOLUMES) <= set(CATALOGUES["account"]) | set(CATALOGUES["cluster"])


# -- loading and manifests -------------------------------------------------------------------------------


def test_no_models_dir_gives_an_empty_set_with_the_hit_schema(tmp_path: Path) -> None:
    frame = pl.DataFrame({"account_id": ["a"], "requests_24h": [3]})
    for ms in (ModelSet.load(None), ModelSet.load(tmp_path / "absent"), ModelSet.load(tmp_path)):
        assert len(ms) == 0 and ms.providers == {}
        hits = ms.hits(frame, "account", "account_id")
        assert hits.height == 0
        assert hits.schema == pl.Schema({"account_id": pl.String, **HIT_COLUMNS})
        assert ms.scores(frame, "account") == {}


def _copy_model(tmp_path: Path, stem: str = "account_gb-v2") -> Path:
    for suffix in (".onnx", ".json"):
        shutil.copy(MODELS_DIR / f"{stem}{suffix}", tmp_path / f"{stem}{suffix}")
    return tmp_path / f"{stem}.json"


def _edit(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_dtype_change_names_the_feature(tmp_path: Path) -> None:
    path = _copy_model(tmp_path)
    dtypes = json.loads(path.read_text())["feature_dtypes"]
    dtypes["requests_24h"] = "Float64"
    _edit(path, feature_dtypes=dtypes)
    with pytest.raises(ModelError, match=r"requests_24h' was trained as Float64, the engine has Int64"):
        ModelSet.load(tmp_path)


def test_unknown_feature_is_named(tmp_path: Path) -> None:
    path = _copy_model(tmp_path)
    data = json.loads(path.read_text())
    feats = ["requests_7d" if f == "requests_24h" else f for f in data["features"]]
    _edit(path, features=feats)
    with pytest.raises(ModelError, match=r"feature 'requests_7d' is not in the engine's account catalogue"):
        ModelSet.load(tmp_path)


def test_schema_hash_and_file_hash_mismatches_fail(tmp_path: Path) -> None:
    path = _copy_model(tmp_path)
    _edit(path, feature_schema_hash="0" * 64)
    with pytest.raises(ModelError, match="feature-schema hash 000000000000"):
        ModelSet.load(tmp_path)
    path = _copy_model(tmp_path)
    _edit(path, onnx_sha256="f" * 64)
    with pytest.raises(ModelError, match="SHA-256"):
        ModelSet.load(tmp_path)


def test_missing_manifest_and_bad_names_fail(tmp_path: Path) -> None:
    shutil.copy(MODELS_DIR / "account_gb-v2.onnx", tmp_path / "account_gb-v2.onnx")
    with pytest.raises(ModelError, match=r"no manifest account_gb-v2\.json"):
        ModelSet.load(tmp_path)
    (tmp_path / "account_gb-v2.onnx").rename(tmp_path / "account.onnx")
    with pytest.raises(ModelError, match=r"<name>-v<N>\.onnx"):
        ModelSet.load(tmp_path)


# -- training and export ---------------------------------------------------------------------------------


def test_training_twice_gives_identical_onnx_and_matches_sklearn(tmp_path: Path) -> None:
    est, _ = export_toy(tmp_path / "a")
    export_toy(tmp_path / "b")
    a, b = (tmp_path / "a" / "toy_gb-v1.onnx").read_bytes(), (tmp_path / "b" / "toy_gb-v1.onnx").read_bytes()
    assert a == b
    assert (tmp_path / "a" / "toy_gb-v1.json").read_bytes() == (
        tmp_path / "b" / "toy_gb-v1.json"
    ).read_bytes()
    xt, _ = toy_data(500, 3)
    ms = ModelSet.load(tmp_path / "a")
    p_onnx = ms.models[0].predict(xt)
    assert np.abs(p_onnx - positive_proba(est, xt)).max() <= 1e-4
    assert 0 < int((p_onnx >= 0.5).sum()) < xt.shape[0]


def test_other_seed_changes_the_model() -> None:
    x, y = toy_data(2000, 1)
    a = to_onnx_bytes(make_estimator(n_estimators=15).fit(x, y), len(NAMES))
    b = to_onnx_bytes(make_estimator(n_estimators=15, random_state=7).fit(x, y), len(NAMES))
    assert a != b


def test_thresholds_are_clipped_and_banded() -> None:
    assert entity_threshold(0.0) == 0.5
    assert entity_threshold(0.62) == 0.72
    assert entity_threshold(0.99) == 0.95
    assert high_band(0.6) == 0.8


def test_hits_explain_with_the_driving_features(tmp_path: Path) -> None:
    export_toy(tmp_path, n_estimators=40)
    ms = ModelSet.load(tmp_path)
    x, _ = toy_data(400, 4)
    cot, age = NAMES.index("cot_share_24h"), NAMES.index("out_in_ratio_24h")
    x[:, cot], x[:, age] = 0.95, 0.95  # every row is what the toy model calls an attacker
    frame = pl.DataFrame({f: x[:, j] for j, f in enumerate(NAMES)}).with_columns(
        pl.Series("account_id", [f"a{i}" for i in range(400)])
    )
    hits = ms.hits(frame, "account", "account_id")
    assert hits.height > 350
    assert hits["rule_id"].unique().to_list() == ["model:toy_gb-v1"]
    first_two = [d.split(": ", 1)[1].split(", ")[:2] for d in hits["detail"]]
    named = [{p.split("=")[0] for p in parts} for parts in first_two]
    assert sum(n == {"cot_share_24h", "out_in_ratio_24h"} for n in named) > 0.9 * hits.height
    scores = ms.scores(frame, "account")["toy_gb-v1"]
    assert np.array_equal(np.sort(scores[scores >= 0.5]), np.sort(hits["score"].to_numpy()))


# -- prompt structure ------------------------------------------------------------------------------------


def test_prompt_structure_features() -> None:
    texts = ["Solve: 2+2=?\nPut the answer in \\boxed{}.", "<think>\n1. a\n2. b\n- c", "你好？", None]
    out = prompt_structure_features(pl.DataFrame({"prompt_text": texts}, schema={"prompt_text": pl.String}))
    assert out["prompt_lines"].to_list() == [2, 4, 1, None]
    assert out["prompt_boxed"].to_list() == [True, False, False, None]
    assert out["prompt_think_tag"].to_list() == [False, True, False, None]
    assert out["prompt_list_lines"].to_list() == [0, 3, 0, None]
    assert out["prompt_question_marks"].to_list() == [1, 0, 1, None]
    assert out["prompt_nonascii_share"][2] == 1.0
    assert out["prompt_math_marks"].to_list() == [2, 0, 0, None]  # "=" and "\\boxed"
    assert "prompt_text" in out.columns


def test_rows_missing_a_required_feature_are_out_of_domain() -> None:
    """A row missing a feature the model never saw missing gets no model verdict."""
    from detector.detect.models.manifest import read_manifest
    from detector.detect.models.runtime import in_domain

    man = read_manifest(Path(__file__).resolve().parents[1] / "models" / "account_gb-v2.json")
    assert "requests_24h" in man.required and "account_age_days" not in man.features
    frame = pl.DataFrame({n: [1.0, 1.0] for n in man.features}).with_columns(
        pl.Series("requests_24h", [3.0, None])
    )
    assert in_domain(frame, man).tolist() == [True, False]


def test_fusion_model_alone_is_a_lead_and_corroborates_a_rule(tmp_path: Path) -> None:
    """A model hit with no rule hit on the same subject is capped at low; beside a rule it keeps its band."""
    from detector.app import build_engine

    export_toy(tmp_path / "models", n_estimators=40)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "account_busy.yaml").write_text(
        "id: account_busy\ntitle: busy\ndescription: busy\nseverity: low\ntarget: account\n"
        "condition: requests_24h >= 100\ntags: []\ndetail: [requests_24h]\ntests:\n"
        "  - {name: busy, features: {requests_24h: 200}, expect: fire}\n"
        "  - {name: quiet, features: {requests_24h: 5}, expect: no_fire}\n"
    )
    engine = build_engine(rules, models=tmp_path / "models")
    x, _ = toy_data(2, 4)
    cot, ratio = NAMES.index("cot_share_24h"), NAMES.index("out_in_ratio_24h")
    x[:, cot], x[:, ratio] = 0.95, 0.95
    frame = pl.DataFrame({f: x[:, j] for j, f in enumerate(NAMES)}).with_columns(
        pl.Series("account_id", ["alone", "ruled"]),
        pl.Series("requests_24h", [5, 200], dtype=pl.Int64),
        pl.Series("tier", ["free", "free"]),
        # two untrusted customers: the trust axis would cap both at low (tests/test_evidence.py)
        pl.Series("trusted_customer", [False, False]),
        pl.Series("volume_outside_tier", [False, False]),
    )
    hits = engine._evaluate(frame, "account", "account_id")
    model = {
        r["account_id"]: r["severity"]
        for r in hits.filter(pl.col("rule_id").str.starts_with("model:")).iter_rows(named=True)
    }
    assert model["alone"] == "low"
    assert model["ruled"] in ("medium", "high")
