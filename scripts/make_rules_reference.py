"""Regenerate the honest reference population shipped with the rules (rules/reference/).

``detector rules check`` evaluates every enforce rule on it and fails a rule that fires on more than
``max_honest_share`` of the honest accounts (or clusters) of any persona (``population.json``). The
frames are the account and cluster features the engine computed, tick by tick, for the simulator's
honest personas only (no attacker, no prompt text, no account id: subjects are renamed ``s<n>``).
One row per subject and hour keeps the files small.

    .venv/bin/python scripts/make_rules_reference.py [--out rules/reference]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import polars as pl

from detector.lab.train.data import capture, simulate_run
from detector.window.features import CATALOGUES

SEED, DAYS, SCALE = 23, 1.0, 1.0
#: A rule firing on more than this share of one honest persona's subjects fails ``rules check``. The
#: shipped rules stay at or under ~0.15 on every persona (eval harnesses at temperature 0 are the
#: closest); a rule that fires on everyone (``requests_24h >= 0``) is at 1.0.
MAX_HONEST_SHARE = 0.25


def _reference(frame: pl.DataFrame, key: str, target: str) -> pl.DataFrame:
    """Honest rows, one per subject and hour, with the persona, a renamed subject and the features."""
    features = list(CATALOGUES[target])
    honest = frame.filter(~pl.col("label")).filter(pl.col("tick_end").dt.minute() == 0)
    names = honest.select(key).unique().sort(key).with_row_index("_n")
    return (
        honest.join(names, on=key, how="left")
        .select(
            pl.col("group").alias("persona"),
            pl.format("s{}", pl.col("_n")).alias("subject"),
            *[pl.col(f) for f in features if f in honest.columns],
        )
        .sort("persona", "subject")
    )


def main() -> None:
    """Simulate, replay with a feature capture, write the honest frames and the manifest."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("rules/reference"))
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        captured = capture(simulate_run(Path(tmp), SEED, DAYS, SCALE))
    frames = {
        "account": _reference(captured.account, "account_id", "account"),
        "cluster": _reference(captured.cluster, "cluster_id", "cluster"),
    }
    for target, frame in frames.items():
        frame.write_parquet(out / f"{target}.parquet", compression="zstd", statistics=False)
    manifest = {
        "simulator": {"seed": SEED, "days": DAYS, "scale": SCALE},
        "max_honest_share": MAX_HONEST_SHARE,
        "reason": "an enforce rule accusing more than a quarter of one honest persona is broken, not tuned",
        "subjects": {
            t: {
                str(k): int(v) for k, v in f.group_by("persona").agg(pl.col("subject").n_unique()).iter_rows()
            }
            for t, f in frames.items()
        },
        "regenerate": "python scripts/make_rules_reference.py",
    }
    (out / "population.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
