"""Round 15: the two-stage split replayed with the account stages as worker processes (issue 13 item 3).

For each K: the cluster stage (``Engine.stage="cluster"``: every event, cluster verdicts, the contexts
as bytes) runs in this process; then the K account stages (``stage="account"``: the accounts of one
Kafka partition of ``account_id`` each, reading the published contexts' bytes) run as K spawned worker
processes at once, twice: a first pass publishes each stage's rule-guard counts per tick, the second
reads their sums (``runtime/shards.py``). Stage after stage, not yet tick by tick: wall = cluster stage
+ the slowest shard's two passes.
Beside them, in the same run, the single engine with ``context_lag`` on. Prints one JSON line per run:
wall seconds, CPU seconds (this process; the workers), the cluster stage's share of the CPU, and
whether the merged alerts are the single engine's bytes (sorted).

    .venv/bin/python benchmarks/shard_replay.py out/d1/events.parquet --shards 1 2 --work out/shards
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import polars as pl

from detector.app import build_engine
from detector.runtime.replay import replay
from detector.runtime.shards import Publication, split_events
from detector.settings import EngineSettings


def _builder():  # type: ignore[no-untyped-def]
    return partial(build_engine, settings=EngineSettings().model_copy(update={"context_lag": True}))


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _account_stage(path: Path, wire: Publication, out: Path | None) -> pl.DataFrame:
    """One account stage's pass: counting (``out`` None: its guard counts back) or reading the sums."""
    engine = _builder()(observers=wire.readers() if out is not None else wire.counting())
    engine.stage = "account"
    replay([path], engine, out if out is not None else path.with_suffix(".count.jsonl"))
    return wire.counts


def _run(events: Path, k: int, work: Path) -> dict[str, object]:
    work.mkdir(parents=True, exist_ok=True)
    t0, c0, w0 = time.perf_counter(), _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    if k == 0:  # the single engine, lag on
        replay([events], _builder()(), work / "single.jsonl")
        outs = [work / "single.jsonl"]
        cluster_cpu = 0.0
    else:
        wire = Publication()
        cluster = _builder()(observers=wire.observers())
        cluster.stage = "cluster"
        replay([events], cluster, work / "cluster.jsonl")
        cluster_cpu = _cpu(resource.RUSAGE_SELF) - c0
        paths = split_events(events, k, work)
        outs = [work / "cluster.jsonl", *(work / f"account-{i}.jsonl" for i in range(k))]
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(k, mp_context=spawn) as pool:
            wire.counts = pl.concat(pool.map(_account_stage, paths, [wire] * k, [None] * k))
            list(pool.map(_account_stage, paths, [wire] * k, outs[1:]))
    wall = time.perf_counter() - t0
    own, workers = _cpu(resource.RUSAGE_SELF) - c0, _cpu(resource.RUSAGE_CHILDREN) - w0
    lines = sorted(line for p in outs for line in p.read_text().splitlines())
    return {
        "shards": k,
        "wall_s": round(wall, 1),
        "cpu_s": round(own + workers, 1),
        "cpu_parent_s": round(own, 1),
        "cpu_workers_s": round(workers, 1),
        "cluster_stage_cpu_share": round(cluster_cpu / (own + workers), 3) if k else None,
        "alerts": len(lines),
        "_lines": lines,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work", type=Path, default=Path("out/shards"))
    args = parser.parse_args()
    single = _run(args.events, 0, args.work / "single")
    reference = single.pop("_lines")
    print(json.dumps({"events": str(args.events), **single}), flush=True)
    for k in args.shards:
        row = _run(args.events, k, args.work / f"k{k}")
        row["same_alerts_as_single"] = row.pop("_lines") == reference
        print(json.dumps({"events": str(args.events), **row}), flush=True)


if __name__ == "__main__":
    main()
