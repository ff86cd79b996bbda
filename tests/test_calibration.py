"""Calibrated models that earn a vote (issue 17 item 4): randomized draw blocks, Platt calibration from
the manifest, operating points on the calibration block, the fusion's vote, spread scores, and
``detector train --json``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from toy_models import NAMES, export_toy, toy_data

from detector.detect.models.manifest import SCORE_DECIMALS, Calibration, OperatingPoint, read_manifest
from detector.detect.models.runtime import ModelSet
from detector.detect.models.spec import model_features
from detector.errors import ConfigError
from detector.lab.train.calibrate import ENTITY, entity_max, fit_platt, operating_point
from detector.lab.train.draws import CALIBRATION_DRAWS, TRAIN_DRAWS, check_blocks, parse_draws

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"
CLI = Path(sys.executable).with_name("detector")


def _export(
    out: Path,
    precision: float | None,
    calibration: Calibration | None = None,
    flagged: int = 200,
    target: str = "account",
) -> None:
    point = OperatingPoint(
        threshold=0.5,
        entities=10 * flagged,
        positives=flagged,
        flagged=flagged,
        true_positives=round(flagged * (precision or 0)),
        false_positives=flagged - round(flagged * (precision or 0)),
        precision=precision,
        recall=0.9,
    )
    export_toy(
        out,
        n_estimators=40,
        target=target,
        calibration=calibration,
        operating={"medium": point, "high": point.model_copy(update={"threshold": 0.75})},
    )


# -- blocks ----------------------------------------------------------------------------------------------


def test_default_blocks_are_disjoint_and_below_the_held_out_block() -> None:
    from detector.lab.matrix import HELD_OUT_FROM

    check_blocks(TRAIN_DRAWS, CALIBRATION_DRAWS)
    assert max(*TRAIN_DRAWS, *CALIBRATION_DRAWS) < HELD_OUT_FROM
    assert parse_draws("0-2,5,1") == (0, 1, 2, 5)
    with pytest.raises(ValueError, match="held-out"):
        check_blocks((0, 1), (999, 1000))
    with pytest.raises(ValueError, match="both"):
        check_blocks((0, 1), (1, 2))


def test_the_calibration_reserve_calibrates_and_nothing_else() -> None:
    from detector.lab.matrix import CALIBRATION_RESERVE, MatrixConfig, run_matrix

    check_blocks((0, 1), (5000, 5099))  # a calibration block from the reserve
    with pytest.raises(ValueError, match="held-out"):
        check_blocks((5000, 5001), (500, 501))  # never a training block
    with pytest.raises(ValueError, match="held-out"):
        check_blocks((0, 1), (4999, 6000))  # just outside it, either side
    for first in (CALIBRATION_RESERVE.start - 1, CALIBRATION_RESERVE.stop - 1):
        with pytest.raises(ConfigError, match="calibration reserve"):
            run_matrix(MatrixConfig(draws=2, held_out=True, first_draw=first))


# -- calibration and operating points --------------------------------------------------------------------


def test_platt_map_spreads_saturated_scores_and_keeps_their_order() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(4000) < 0.3
    # saturated raw scores, with 5% of labels on the wrong side: the raw 1.0 is overconfident
    raw = np.where(y ^ (rng.random(4000) < 0.05), 1 - 1e-9, 1e-9) * rng.uniform(0.9, 1.0, 4000)
    cal = fit_platt(raw, y, [500, 501])
    out = cal.apply(raw)
    assert cal.draws == [500, 501] and cal.entities == 4000 and cal.positives == int(y.sum())
    assert 0 < cal.a < 1  # log-odds shrunk toward the block's base rates
    assert out[raw > 0.5].max() < 0.99 and out[raw < 0.5].min() > 0.0
    order = np.argsort(raw, kind="stable")
    assert (np.diff(out[order]) >= 0).all()


def test_operating_point_counts_entities_not_ticks() -> None:
    frame = pl.DataFrame(
        {
            ENTITY: ["0:a", "0:a", "0:b", "1:a", "1:c", "1:d"],
            "label": [True, True, False, True, False, True],
        }
    )
    scores = np.array([0.2, 0.95, 0.97, 0.4, 0.1, 0.99])
    point = operating_point(entity_max(frame, scores), 0.9)
    # entities 0:a (attacker, 0.95), 0:b (honest, 0.97), 1:a (attacker, 0.4), 1:c (honest), 1:d (attacker)
    assert (point.entities, point.positives, point.flagged) == (5, 3, 3)
    assert (point.true_positives, point.false_positives) == (2, 1)
    assert point.precision == pytest.approx(2 / 3, abs=1e-6) and point.recall == pytest.approx(
        2 / 3, abs=1e-6
    )
    assert operating_point(entity_max(frame, scores), 1.0).precision is None


def test_scores_are_the_manifests_calibration_of_the_raw_probability(tmp_path: Path) -> None:
    cal = Calibration(a=0.3, b=-0.2, draws=[500], entities=10, positives=3)
    _export(tmp_path, 0.999, cal)
    (m,) = ModelSet.load(tmp_path).models
    x, _ = toy_data(200, 5)
    raw = m.predict(x)
    platt = 1 / (1 + np.exp(-(0.3 * np.log(raw / (1 - raw)) - 0.2)))
    assert np.allclose(m.score(x), np.round(platt, SCORE_DECIMALS), atol=1e-9)
    frame = pl.DataFrame({f: x[:, j] for j, f in enumerate(NAMES)}).with_columns(
        pl.Series("account_id", [f"a{i}" for i in range(200)])
    )
    hits = ModelSet.load(tmp_path).hits(frame, "account", "account_id")
    assert np.array_equal(np.sort(hits["score"].to_numpy()), np.sort(m.score(x)[m.score(x) >= 0.5]))
    assert all(d.startswith("model 0.") for d in hits["detail"])  # explained on the calibrated scale


# -- the vote --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("precision", "flagged", "alone"),
    [(0.999, 3000, "medium"), (0.995, 200, "low"), (0.98, 3000, "low"), (None, 200, "low")],
)
def test_a_model_raises_to_medium_alone_only_with_the_measured_precision(
    tmp_path: Path, precision: float | None, flagged: int, alone: str
) -> None:
    """Alone, a model hit is medium only where its manifest's calibration-block precision at the medium
    threshold is >= 0.99 (settings.model_vote_precision) with 95% confidence, never high: 199 of 200
    reads 0.995 but its Wilson lower bound is 0.972. Beside a rule it keeps its band."""
    from detector.app import build_engine

    _export(tmp_path / "models", precision, flagged=flagged)
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
    x[:, NAMES.index("cot_share_24h")], x[:, NAMES.index("out_in_ratio_24h")] = 0.95, 0.95
    frame = pl.DataFrame({f: x[:, j] for j, f in enumerate(NAMES)}).with_columns(
        pl.Series("account_id", ["alone", "ruled"]),
        pl.Series("requests_24h", [5, 200], dtype=pl.Int64),
        pl.Series("tier", ["free", "free"]),
        pl.Series("trusted_customer", [False, False]),
        pl.Series("volume_outside_tier", [False, False]),
    )
    hits = engine._evaluate(frame, "account", "account_id").filter(
        pl.col("rule_id").str.starts_with("model:")
    )
    sev = {r["account_id"]: r for r in hits.iter_rows(named=True)}
    assert sev["alone"]["score"] >= 0.75  # in the model's high band: only the cap keeps it below high
    assert sev["alone"]["severity"] == alone
    assert sev["ruled"]["severity"] == "high"


def _lone_cluster_vote(tmp_path: Path, accounts: int, **provenance: float | bool | None) -> str:
    """The severity of a voting toy cluster model's hit, alone, on one cluster of ``accounts`` whose
    provenance columns (as ``evidence.add_axes`` writes them, the two gates from them) are all off
    unless given."""
    from detector.app import build_engine
    from detector.detect.fusion import fuse
    from detector.detect.provenance import farm_accounts, no_customer_explains
    from detector.evidence_settings import EvidenceSettings
    from detector.window.features import CATALOGUES

    _export(tmp_path / "models", 0.999, flagged=3000, target="cluster")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "cluster_huge.yaml").write_text(  # a rule that stays silent here: the model is alone
        "id: cluster_huge\ntitle: huge\ndescription: huge\nseverity: medium\ntarget: cluster\n"
        "condition: accounts >= 1000\ntags: []\ndetail: [accounts]\ntests:\n"
        "  - {name: huge, features: {accounts: 2000}, expect: fire}\n"
        "  - {name: small, features: {accounts: 5}, expect: no_fire}\n"
    )
    engine = build_engine(rules, models=tmp_path / "models")
    names = model_features("cluster")
    x, _ = toy_data(1, 4, "cluster")
    x[:, names.index("cot_share_24h")], x[:, names.index("out_in_ratio_24h")] = 0.95, 0.95
    x[:, names.index("accounts")] = accounts
    flags = {"one_customer_explains": False, "colocated": False, "tenant_explains": False}
    # coordinated beyond one artefact, on unverified accounts: what a farm shows (the floor's defaults)
    flags |= {"rare_artefact_families": 2, "verified_share": 0.0, "bulk_provisioned": False}
    frame = (
        pl.DataFrame({f: x[:, j] for j, f in enumerate(names)})
        .with_columns(
            [  # the engine's dtypes; every flag off
                pl.lit(False).alias(f) if dtype == pl.Boolean else pl.col(f).cast(dtype)
                for f, dtype in CATALOGUES["cluster"].items()
                if f in names
            ]
            + [pl.lit("c").alias("cluster_id")]
        )
        .with_columns(pl.lit(v).alias(f) for f, v in (flags | provenance).items())
        .with_columns(
            no_customer_explains(EvidenceSettings()).alias("no_customer_explains"),
            farm_accounts(EvidenceSettings()).alias("farm_accounts"),
        )
    )
    (hit,) = fuse(engine.rules, engine.models, frame, "cluster", "cluster_id").iter_rows(named=True)
    assert hit["rule_id"] == "model:toy_gb-v1" and hit["score"] >= 0.75  # high band: only caps hold it
    return str(hit["severity"])


@pytest.mark.parametrize(("accounts", "alone"), [(2, "low"), (4, "low"), (5, "medium"), (40, "medium")])
def test_a_voting_cluster_model_alone_needs_the_group_a_cluster_rule_needs(
    tmp_path: Path, accounts: int, alone: str
) -> None:
    """A cluster model that has earned the vote raises a cluster to medium on its own only at
    ``accounts >= 5`` (settings.model_vote_min_accounts): the size every cluster rule that accuses on
    coordination requires. Two linked accounts the model scores high, alone, stay a low lead."""
    assert _lone_cluster_vote(tmp_path, accounts, new_account_share=1.0) == alone


@pytest.mark.parametrize(
    ("provenance", "alone"),
    [
        ({"new_account_share": 1.0}, "medium"),  # nobody explains it: the vote stands
        ({"new_account_share": 1.0, "one_customer_explains": True}, "low"),  # one customer's team
        ({"new_account_share": 1.0, "colocated": True}, "low"),  # a hackathon behind one address
        ({"new_account_share": 0.1, "tenant_explains": True}, "low"),  # a router customer's seats
        ({"new_account_share": 0.9, "tenant_explains": True}, "medium"),  # ... unless they are new
        ({"new_account_share": None, "colocated": None}, "medium"),  # unknown is not an explanation
    ],
)
def test_a_voting_cluster_model_alone_asks_the_farm_rules_provenance_question(
    tmp_path: Path, provenance: dict[str, float | bool], alone: str
) -> None:
    """A lone vote on a cluster needs what every farm rule needs (the ``no_customer_explains`` column):
    no paying customer, no room and no router tenant's established customer explains the group. A
    cluster of 40 the model scores high, that one of them explains, stays a low lead."""
    assert _lone_cluster_vote(tmp_path, 40, **provenance) == alone


@pytest.mark.parametrize(
    ("shape", "alone"),
    [
        ({"new_account_share": 1.0}, "medium"),  # two rare artefacts, fresh: a farm's shape
        ({"new_account_share": 1.0, "rare_artefact_families": 1}, "low"),  # one artefact: an in-house build
        ({"new_account_share": 1.0, "rare_artefact_families": 3}, "medium"),
        ({"new_account_share": 0.0, "verified_share": 1.0}, "low"),  # a tool's established verified users
        ({"new_account_share": 0.0, "verified_share": 1.0, "bulk_provisioned": True}, "medium"),  # a batch
        ({"new_account_share": 0.0, "verified_share": 0.3}, "medium"),  # aged, mostly unverified
        ({"new_account_share": 1.0, "rare_artefact_families": None}, "low"),  # no artefact known
    ],
)
def test_a_voting_cluster_model_alone_needs_coordination_beyond_one_artefact(
    tmp_path: Path, shape: dict[str, float | bool | None], alone: str
) -> None:
    """The coordination floor (``settings.model_vote_min_artefact_families``, 2: the farm rule's): a lone
    vote on a cluster needs two rare artefact families shared, on accounts that could be a farm's
    (the ``farm_accounts`` column, ``provenance.farm_accounts``: nearly all new, mostly unverified, or
    bulk-provisioned). One artefact (a startup's engineers on their in-house build) or a tool's
    established verified users stay a low lead; the rules accuse them only beside a content signal."""
    assert _lone_cluster_vote(tmp_path, 40, **shape) == alone


def test_the_coordination_floor_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At 1 (``DETECTOR_MODEL_VOTE_MIN_ARTEFACT_FAMILIES``), one artefact is enough again."""
    monkeypatch.setenv("DETECTOR_MODEL_VOTE_MIN_ARTEFACT_FAMILIES", "1")
    assert _lone_cluster_vote(tmp_path, 40, new_account_share=1.0, rare_artefact_families=1) == "medium"


def test_shipped_models_record_their_calibration_block() -> None:
    """Each shipped model records its own blocks (account_gb-v2: the defaults; cluster_gb-v5: round
    16's 0-44 and 5000-5099): disjoint, below the held-out block, and the metrics measured on the
    calibration one."""
    for stem in ("account_gb", "cluster_gb"):
        (path,) = sorted(MODELS_DIR.glob(f"{stem}-v*.json"))
        m = read_manifest(path)
        assert m.calibration is not None and m.heldout["draws"] == m.calibration.draws
        check_blocks(m.training["draws"], m.calibration.draws)
        assert set(m.operating) == {"medium", "high"}
        for band, threshold in (("medium", m.threshold), ("high", m.high_threshold)):
            p = m.operating[band]
            assert p.threshold == threshold
            assert p.true_positives + p.false_positives == p.flagged <= p.entities
            assert p.recall == pytest.approx(p.true_positives / p.positives, abs=1e-6)


# -- scores spread on a replay ---------------------------------------------------------------------------


@pytest.mark.slow
def test_alert_scores_spread_on_a_small_replay(tmp_path: Path) -> None:
    """With the shipped models, alert scores are calibrated probabilities: not all 1.00."""
    from detector.app import build_engine
    from detector.lab.train.draws import DrawSize, simulate_draw
    from detector.runtime.replay import replay

    run = simulate_draw(
        tmp_path / "draw", 700, DrawSize(days=0.5, scale=0.15, attack_accounts=10)
    )  # in neither block
    replay([run / "events.parquet"], build_engine(ROOT / "rules"), tmp_path / "alerts.jsonl")
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    model_scores = [r["score"] for a in alerts for r in a["reasons"] if r["source"] == "model"]
    scores = [a["score"] for a in alerts]
    assert len(model_scores) >= 20 and len(scores) >= 20
    # model hits start at the threshold (0.95): calibrated, they spread over the band above it
    assert len({round(s, 2) for s in model_scores}) >= 4
    assert len({round(s, 2) for s in scores}) >= 4
    assert sum(s >= 0.995 for s in scores) <= 0.75 * len(scores)


# -- detector train --json -------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_json_is_deterministic_and_reports_the_operating_points(tmp_path: Path) -> None:
    args = [
        "train",
        "--targets",
        "account",
        "--train-draws",
        "0-2",
        "--calibration-draws",
        "500-501",
        "--days",
        "0.25",
        "--scale",
        "0.1",
        "--attack-accounts",
        "6",
        "--work",
        str(tmp_path / "work"),
        "--json",
    ]
    outs = []
    for name in ("a", "b"):
        done = subprocess.run(
            [str(CLI), *args, "--out", str(tmp_path / name)], capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outs.append(json.loads(done.stdout))
    (row,) = outs[0]
    assert row["model"] == "account_gb-v2" and row["heldout_draws"] == [500, 501]
    med = row["operating"]["medium"]
    assert (
        med["threshold"] == row["threshold"]
        and med["flagged"] == med["true_positives"] + med["false_positives"]
    )
    assert isinstance(row["votes_alone"], bool) and row["vote_precision"] == 0.99
    for suffix in (".onnx", ".parity.npz"):
        a, b = (tmp_path / d / f"account_gb-v2{suffix}" for d in ("a", "b"))
        assert a.read_bytes() == b.read_bytes(), suffix
    ma, mb = (read_manifest(tmp_path / d / "account_gb-v2.json") for d in ("a", "b"))
    assert ma.training.pop("command") != mb.training.pop("command")  # only --out differs
    assert ma == mb
    bad = subprocess.run(
        [str(CLI), *args[:-1], "--calibration-draws", "999-1000"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "held-out" in bad.stderr and "Traceback" not in bad.stderr
