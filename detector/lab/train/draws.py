"""The simulator draws the account and cluster models learn from: randomized, in disjoint blocks.

A draw is one run of the evasion matrix's generator (``detector.lab.matrix.draw_params``): the honest
personas (the attacker look-alikes included) plus one campaign of every family, each family with its
knobs (rate, account age, payment, network, sign-ups, blend) drawn from wide ranges. Draw ``i`` is
always the same run (seed ``SEED_BASE + i``). The models never see a fixed, hand-picked scenario.

The blocks (indices):

- ``TRAIN_DRAWS`` (0..29): the trees are fitted on them, and the decision threshold is chosen on their
  out-of-fold scores (``detector.lab.train.fit``).
- ``CALIBRATION_DRAWS`` (500..539): never fitted on. The Platt map from raw to calibrated probability
  is fitted on them (two numbers), and the precision and recall recorded in the manifest at the medium
  and high thresholds, with the held-out AUC and per-group rates, are measured on them.
- ``detector.lab.matrix.HELD_OUT_FROM`` (1000) and above: the evasion matrix's held-out block. Training
  refuses it: nobody trains or calibrates on it.
- ``detector.lab.matrix.CALIBRATION_RESERVE`` (5000..5999): a calibration block only, for a larger
  calibration than 0..999 leaves room for; the trees are never fitted on it and the matrix refuses it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import polars as pl

from detector.lab.train.data import Captured, capture, simulator_fingerprint

#: Draw indices the trees are fitted on.
TRAIN_DRAWS: Final = tuple(range(0, 30))
#: Draw indices the calibration map and the manifest's operating points come from.
CALIBRATION_DRAWS: Final = tuple(range(500, 540))


@dataclass(frozen=True)
class DrawSize:
    """How big each draw is: the matrix's defaults (1 day, a quarter of the honest population)."""

    days: float = 1.0
    scale: float = 0.25
    attack_accounts: int = 20


def parse_draws(text: str) -> tuple[int, ...]:
    """``"0-29"``, ``"500,501"`` or ``"0-9,20-29"`` -> the draw indices, in order, without repeats."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        values = range(int(lo), int(hi) + 1) if sep else [int(lo)]
        out += [v for v in values if v not in out]
    return tuple(out)


def check_blocks(train: Sequence[int], calibration: Sequence[int]) -> None:
    """Raise ``ValueError`` unless both blocks are non-empty, disjoint and below the held-out block
    (calibration draws may also come from the calibration reserve)."""
    from detector.lab.matrix import CALIBRATION_RESERVE, HELD_OUT_FROM

    if not train or not calibration:
        raise ValueError("training needs a training block and a calibration block of draws")
    both = set(train) & set(calibration)
    if both:
        raise ValueError(f"draws {sorted(both)[:5]} are in both the training and the calibration block")
    reserve = CALIBRATION_RESERVE
    held = sorted(i for i in train if i >= HELD_OUT_FROM or i < 0)
    held += sorted(i for i in calibration if (i >= HELD_OUT_FROM or i < 0) and i not in reserve)
    if held:
        raise ValueError(
            f"draws {held[:5]} are outside 0..{HELD_OUT_FROM - 1}: indices from {HELD_OUT_FROM} are the "
            f"evasion matrix's held-out block, never trained or calibrated on (calibration may also use "
            f"{reserve.start}..{reserve.stop - 1})"
        )


def _fingerprint(index: int, size: DrawSize) -> str:
    import detector.lab.matrix as matrix

    h = hashlib.sha256(simulator_fingerprint().encode())
    h.update(Path(matrix.__file__).read_bytes())
    h.update(f"{index}|{size.days}|{size.scale}|{size.attack_accounts}".encode())
    return h.hexdigest()


def simulate_draw(out_dir: Path, index: int, size: DrawSize) -> Path:
    """Simulate draw ``index`` into ``out_dir`` (kept when the simulator and matrix are unchanged)."""
    from detector.lab.knobs import SEED_BASE, draw_params
    from detector.lab.simulate import simulate

    stamp = out_dir / "draw.sha256"
    version = _fingerprint(index, size)
    if (out_dir / "events.parquet").exists() and stamp.exists() and stamp.read_text() == version:
        return out_dir
    _, params = draw_params(index, size.attack_accounts, size.scale)
    simulate(out_dir, size.days, SEED_BASE + index, scale=size.scale, params=params)
    stamp.write_text(version)
    return out_dir


def capture_draws(work: Path, indices: Sequence[int], size: DrawSize) -> list[Captured]:
    """Simulate (cached under ``work``) and replay each draw; every frame gains a ``draw`` column."""
    out = []
    for i in indices:
        run = simulate_draw(work / f"draw{i}-d{size.days:g}-s{size.scale:g}-a{size.attack_accounts}", i, size)
        c = capture(run)
        tag = pl.lit(i, dtype=pl.Int64).alias("draw")
        cluster = c.cluster.with_columns(tag) if c.cluster.width else c.cluster
        out.append(replace(c, account=c.account.with_columns(tag), cluster=cluster))
    return out
