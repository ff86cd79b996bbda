"""What one tick of lag on the population context costs (``EngineSettings.context_lag``, issue 13).

Runs development draws of the evasion matrix as ``detector evaluate-matrix`` does (``lab.matrix``),
each simulated once and replayed twice, with the lag off and on, in this process; prints per family the
attackers named at medium and the median hours to the first accusation, and the honest accounts at
medium and high, off against on, and the draws whose alerts differ. Development draws only.

    .venv/bin/python benchmarks/context_lag_matrix.py --first-draw 121 --draws 12 --scale 1.85 --work out/lag
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Any

from detector.defaults import rules_dir
from detector.lab import matrix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--first-draw", type=int, required=True)
    ap.add_argument("--draws", type=int, default=12)
    ap.add_argument("--scale", type=float, default=1.85)
    ap.add_argument("--work", type=Path, required=True, help="Folder for the draws (kept).")
    args = ap.parse_args()
    if args.first_draw + args.draws > matrix.HELD_OUT_FROM:
        raise SystemExit(f"draws from {matrix.HELD_OUT_FROM} on are held out: not run here")
    simulate = matrix.simulate

    def once(out: Path, *a: Any, **k: Any) -> Any:  # each draw simulated once, replayed twice
        return None if (out / "events.parquet").exists() else simulate(out, *a, **k)

    matrix.simulate = once  # type: ignore[assignment]
    cfg = matrix.MatrixConfig(args.draws, False, 1.0, args.scale, 20, rules_dir(), None, args.first_draw)
    rows: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    differ = []
    for i in range(args.first_draw, args.first_draw + args.draws):
        digests = []
        for lag in ("off", "on"):
            os.environ["DETECTOR_CONTEXT_LAG"] = "true" if lag == "on" else "false"
            rows[lag] += matrix._one_draw(i, cfg, args.work)
            digests.append(
                hashlib.sha256((args.work / f"draw{i}" / "alerts_off.jsonl").read_bytes()).hexdigest()
            )
        if digests[0] != digests[1]:
            differ.append(i)
    os.environ.pop("DETECTOR_CONTEXT_LAG")
    (off_cells, off_people), (on_cells, on_people) = (matrix.summarise(rows[k]) for k in ("off", "on"))
    print("family | campaigns | named off -> on | first accusation, median h, off -> on")
    for a, b in zip(off_cells, on_cells, strict=True):
        if a["knob"] == "all":
            named = [sum(r["detected"] for r in rows[k] if r.get("family") == a["family"]) for k in rows]
            total = sum(r["accounts"] for r in rows["off"] if r.get("family") == a["family"])
            print(
                f"{a['family']} | {a['campaigns']} | {named[0]} -> {named[1]} of {total} | "
                f"{a['ttd_hours_median']} -> {b['ttd_hours_median']}"
            )
    print("persona | accounts | medium off -> on | high off -> on")
    for a, b in zip(off_people, on_people, strict=True):
        if a["medium"] or a["high"] or b["medium"] or b["high"]:
            medium, high = f"{a['medium']} -> {b['medium']}", f"{a['high']} -> {b['high']}"
            print(f"{a['persona']} | {a['accounts']} | {medium} | {high}")
    print(f"draws whose alerts differ: {differ}")


if __name__ == "__main__":
    main()
