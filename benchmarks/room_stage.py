"""The room test's cost with and without its pruning (``room.may_pass``), in one process.

Replays a file; at every ``room_templates`` call of the engine (one per tick with accused points) the
call runs with the pruning and with nothing pruned, alternately, ``--repeat`` times each, and the two
must give the same rooms. Prints the CPU seconds of each (all threads) and their ratio.

    .venv/bin/python benchmarks/room_stage.py out/d1/events.parquet [--no-models] [--repeat 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

from detector.app import build_engine
from detector.detect import room
from detector.evidence_settings import EvidenceSettings
from detector.runtime.replay import replay

ROOT = Path(__file__).resolve().parents[1]


def _keep_all(
    keys: pl.DataFrame, members: pl.DataFrame, sub: pl.DataFrame, s: EvidenceSettings
) -> pl.DataFrame:
    return members.select("cluster_id").unique()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("file", type=Path, help="A JSONL or Parquet file of gateway events.")
    ap.add_argument("--no-models", action="store_true", help="Rules only.")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    templates, prune = room.room_templates, room.may_pass
    cpu = {"pruned": 0.0, "unpruned": 0.0}
    calls = [0]

    def both(keys: pl.DataFrame, accounts: pl.DataFrame, s: EvidenceSettings, *rest: object) -> pl.DataFrame:
        out = {}
        for _ in range(args.repeat):
            for name, fn in (("unpruned", _keep_all), ("pruned", prune)):
                room.may_pass = fn  # type: ignore[assignment]
                t = time.process_time()
                out[name] = templates(keys, accounts, s, *rest)  # type: ignore[arg-type]
                cpu[name] += time.process_time() - t
        assert sorted(out["pruned"].iter_rows()) == sorted(out["unpruned"].iter_rows())
        calls[0] += 1
        return out["pruned"]

    room.room_templates = both  # type: ignore[assignment]
    replay([args.file], build_engine(ROOT / "rules", models=not args.no_models), None)
    print(
        f"{args.file}: {calls[0]} room_templates calls (ticks with accused points), {args.repeat} runs each"
    )
    for name, sec in cpu.items():
        print(f"| {name} | {sec / args.repeat:.2f} s CPU per replay |")
    print(f"| pruned / unpruned | {cpu['pruned'] / cpu['unpruned']:.2f}x |")


if __name__ == "__main__":
    main()
