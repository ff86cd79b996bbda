"""Labelled training frames from the simulator: simulate, replay through the engine, capture features.

``capture(events, labels)`` replays one simulated run with an ``on_features`` observer and returns the
account and cluster feature frames of every tick, each row labelled from the simulator's ``labels.json``:

- account rows: ``label`` = the account is an attacker; ``group`` = its campaign family or benign persona.
- cluster rows: ``label`` = most of the cluster's members (at that tick) are attackers; ``group`` = the
  most common family/persona among its members; ``members`` = the member account ids (for evaluation).

Nothing here reads prompt text (replay drops it during enrichment) and nothing is written to disk except
what ``simulate`` writes into the caller's folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl


@dataclass(frozen=True)
class Captured:
    """One replayed run's labelled feature frames."""

    seed: int
    account: pl.DataFrame
    cluster: pl.DataFrame
    #: account_id -> {"attacker": bool, "group": family or persona}
    accounts: Mapping[str, Mapping[str, Any]]
    #: SHA-256 of the events file the frames came from
    events_sha256: str


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def account_groups(labels: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """account_id -> {attacker, group}: the campaign family for attackers, the persona otherwise."""
    campaigns = labels.get("campaigns", {})
    out: dict[str, dict[str, Any]] = {}
    for acct, info in labels["accounts"].items():
        attacker = bool(info.get("attacker"))
        cid = info.get("campaign_id")
        family = campaigns.get(cid, {}).get("family") if cid else None
        group = str(family or info.get("persona") or "unknown")
        out[acct] = {"attacker": attacker, "group": group}
    return out


def simulate_run(out_dir: Path, seed: int, days: float, scale: float) -> Path:
    """Simulate one labelled run into ``out_dir`` (skipped when its labels already match); the folder."""
    from detector.lab.simulate import simulate

    labels = out_dir / "labels.json"
    stamp = out_dir / "simulator.sha256"
    version = simulator_fingerprint()
    if labels.exists() and (out_dir / "events.parquet").exists() and stamp.exists():
        meta = orjson.loads(labels.read_bytes())
        same = meta.get("seed") == seed and meta.get("days") == days and meta.get("scale") == scale
        if same and stamp.read_text() == version:
            return out_dir
    simulate(out_dir, days=days, seed=seed, scale=scale)
    stamp.write_text(version)
    return out_dir


def simulator_fingerprint() -> str:
    """SHA-256 of the simulator's source: a cached run is reused only if the simulator is unchanged."""
    import detector.lab.simulate as sim

    h = hashlib.sha256()
    for path in sorted(Path(sim.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def capture(run_dir: Path) -> Captured:
    """Replay ``run_dir/events.parquet`` with the default rules and return labelled feature frames."""
    from detector.app import build_engine
    from detector.engine import Observers
    from detector.runtime.replay import replay

    labels = orjson.loads((run_dir / "labels.json").read_bytes())
    groups = account_groups(labels)
    frames: dict[str, list[pl.DataFrame]] = {"account": [], "cluster": []}
    members: list[pl.DataFrame] = []

    def on_features(target: str, frame: pl.DataFrame, now: datetime) -> None:
        frames[target].append(frame)
        if target == "cluster" and engine.clusters is not None:
            live = engine.clusters.members.filter(pl.col("cluster_id").is_in(frame["cluster_id"].implode()))
            members.append(live.with_columns(pl.lit(now).alias("tick_end")))

    # features do not depend on models: capture rules-only
    engine = build_engine(models=False, observers=Observers(on_features=on_features))
    events = run_dir / "events.parquet"
    replay([events], engine, alerts_out=None)
    lab = pl.DataFrame(
        {
            "account_id": list(groups),
            "label": [g["attacker"] for g in groups.values()],
            "group": [g["group"] for g in groups.values()],
        },
        schema={"account_id": pl.String, "label": pl.Boolean, "group": pl.String},
    )
    account = pl.concat(frames["account"], how="vertical_relaxed").join(
        lab, on="account_id", how="left", maintain_order="left"
    )
    account = account.with_columns(pl.col("label").fill_null(False), pl.col("group").fill_null("unknown"))
    cluster = _label_clusters(frames["cluster"], members, lab)
    return Captured(int(labels["seed"]), account, cluster, groups, file_sha256(events))


def _label_clusters(
    frames: list[pl.DataFrame], members: list[pl.DataFrame], lab: pl.DataFrame
) -> pl.DataFrame:
    if not frames:
        return pl.DataFrame()
    feats = pl.concat(frames, how="vertical_relaxed")
    mem = pl.concat(members, how="vertical_relaxed").join(
        lab, on="account_id", how="left", maintain_order="left"
    )
    mem = mem.with_columns(pl.col("label").fill_null(False), pl.col("group").fill_null("unknown"))
    per = mem.group_by("cluster_id", "tick_end").agg(
        (pl.col("label").mean() > 0.5).alias("label"),
        pl.col("group").mode().sort().first().alias("group"),
        pl.col("account_id").sort().alias("members"),
    )
    return feats.join(per, on=["cluster_id", "tick_end"], how="left", maintain_order="left").with_columns(
        pl.col("label").fill_null(False), pl.col("group").fill_null("unknown")
    )
