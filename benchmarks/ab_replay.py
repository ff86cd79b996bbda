"""A/B throughput of two revisions on one file, in one run: the engine alone and replay end to end.

Speed figures on a shared 2-core machine drift by 10-20% from minute to minute, so a change is
measured against its base in the same run: the base revision is checked out in a temporary git
worktree, and both are run alternately, each in a fresh interpreter; the best of each is reported.

    .venv/bin/python benchmarks/ab_replay.py FILE [--base HEAD~1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _worktree import ROOT, base_worktree

_RUN = r"""
import json, sys, time
from pathlib import Path
import polars as pl
from detector.app import build_engine
from detector.io.files import iter_file
from detector.runtime.replay import replay, SLICE_ROWS

path = Path(sys.argv[1])
t, c = time.perf_counter(), time.process_time()
summary = replay([path], build_engine(), None)
e2e, e2e_cpu = time.perf_counter() - t, time.process_time() - c
engine = build_engine()
events = pl.concat(
    [engine.enrich(c.batch.events) for c in iter_file(path)], how="vertical_relaxed"
).sort("ts", "request_id")
t, c = time.perf_counter(), time.process_time()
for start in range(0, events.height, SLICE_ROWS):
    engine.process(events.slice(start, SLICE_ROWS), enriched=True)
engine.flush()
print(json.dumps({"n": summary.records, "e2e": e2e, "engine": time.perf_counter() - t,
                  "e2e_cpu": e2e_cpu, "engine_cpu": time.process_time() - c}))
"""


def _once(tree: Path, path: Path) -> dict[str, float]:
    out = subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", _RUN, str(path)],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("file", type=Path, help="A JSONL or Parquet file of gateway events.")
    ap.add_argument("--base", default="HEAD~1", help="The revision to compare against.")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    path = args.file.resolve()
    with base_worktree(args.base) as base:
        runs: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
        for _ in range(args.rounds):
            for name, tree in (("base", base), ("head", ROOT)):
                runs[name].append(_once(tree, path))
    n = runs["head"][0]["n"]
    print(
        f"{path.name}: {int(n):,} events, best of {args.rounds} alternating runs "
        f"({args.base} vs the working tree)"
    )
    print("| stage | base events/s | head events/s | speed-up |")
    print("|---|---|---|---|")
    for stage in ("engine", "e2e"):
        b = min(r[stage] for r in runs["base"])
        h = min(r[stage] for r in runs["head"])
        label = "engine only (enriched events)" if stage == "engine" else "replay end to end"
        print(f"| {label} | {n / b:,.0f} | {n / h:,.0f} | {b / h:.2f}x |")
    # CPU time (all threads) moves less with the machine's load than wall time
    print("| stage | base CPU µs/event | head CPU µs/event | head / base |")
    print("|---|---|---|---|")
    for stage in ("engine", "e2e"):
        b = min(r[f"{stage}_cpu"] for r in runs["base"]) / n * 1e6
        h = min(r[f"{stage}_cpu"] for r in runs["head"]) / n * 1e6
        label = "engine only (enriched events)" if stage == "engine" else "replay end to end"
        print(f"| {label} | {b:.1f} | {h:.1f} | {h / b:.2f}x |")


if __name__ == "__main__":
    main()
