"""A toy account (or cluster) model for the model tests: rows over the target's features whose label
depends on ``cot_share_24h`` and ``out_in_ratio_24h`` only, fitted and exported as ``detector train``
would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from detector.detect.models.spec import model_features
from detector.lab.train.export import export_model
from detector.lab.train.fit import high_band, make_estimator

NAMES = model_features("account")


def toy_data(n: int, seed: int, target: str = "account") -> tuple[np.ndarray, np.ndarray]:
    """``n`` random rows and their labels (the same ``seed``, the same rows)."""
    names = model_features(target)
    rng = np.random.default_rng(seed)
    x = rng.random((n, len(names))).astype(np.float32)
    y = (x[:, names.index("cot_share_24h")] > 0.6) & (x[:, names.index("out_in_ratio_24h")] > 0.5)
    return x, y


def export_toy(
    out: Path, n_estimators: int = 15, target: str = "account", **manifest: Any
) -> tuple[object, np.ndarray]:
    """Fit the toy model on 2,000 rows and export it to ``out`` as ``toy_gb`` v1 (``manifest``: extra
    ``export_model`` arguments, e.g. calibration and operating points); returns the estimator and rows."""
    names = model_features(target)
    x, y = toy_data(2000, 1, target)
    est = make_estimator(n_estimators=n_estimators).fit(x, y)
    export_model(
        est,
        name="toy_gb",
        version=1,
        target=target,
        features=names,
        threshold=0.5,
        high_threshold=high_band(0.5),
        reference={f: float(np.median(x[~y][:, j])) for j, f in enumerate(names)},
        training={"command": "detector train (test)"},
        heldout={"auc": 1.0},
        parity_x=toy_data(300, 2, target)[0],
        out_dir=out,
        **manifest,
    )
    return est, x
