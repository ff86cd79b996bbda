"""What ``detector train`` prints per model (``--json``: the same fields as JSON): aggregate numbers only."""

from __future__ import annotations

from typing import Any

from detector.detect.models.manifest import Manifest
from detector.settings import EngineSettings


def model_summary(m: Manifest, vote_precision: float | None = None) -> dict[str, Any]:
    """One model: thresholds, held-out AUC, calibration, operating points, and whether it votes alone."""
    floor = (
        EngineSettings.model_fields["model_vote_precision"].default
        if vote_precision is None
        else vote_precision
    )
    return {
        "model": m.stem,
        "target": m.target,
        "threshold": m.threshold,
        "high_threshold": m.high_threshold,
        "heldout_auc": m.heldout.get("auc"),
        "heldout_draws": m.heldout.get("draws"),
        "calibration": None if m.calibration is None else m.calibration.model_dump(exclude={"draws"}),
        "operating": {band: p.model_dump() for band, p in m.operating.items()},
        "vote_precision": floor,
        "votes_alone": m.votes(floor),
        "groups": m.heldout.get("groups", []),
        "before_dispositions": m.heldout.get("before_dispositions"),
        "disposition_rows": m.heldout.get("disposition_rows"),
    }


def render_summary(rows: list[dict[str, Any]]) -> str:
    """One block of plain lines per model."""
    lines = []
    for r in rows:
        auc = "n/a" if r["heldout_auc"] is None else f"{r['heldout_auc']:.5f}"
        bands = f"threshold {r['threshold']:.2f}, high {r['high_threshold']:.2f}"
        lines.append(f"{r['model']}: held-out AUC {auc}, {bands}")
        for band in ("medium", "high"):
            p = r["operating"].get(band)
            if p is None:
                continue
            prec = "n/a" if p["precision"] is None else f"{p['precision']:.4f}"
            rec = "n/a" if p["recall"] is None else f"{p['recall']:.4f}"
            lines.append(
                f"  {band} >= {p['threshold']:.2f}: precision {prec} ({p['true_positives']}/{p['flagged']}), "
                f"recall {rec} ({p['true_positives']}/{p['positives']}) over {p['entities']} entities"
            )
        if r["operating"]:
            verdict = "raises to medium alone" if r["votes_alone"] else "stays a low lead alone"
            lines.append(f"  vote: {verdict} (needs precision >= {r['vote_precision']} at medium)")
        before = r["before_dispositions"]
        if before is not None:
            lines.append(
                f"  without the {r['disposition_rows']['rows']} disposition rows: held-out AUC "
                f"{before['auc']}, threshold {before['threshold']}"
            )
            was = {g["group"]: g["rate"] for g in before["groups"]}
            lines += [
                f"  {g['group']}: {was.get(g['group'], 0.0):.3f} -> {g['rate']:.3f}" for g in r["groups"]
            ]
    return "\n".join(lines)
