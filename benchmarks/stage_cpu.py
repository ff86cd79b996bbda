"""CPU per event of each stage of the two-stage split, in replay, this tree against a base revision.

Each run is a fresh interpreter (this tree's code, or ``--base``'s checked out in a temporary worktree)
that replays one events file as: the single engine with the lag off, the single engine with the lag on,
and the split (``runtime/shards.py``): the cluster stage over every event, then ``--shards`` account
stages over their shards (a counting pass, not timed, then the timed reading pass). CPU is the
process's (``time.process_time``: every thread, the reader's decode and enrichment included), from
the engine built (models loaded) to the replay's end. Runs alternate base and head ``--repeat`` times;
the median of each figure is printed, with the ratios issue 13's gate reads, and whether the split's
alerts (merged, sorted) are the lagged single engine's.

    .venv/bin/python benchmarks/stage_cpu.py out/d1/events.parquet --base main --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

from _worktree import ROOT, base_worktree  # type: ignore[import-not-found]


def _stages(events: Path, k: int, work: Path) -> dict[str, object]:
    """In the child: each stage's CPU seconds and events."""
    from detector.app import build_engine
    from detector.runtime.replay import replay
    from detector.runtime.shards import Publication, split_events
    from detector.settings import EngineSettings

    def build(lag: bool):  # type: ignore[no-untyped-def]
        return partial(build_engine, settings=EngineSettings().model_copy(update={"context_lag": lag}))

    def timed(engine, path: Path, out: Path) -> tuple[float, int]:  # type: ignore[no-untyped-def]
        c0 = time.process_time()
        summary = replay([path], engine, out)
        return time.process_time() - c0, summary.events

    import detector

    row: dict[str, object] = {"code": str(Path(detector.__file__).parents[1])}
    row["single_nolag"] = timed(build(False)(), events, work / "nolag.jsonl")
    row["single_lag"] = timed(build(True)(), events, work / "lag.jsonl")
    wire = Publication()
    cluster = build(True)(observers=wire.observers())
    cluster.stage = "cluster"
    row["cluster"] = timed(cluster, events, work / "cluster.jsonl")
    paths = split_events(events, k, work)
    for i, path in enumerate(paths):
        engine = build(True)(observers=wire.counting())
        engine.stage = "account"
        replay([path], engine, work / f"count-{i}.jsonl")
    accounts = []
    for i, path in enumerate(paths):
        engine = build(True)(observers=wire.readers())
        engine.stage = "account"
        accounts.append(timed(engine, path, work / f"account-{i}.jsonl"))
    row["accounts"] = accounts
    outs = [work / "cluster.jsonl", *(work / f"account-{i}.jsonl" for i in range(k))]
    merged = sorted(line for p in outs for line in p.read_text().splitlines())
    row["split_equals_lag"] = merged == sorted((work / "lag.jsonl").read_text().splitlines())
    return row


def _child(tree: Path, events: Path, k: int) -> dict[str, object]:
    """One run in a fresh interpreter on ``tree``'s code."""
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1] + '/benchmarks'); import stage_cpu; "
        "from pathlib import Path; "
        "print(json.dumps(stage_cpu._stages(Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))))"
    )
    with tempfile.TemporaryDirectory(prefix="stage-cpu-") as work:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        args = [sys.executable, "-c", code, str(ROOT), str(events), str(k), work]
        out = subprocess.run(args, env=env, cwd=tree, check=True, capture_output=True, text=True)  # noqa: S603
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _figures(row: dict[str, object]) -> dict[str, float]:
    """µs per input event of each stage (an account stage's per the file's events too), and the ratios."""
    n = row["single_lag"][1]  # type: ignore[index]
    us = {k: row[k][0] / n * 1e6 for k in ("single_nolag", "single_lag", "cluster")}  # type: ignore[index]
    us["accounts"] = sum(a[0] for a in row["accounts"]) / n * 1e6  # type: ignore[attr-defined]
    us["split"] = us["cluster"] + us["accounts"]
    ratios = {
        "cluster_vs_accounts": us["cluster"] / us["accounts"],
        "cluster_vs_nolag": us["cluster"] / us["single_nolag"],
        "cluster_vs_lag": us["cluster"] / us["single_lag"],
        "split_vs_nolag": us["split"] / us["single_nolag"],
        "split_vs_lag": us["split"] / us["single_lag"],
    }
    return {**{f"{k}_us": v for k, v in us.items()}, **ratios}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("events", type=Path)
    ap.add_argument("--base", help="a git revision to run beside this tree (e.g. main)")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    events = args.events.resolve()
    with base_worktree(args.base) if args.base else nullcontext(None) as base:
        trees = {"head": ROOT, **({"base": base} if base is not None else {})}
        runs: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
        same: dict[str, list[bool]] = {t: [] for t in trees}
        codes: dict[str, object] = {}
        for _ in range(args.repeat):
            for name, tree in reversed(trees.items()):
                row = _child(tree, events, args.shards)
                runs[name].append(_figures(row))
                same[name].append(bool(row["split_equals_lag"]))
                codes[name] = row["code"]
    for name, rows in runs.items():
        med = {k: round(statistics.median(r[k] for r in rows), 3 if "_vs_" in k else 0) for k in rows[0]}
        print(
            json.dumps(
                {
                    "tree": name,
                    "code": codes[name],
                    "runs": len(rows),
                    "split_equals_lag": all(same[name]),
                    **med,
                }
            )
        )
    if len(runs) == 2:
        for k in ("cluster_us", "accounts_us", "single_lag_us", "single_nolag_us"):
            ratio = statistics.median(r[k] for r in runs["head"]) / statistics.median(
                r[k] for r in runs["base"]
            )
            print(f"head/base {k}: {ratio:.3f}")


if __name__ == "__main__":
    main()
