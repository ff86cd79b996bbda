"""CPU per event of each stage of the two-stage split, in replay, this tree against a base revision.

Each run is a fresh interpreter (this tree's code, or ``--base``'s checked out in a temporary worktree)
that replays one events file as: the single engine with the lag off, the single engine with the lag on,
and the split (``runtime/shards.py``): the cluster stage over every event, then ``--shards`` account
stages over their shards (a counting pass, not timed, then the timed reading pass). CPU is the
process's (``time.process_time``: every thread, the reader's decode and enrichment included), from
the engine built (models loaded) to the replay's end. Runs alternate base and head ``--repeat`` times;
the median of each figure is printed, with the ratios issue 13's gate reads, and whether the split's
alerts (merged, sorted) are the lagged single engine's.

Round 17 (a tree with ``window/summary.py``): the account stages fold into a ``SummarizingState`` and
the run also prices the cluster stage fed their per-tick summaries instead of events: the summaries'
recording (engine thread) and encoding, their bytes and rows, the per-account encoding (a record per
(account, tick), on every ``--sample``-th tick, scaled up), the cluster side's decoding and fold of every
record with the engine's eviction, and the cluster stage's population work as it runs today (the
contexts, ``population_sheets``, and the cluster verdicts: engine-thread CPU). ``projected`` is the
fold of summaries plus that population work: what a cluster stage fed summaries would still spend.

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


def _timing(owner: object, name: str, book: dict[str, float]) -> None:
    """Wrap ``owner.name`` so that the engine thread's CPU in it adds up in ``book[name]``."""
    inner = getattr(owner, name)

    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        c0 = time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            book[name] = book.get(name, 0.0) + time.thread_time() - c0

    setattr(owner, name, timed)


def _summary_costs(records: list, settings, sample: int) -> dict[str, float]:  # type: ignore[no-untyped-def,type-arg]
    """The summaries' encoding, bytes and rows; the per-account encoding on every ``sample``-th tick;
    the cluster side's decoding and fold (``apply_summary``) with the engine's eviction."""
    from detector.window.state import WindowState
    from detector.window.summary import AccountSummary, apply_summary

    c0 = time.process_time()
    wire = [(r.tick_end, r.to_bytes()) for r in records]
    encode = time.process_time() - c0
    ticks = sorted({t for t, _ in wire})
    sampled = set(ticks[::sample])
    c0, pairs, sampled_pairs = time.process_time(), 0, 0
    for r in records:
        n = r.accounts["account_id"].n_unique()
        pairs += n
        if r.tick_end in sampled:
            sampled_pairs += n
            for part in r.per_account().values():
                part.to_bytes()
    per_account = (time.process_time() - c0) * pairs / max(sampled_pairs, 1)
    w, state = settings.windows, WindowState()
    by_tick: dict[object, list[bytes]] = {}
    for t, raw in wire:
        by_tick.setdefault(t, []).append(raw)
    spent = dict.fromkeys(("decode_s", "apply_s", "evict_s"), 0.0)
    for tick in ticks:  # one fold per tick: every stage's records of it, merged
        c0 = time.process_time()
        merged = AccountSummary.merged([AccountSummary.from_bytes(raw) for raw in by_tick[tick]])
        c1 = time.process_time()
        apply_summary(state, merged)
        c2 = time.process_time()
        state.evict(tick, w.long + w.tick, w.link, w.account_idle, w.dedup, settings.state_caps)
        c3 = time.process_time()
        for name, took in zip(spent, (c1 - c0, c2 - c1, c3 - c2), strict=True):
            spent[name] += took
    return {
        "encode_s": encode,
        "per_account_encode_s": per_account,
        "fold_s": sum(spent.values()),
        **spent,
        "ticks": len(ticks),
        "bytes": sum(len(raw) for _, raw in wire),
        "rows": sum(r.rows() for r in records),
        "records": len(records),
        "account_ticks": pairs,
    }


