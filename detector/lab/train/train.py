"""``detector train``: rebuild the account, cluster and prompt models from labelled data.

Account and cluster models: the simulator's labelled runs (``--seeds`` for training, ``--heldout`` for
the metrics), replayed through the engine to capture the features it computes each tick (see
``detector.lab.train.data``). The prompt model: the real prompt corpora under ``--shared`` (see
``detector.lab.train.prompt_data``). Each model is exported with its manifest, parity probe and card.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl

from detector.detect.models.manifest import Manifest
from detector.detect.models.spec import TARGET_KEYS, model_features, to_matrix
from detector.lab.train.card import write_card
from detector.lab.train.data import Captured, capture, simulate_run
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


@dataclass(frozen=True)
class TrainConfig:
    """What ``detector train`` builds, from what."""

    out: Path
    work: Path
    seeds: tuple[int, ...] = (1, 3, 4)
    heldout: tuple[int, ...] = (2, 5)
    days: float = 3.0
    scale: float = 1.0
    version: int = 1
    targets: tuple[str, ...] = ("account", "cluster", "prompt")
    shared: Path | None = None
    command: str = ""
    #: Analyst-labelled rows added to training (``detector train --dispositions``): target -> rows.
    extra: dict[str, pl.DataFrame] | None = None


def capture_runs(cfg: TrainConfig, seeds: Sequence[int]) -> list[Captured]:
    """Simulate (cached under ``cfg.work``) and replay each seed."""
    runs = []
    for seed in seeds:
        run_dir = simulate_run(
            cfg.work / f"seed{seed}-d{cfg.days:g}-s{cfg.scale:g}", seed, cfg.days, cfg.scale
        )
        log.info("replaying seed %d", seed)
        runs.append(capture(run_dir))
    return runs


def train_tabular(cfg: TrainConfig, target: str, train: list[Captured], held: list[Captured]) -> Manifest:
    """Fit, choose the threshold out of fold, measure on held-out seeds, export one account/cluster model."""
    key = TARGET_KEYS[target]
    names = model_features(target)
    frames = [getattr(c, target) for c in train]
    extra = (cfg.extra or {}).get(target)
    before = None
    if extra is not None and extra.height:
        before = _heldout_metrics(frames, held, target, names)  # the same recipe without the labels
        schema = frames[0].schema
        missing = [pl.lit(None, dtype=schema[c]).alias(c) for c in schema if c not in extra.columns]
        frames = [*frames, extra.with_columns(missing).select(list(schema)).cast(dict(schema))]
    xs = [to_matrix(f, names) for f in frames]
    ys = [f["label"].to_numpy().astype(bool) for f in frames]
    oof = out_of_fold(xs, ys)
    benign_max = max(
        float(
            f.select(key, "label")
            .with_columns(pl.Series("_p", p))
            .filter(~pl.col("label"))
            .group_by(key)
            .agg(pl.col("_p").max())["_p"]
            .max()
            or 0.0
        )
        for f, p in zip(frames, oof, strict=True)
    )
    threshold = entity_threshold(benign_max)
    x, y = np.concatenate(xs), np.concatenate(ys)
    estimator = make_estimator().fit(x, y)
    hframe = pl.concat([getattr(c, target) for c in held], how="vertical_relaxed")
    hx, hy = to_matrix(hframe, names), hframe["label"].to_numpy().astype(bool)
    hp = positive_proba(estimator, hx)
    heldout: dict[str, Any] = {
        "seeds": [c.seed for c in held],
        "rows": int(hx.shape[0]),
        "positives": int(hy.sum()),
        "auc": roc_auc(hy, hp),
        "oof_auc": roc_auc(np.concatenate(ys), np.concatenate(oof)),
        "entity": key,
        "groups": [g.as_dict() for g in group_rates(hframe, hp, key, threshold)],
    }
    if before is not None and extra is not None:
        heldout["before_dispositions"] = before
        heldout["disposition_rows"] = {
            "rows": extra.height,
            "positives": int(extra["label"].sum()),
        }
    training: dict[str, Any] = {
        "data": f"simulator runs replayed through the engine's {target} features, one row per {key} per tick",
        "command": cfg.command,
        "seeds": list(cfg.seeds),
        "days": cfg.days,
        "scale": cfg.scale,
        "events_sha256": {str(c.seed): c.events_sha256 for c in (*train, *held)},
        "rows": int(x.shape[0]),
        "positives": int(y.sum()),
        "label": "attacker account" if target == "account" else "most members are attackers",
        "threshold_rule": f"highest benign out-of-fold {key} score {benign_max:.4f} + margin (fit.py)",
    }
    return export_model(
        estimator,
        name=MODEL_NAMES[target],
        version=cfg.version,
        target=target,
        features=names,
        threshold=threshold,
        high_threshold=high_band(threshold),
        reference=benign_reference(x, y, names),
        training=training,
        heldout=heldout,
        parity_x=hx,
        out_dir=cfg.out,
        required=[n for n in names if all(f[n].null_count() == 0 for f in frames)],
    )


def train_all(cfg: TrainConfig) -> list[Manifest]:
    """Build every model of ``cfg.targets`` into ``cfg.out`` (with cards); return their manifests."""
    out: list[Manifest] = []
    tabular = [t for t in cfg.targets if t in ("account", "cluster")]
    if tabular:
        train = capture_runs(cfg, cfg.seeds)
        held = capture_runs(cfg, cfg.heldout)
        for target in tabular:
            log.info("training the %s model", target)
            out.append(train_tabular(cfg, target, train, held))
    if "prompt" in cfg.targets:
        if cfg.shared is None:
            raise ValueError("the prompt model needs --shared (the folder holding data/prompts)")
        from detector.lab.train.prompt_data import train_prompt_model

        out.append(train_prompt_model(cfg.shared, cfg.out, cfg.version, cfg.command))
    for m in out:
        write_card(m, cfg.out)
    return out


def _heldout_metrics(
    frames: list[pl.DataFrame], held: list[Captured], target: str, names: list[str]
) -> dict[str, Any]:
    """Held-out AUC and per-group rates of the recipe fitted on ``frames`` (threshold out of fold)."""
    key = TARGET_KEYS[target]
    xs = [to_matrix(f, names) for f in frames]
    ys = [f["label"].to_numpy().astype(bool) for f in frames]
    oof = out_of_fold(xs, ys)
    tops = [
        f.select(key, "label")
        .with_columns(pl.Series("_p", p))
        .filter(~pl.col("label"))
        .group_by(key)
        .agg(pl.col("_p").max())["_p"]
        .max()
        for f, p in zip(frames, oof, strict=True)
    ]
    benign_max = max(float(t) if isinstance(t, int | float) else 0.0 for t in tops)
    threshold = entity_threshold(benign_max)
    estimator = make_estimator().fit(np.concatenate(xs), np.concatenate(ys))
    hframe = pl.concat([getattr(c, target) for c in held], how="vertical_relaxed")
    hx, hy = to_matrix(hframe, names), hframe["label"].to_numpy().astype(bool)
    hp = positive_proba(estimator, hx)
    return {
        "auc": roc_auc(hy, hp),
        "threshold": threshold,
        "groups": [g.as_dict() for g in group_rates(hframe, hp, key, threshold)],
    }
