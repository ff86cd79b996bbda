"""Model folders side by side on the evasion matrix's development draws (issue 17 item 4).

Runs draws as ``detector evaluate-matrix`` does (``lab.matrix._one_draw``, IP intelligence off), each
simulated once and replayed once per models folder (``DETECTOR_MODELS_DIR``), in this process. Each
(folder, draw) result is kept under ``--work`` and reused, so a folder can be added to a block later.
Prints per family the attackers named at medium, the cells (family x knob value) at recall 0.9 or
above, the honest accounts at medium and high per persona, and the campaigns whose count differs.
Development draws only (the held-out block and the calibration reserve are refused).

    .venv/bin/python benchmarks/models_matrix.py --first-draw 281 --draws 12 --work out/mm \\
        --models v4=models --models v5=out/models-v5
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from detector.defaults import rules_dir
from detector.lab import matrix


def _rows(label: str, folder: Path, i: int, cfg: matrix.MatrixConfig, work: Path) -> list[dict[str, Any]]:
    cache = work / "rows" / label / f"draw{i}.json"
    if cache.exists():
        return list(json.loads(cache.read_text()))
    os.environ["DETECTOR_MODELS_DIR"] = str(folder.resolve())
    try:
        rows = matrix._one_draw(i, cfg, work)
    finally:
        os.environ.pop("DETECTOR_MODELS_DIR")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(rows))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--first-draw", type=int, required=True)
    ap.add_argument("--draws", type=int, default=12)
    ap.add_argument("--scale", type=float, default=1.85)
    ap.add_argument("--work", type=Path, required=True, help="Folder for the draws and results (kept).")
    ap.add_argument("--models", action="append", required=True, help="label=folder, in table order.")
    args = ap.parse_args()
    last = args.first_draw + args.draws
    reserve = matrix.CALIBRATION_RESERVE
    if last > matrix.HELD_OUT_FROM or (args.first_draw < reserve.stop and last > reserve.start):
        raise SystemExit("development draws only: not the held-out block, not the calibration reserve")
    folders = {k: Path(v) for k, v in (m.split("=", 1) for m in args.models)}
    simulate = matrix.simulate

    def once(out: Path, *a: Any, **k: Any) -> Any:  # each draw simulated once, replayed per folder
        return None if (out / "events.parquet").exists() else simulate(out, *a, **k)

    matrix.simulate = once  # type: ignore[assignment]
    cfg = matrix.MatrixConfig(args.draws, False, 1.0, args.scale, 20, rules_dir(), None, args.first_draw)
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in folders}
    for i in range(args.first_draw, last):
        for label, folder in folders.items():
            rows[label] += _rows(label, folder, i, cfg, args.work)
    summary = {k: matrix.summarise(v) for k, v in rows.items()}
    labels = list(folders)
    print("models | " + " | ".join(labels))
    campaigns = {k: [r for r in v if r["kind"] == "campaign"] for k, v in rows.items()}
    total = sum(r["accounts"] for r in campaigns[labels[0]])
    named = [sum(r["detected"] for r in campaigns[k]) for k in labels]
    print(f"named (of {total}) | " + " | ".join(map(str, named)))
    cells = {k: [c for c in summary[k][0] if c["knob"] != "all"] for k in labels}
    at = [sum(c["recall"] >= 0.9 for c in cells[k]) for k in labels]
    print(f"cells at 0.9 (of {len(cells[labels[0]])}) | " + " | ".join(map(str, at)))
    for c in summary[labels[0]][0]:
        if c["knob"] == "all":
            rec = [
                next(d for d in summary[k][0] if d["family"] == c["family"] and d["knob"] == "all")
                for k in labels
            ]
            print(f"{c['family']} recall | " + " | ".join(f"{d['recall']:.3f}" for d in rec))
    for p in summary[labels[0]][1]:
        ps = [next(q for q in summary[k][1] if q["persona"] == p["persona"]) for k in labels]
        if any(q["medium"] or q["high"] for q in ps):
            print(
                f"{p['persona']} ({p['accounts']}) medium / high | "
                + " | ".join(f"{q['medium']} / {q['high']}" for q in ps)
            )
    honest = [
        (sum(q["medium"] for q in summary[k][1]), sum(q["high"] for q in summary[k][1])) for k in labels
    ]
    print("honest medium / high | " + " | ".join(f"{m} / {h}" for m, h in honest))
    print("campaigns whose named count differs (draw, family, accounts: " + ", ".join(labels) + "):")
    for parts in zip(*(campaigns[k] for k in labels), strict=True):
        if len({r["detected"] for r in parts}) > 1:
            a = parts[0]
            print(
                f"  {a['draw']} {a['family']} {a['accounts']}: "
                + " -> ".join(str(r["detected"]) for r in parts)
            )
    for k in labels:
        cells_by = {(c["family"], c["knob"], c["value"]): c["recall"] for c in cells[k]}
        (args.work / f"cells_{k}.json").write_text(json.dumps(sorted(cells_by.items())))
    moved = [
        (
            c["family"],
            c["knob"],
            c["value"],
            [
                next(
                    d["recall"]
                    for d in cells[k]
                    if (d["family"], d["knob"], d["value"]) == (c["family"], c["knob"], c["value"])
                )
                for k in labels
            ],
        )
        for c in cells[labels[0]]
    ]
    for fam, knob, value, recs in moved:
        if len({r >= 0.9 for r in recs}) > 1:
            print(f"  cell crosses 0.9: {fam} {knob}={value}: " + " -> ".join(f"{r:.3f}" for r in recs))


if __name__ == "__main__":
    main()
