"""``detector train``: rebuild the account, cluster and prompt models from labelled data.

Account and cluster models: randomized simulator draws (``detector.lab.train.draws``: a training block
and a separate calibration block, never the evasion matrix's held-out block), replayed through the
engine to capture the features it computes each tick (``detector.lab.train.data``). The recipe:

1. fit the trees on the training block;
2. fit the Platt map (raw -> calibrated probability) on the calibration block's entities
   (``calibrate.py``);
3. choose the medium threshold from the training block's out-of-fold scores, calibrated by that map
   (``fit.entity_threshold``: highest benign entity score plus a margin); the high band halfway to 1;
4. measure on the calibration block: AUC, per-group rates, and precision / recall at the medium and high
   thresholds with their counts (``Manifest.operating``), which decide whether the model votes alone.

The prompt model: the real prompt corpora under ``--shared`` (``detector.lab.train.prompt_data``).
Each model is exported with its manifest, parity probe and card.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.detect.models.manifest import Calibration, Manifest
from detector.detect.models.spec import TARGET_KEYS, model_features, to_matrix
from detector.lab.train.calibrate import ENTITY, entity_max, fit_platt, operating_point, with_entity
from detector.lab.train.card import write_card
from detector.lab.train.data import Captured
from detector.lab.train.draws import CALIBRATION_DRAWS, TRAIN_DRAWS, DrawSize, capture_draws, check_blocks
from detector.lab.train.export import export_model
from detector.lab.train.fit import (
    benign_reference,
    entity_threshold,
    group_rates,
    high_band,
    make_estimator,
    out_of_fold,
    positive_proba,
    roc_auc,
)

log = logging.getLogger("detector.detect.models")

#: Model name per target.
MODEL_NAMES: Final = {"account": "account_gb", "cluster": "cluster_gb", "prompt": "prompt_gb"}
#: Out-of-fold folds over the training draws (draw i goes to fold i mod FOLDS).
FOLDS: Final = 3


@dataclass(frozen=True)
class TrainConfig:
    """What ``detector train`` builds, from what."""

    out: Path
    work: Path
    train_draws: tuple[int, ...] = TRAIN_DRAWS
    calibration_draws: tuple[int, ...] = CALIBRATION_DRAWS
    size: DrawSize = field(default_factory=DrawSize)
    version: int = 2
    targets: tuple[str, ...] = ("account", "cluster", "prompt")
    shared: Path | None = None
    command: str = ""
    #: Analyst-labelled rows added to training (``detector train --dispositions``): target -> rows.
    extra: dict[str, pl.DataFrame] | None = None


@dataclass(frozen=True)
class Fitted:
    """One recipe's result: the trees, the calibration, the threshold and the calibration-block scores."""

    estimator: Any
    calibration: Calibration
    threshold: float
    benign_max: float
    oof_auc: float | None
    #: Calibrated scores of the calibration block's rows (0 where a row is outside the model's domain).
    scores: npt.NDArray[np.float64]


def _folds(frames: list[pl.DataFrame], extra: pl.DataFrame | None) -> list[pl.DataFrame]:
    folds = [pl.concat(frames[i::FOLDS], how="vertical_relaxed") for i in range(min(FOLDS, len(frames)))]
    if extra is not None and extra.height:
        schema = folds[0].schema
        extra = extra.with_columns(pl.lit(-1, dtype=pl.Int64).alias("draw"))  # its own fold
        missing = [pl.lit(None, dtype=schema[c]).alias(c) for c in schema if c not in extra.columns]
        extra = extra.with_columns(*missing)
        folds.append(extra.select(list(schema)).cast(schema))
    return [with_entity(f, "_key") for f in folds]


def fit_recipe(
    folds: list[pl.DataFrame], calib: pl.DataFrame, names: list[str], required: list[str], draws: list[int]
) -> Fitted:
    """Steps 1-3 of the module docstring on ``folds`` (training) and ``calib`` (calibration block)."""
    xs = [to_matrix(f, names) for f in folds]
    ys = [f["label"].to_numpy().astype(bool) for f in folds]
    estimator = make_estimator().fit(np.concatenate(xs), np.concatenate(ys))
    domain = calib.select(pl.all_horizontal(pl.col(n).is_not_null() for n in required)).to_series()
    raw = positive_proba(estimator, to_matrix(calib, names))
    raw = np.where(domain.to_numpy().astype(bool), raw, 0.0) if required else raw
    per = entity_max(calib, raw)
    calibration = fit_platt(per["_p"].to_numpy(), per["label"].to_numpy().astype(bool), draws)
    oof = [calibration.apply(p) for p in out_of_fold(xs, ys)] if len(folds) > 1 else []
    benign_max = max(
        (
            float(entity_max(f, p).filter(~pl.col("label"))["_p"].max() or 0.0)  # type: ignore[arg-type]
            for f, p in zip(folds, oof, strict=True)
        ),
        default=0.0,
    )
    scores = np.where(raw > 0.0, calibration.apply(raw), 0.0)
    oof_auc = roc_auc(np.concatenate(ys), np.concatenate(oof)) if oof else None
    return Fitted(estimator, calibration, entity_threshold(benign_max), benign_max, oof_auc, scores)


