"""Scoring throughput: rows/s of ``ModelSet`` inference by batch size, with the provider in use.

Rows are the model's parity-probe rows (real held-out feature rows) tiled to the batch size; each
batch size runs for at least ``MIN_SECONDS`` and the best of ``repeat`` runs is kept.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from detector.detect.models.runtime import ModelSet

MIN_SECONDS: Final = 0.2


def throughput(
    models_dir: Path, batch_sizes: Sequence[int], repeat: int = 3, available: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """One row per (model, batch size): rows/s of ``LoadedModel.predict`` and the provider."""
    ms = ModelSet.load(models_dir, available)
    out = []
    for m in ms.models:
        probe = np.load(models_dir / f"{m.manifest.stem}.parity.npz")["x"]
        for size in batch_sizes:
            reps = -(-size // probe.shape[0])
            batch = np.ascontiguousarray(np.tile(probe, (reps, 1))[:size])
            m.predict(batch)  # warm-up
            best = 0.0
            for _ in range(repeat):
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < MIN_SECONDS:
                    m.predict(batch)
                    n += size
                best = max(best, n / (time.perf_counter() - t0))
            out.append({"model": m.manifest.stem, "provider": m.provider, "batch": size, "rows_per_s": best})
    return out