def _stages(events: Path, k: int, work: Path, sample: int = 8) -> dict[str, object]:
    """In the child: each stage's CPU seconds and events."""
    from detector import engine as engine_module
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
    try:
        from detector.window.summary import SummarizingState
    except ImportError:  # a base revision before round 17
        SummarizingState = None
    wire = Publication()
    cluster = build(True)(observers=wire.observers())
    cluster.stage = "cluster"
    population: dict[str, float] = {}
    sheets = engine_module.population_sheets
    if SummarizingState is not None:  # the cluster stage's alone: put back before the account stages
        _timing(engine_module, "population_sheets", population)
        _timing(cluster, "_cluster_verdicts", population)
    row["cluster"] = timed(cluster, events, work / "cluster.jsonl")
    engine_module.population_sheets = sheets
    row["population"] = population
    paths = split_events(events, k, work)
    for i, path in enumerate(paths):
        engine = build(True)(observers=wire.counting())
        engine.stage = "account"
        replay([path], engine, work / f"count-{i}.jsonl")
    accounts, records, recording = [], [], 0.0
    for i, path in enumerate(paths):
        engine = build(True)(observers=wire.readers())
        engine.stage = "account"
        if SummarizingState is not None:
            engine.state = SummarizingState()
        accounts.append(timed(engine, path, work / f"account-{i}.jsonl"))
        if SummarizingState is not None:
            records += engine.state.summaries
            recording += engine.state.spent
    row["accounts"] = accounts
    if SummarizingState is not None:
        row["summaries"] = {"record_s": recording, **_summary_costs(records, cluster.settings, sample)}
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
    summ: dict[str, float] = row.get("summaries")  # type: ignore[assignment]
    extra: dict[str, float] = {}
    if summ:  # the account stages' time includes the recording; "before" is without it
        pop: dict[str, float] = row["population"]  # type: ignore[assignment]
        us["population"] = sum(pop.values()) / n * 1e6
        us["contexts"] = pop.get("population_sheets", 0.0) / n * 1e6
        us["accounts_before"] = us["accounts"] - summ["record_s"] / n * 1e6
        us["emit"] = (summ["record_s"] + summ["encode_s"]) / n * 1e6
        us["emit_per_account"] = (summ["record_s"] + summ["per_account_encode_s"]) / n * 1e6
        us["summary_fold"] = summ["fold_s"] / n * 1e6
        for part in ("decode", "apply", "evict"):
            us[f"summary_{part}"] = summ[f"{part}_s"] / n * 1e6
        us["projected"] = us["summary_fold"] + us["population"]
        after = us["accounts_before"] + us["emit"]
        extra = {
            "before_cluster_vs_accounts": us["cluster"] / us["accounts_before"],
            "after_cluster_vs_accounts": us["projected"] / after,
            "after_fold_only_vs_accounts": us["summary_fold"] / after,
            "after_split_vs_lag": (us["projected"] + after) / us["single_lag"],
            "summary_rows_per_event": summ["rows"] / n,
            "summary_bytes_per_event": summ["bytes"] / n,
            "events_per_account_tick": n / summ["account_ticks"],
            "fold_ms_per_tick": summ["fold_s"] / summ["ticks"] * 1e3,
            "population_ms_per_tick": sum(pop.values()) / summ["ticks"] * 1e3,
        }
    ratios = {
        "cluster_vs_accounts": us["cluster"] / us["accounts"],
        "cluster_vs_nolag": us["cluster"] / us["single_nolag"],
        "cluster_vs_lag": us["cluster"] / us["single_lag"],
        "split_vs_nolag": us["split"] / us["single_nolag"],
        "split_vs_lag": us["split"] / us["single_lag"],
    }
    return {**{f"{k}_us": v for k, v in us.items()}, **ratios, **extra}


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
        med = {
            k: round(statistics.median(r[k] for r in rows), 0 if k.endswith("_us") else 3) for k in rows[0]
        }
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