def train_tabular(cfg: TrainConfig, target: str, train: list[Captured], calib: list[Captured]) -> Manifest:
    """Fit, calibrate, threshold and measure one account/cluster model (module docstring); export it."""
    key = TARGET_KEYS[target]
    names = model_features(target)
    frames = [getattr(c, target).with_columns(pl.col(key).alias("_key")) for c in train]
    required = [n for n in names if all(f[n].null_count() == 0 for f in frames)]
    cframe = with_entity(
        pl.concat([getattr(c, target) for c in calib], how="vertical_relaxed").with_columns(
            pl.col(key).alias("_key")
        ),
        "_key",
    )
    draws = list(cfg.calibration_draws)
    extra = (cfg.extra or {}).get(target)
    before = None
    if extra is not None and extra.height:
        base = fit_recipe(_folds(frames, None), cframe, names, required, draws)
        before = {
            "auc": roc_auc(cframe["label"].to_numpy().astype(bool), base.scores),
            "threshold": base.threshold,
            "groups": [g.as_dict() for g in group_rates(cframe, base.scores, ENTITY, base.threshold)],
        }
        extra = extra.with_columns(pl.col(key).alias("_key"))
    folds = _folds(frames, extra)
    fitted = fit_recipe(folds, cframe, names, required, draws)
    threshold, high = fitted.threshold, high_band(fitted.threshold)
    hy = cframe["label"].to_numpy().astype(bool)
    per_entity = entity_max(cframe, fitted.scores)
    heldout: dict[str, Any] = {
        "draws": draws,
        "rows": int(hy.size),
        "positives": int(hy.sum()),
        "auc": roc_auc(hy, fitted.scores),
        "oof_auc": fitted.oof_auc,
        "entity": key,
        "groups": [g.as_dict() for g in group_rates(cframe, fitted.scores, ENTITY, threshold)],
    }
    if before is not None and extra is not None:
        heldout["before_dispositions"] = before
        heldout["disposition_rows"] = {"rows": extra.height, "positives": int(extra["label"].sum())}
    x = np.concatenate([to_matrix(f, names) for f in folds])
    y = np.concatenate([f["label"].to_numpy().astype(bool) for f in folds])
    s = cfg.size
    training: dict[str, Any] = {
        "data": f"randomized simulator draws replayed through the engine's {target} features, one row per "
        f"{key} per tick",
        "command": cfg.command,
        "draws": list(cfg.train_draws),
        "days": s.days,
        "scale": s.scale,
        "attack_accounts": s.attack_accounts,
        "events_sha256": {str(c.seed): c.events_sha256 for c in (*train, *calib)},
        "rows": int(x.shape[0]),
        "positives": int(y.sum()),
        "label": "attacker account" if target == "account" else "most members are attackers",
        "threshold_rule": f"highest benign out-of-fold {key} score {fitted.benign_max:.4f}, calibrated, "
        "+ margin (fit.py)",
    }
    return export_model(
        fitted.estimator,
        name=MODEL_NAMES[target],
        version=cfg.version,
        target=target,
        features=names,
        threshold=threshold,
        high_threshold=high,
        reference=benign_reference(x, y, names),
        training=training,
        heldout=heldout,
        parity_x=to_matrix(cframe, names),
        out_dir=cfg.out,
        required=required,
        calibration=fitted.calibration,
        operating={
            "medium": operating_point(per_entity, threshold),
            "high": operating_point(per_entity, high),
        },
    )


def train_all(cfg: TrainConfig) -> list[Manifest]:
    """Build every model of ``cfg.targets`` into ``cfg.out`` (with cards); return their manifests."""
    out: list[Manifest] = []
    tabular = [t for t in cfg.targets if t in ("account", "cluster")]
    if tabular:
        check_blocks(cfg.train_draws, cfg.calibration_draws)
        log.info("replaying %d training draws", len(cfg.train_draws))
        train = capture_draws(cfg.work, cfg.train_draws, cfg.size)
        log.info("replaying %d calibration draws", len(cfg.calibration_draws))
        calib = capture_draws(cfg.work, cfg.calibration_draws, cfg.size)
        for target in tabular:
            log.info("training the %s model", target)
            out.append(train_tabular(cfg, target, train, calib))
    if "prompt" in cfg.targets:
        if cfg.shared is None:
            raise ValueError("the prompt model needs --shared (the folder holding data/prompts)")
        from detector.lab.train.prompt_data import train_prompt_model

        out.append(train_prompt_model(cfg.shared, cfg.out, cfg.version, cfg.command))
    for m in out:
        write_card(m, cfg.out)
    return out
