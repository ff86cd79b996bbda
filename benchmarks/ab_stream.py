"""A/B of the daemon's end-to-end throughput in one run: two revisions, or two settings, alternately.

Each run is ``detector bench-stream``'s throughput phase (embedded broker, the bare kafka-python
consumer before and after the daemon, on the same topic and data) in a fresh interpreter, so both sides
see the same machine load on average. The base revision is checked out in a temporary git worktree;
``--base-env``/``--head-env`` set environment variables for one side (``DETECTOR_STREAM_*`` settings),
so two settings can be compared on one revision with ``--base HEAD``.

    .venv/bin/python benchmarks/ab_stream.py [--base HEAD~1] [--rounds 3] [--head-env K=V ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import mean

from _worktree import ROOT, base_worktree

_RUN = r"""
import json, sys
if __name__ == "__main__":
    from detector.lab.bench.stream import run_stream_bench
    days, scale, seed = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    out = run_stream_bench(days, scale, seed, 0, 600.0)
    keys = ("events", "raw_consume_events_per_s", "end_to_end_events_per_s", "ratio")
    (daemon,) = out["daemons"].values()
    cpu = {"cpu": daemon["cpu_us_per_event"], "worker": daemon["stage_cpu_us_per_event"]["decoding_worker"]}
    print(json.dumps({**{k: out[k] for k in keys}, **cpu}))
"""


def _once(tree: Path, env: dict[str, str], days: float, scale: float, seed: int) -> dict[str, float]:
    out = subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", _RUN, str(days), str(scale), str(seed)],
        cwd=tree,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _env(pairs: list[str]) -> dict[str, str]:
    return dict(p.split("=", 1) for p in pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--base", default="HEAD~1", help="The revision to compare against.")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--base-env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--head-env", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    sides = {"base": _env(args.base_env), "head": _env(args.head_env)}
    with base_worktree(args.base) as base:
        runs: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
        for r in range(args.rounds):
            for name, tree in (("base", base), ("head", ROOT)):
                res = _once(tree, sides[name], args.days, args.scale, args.seed)
                runs[name].append(res)
                print(
                    f"round {r + 1} {name}: {res['end_to_end_events_per_s']:,.0f} events/s, "
                    f"{res['ratio']:.3f}x raw; CPU µs/event: daemon {res['cpu']}, decoding worker "
                    f"{res['worker']}",
                    flush=True,
                )
    n = int(runs["head"][0]["events"])
    label = {
        "base": f"{args.base} {' '.join(args.base_env)}".strip(),
        "head": f"working tree {' '.join(args.head_env)}".strip(),
    }
    print(f"{n:,} events, mean of {args.rounds} alternating runs each")
    print("| side | daemon events/s | x raw consume | daemon CPU µs/event | decoding worker CPU µs/event |")
    print("|---|---|---|---|---|")
    for name in ("base", "head"):
        e2e = mean(r["end_to_end_events_per_s"] for r in runs[name])
        ratio = mean(r["ratio"] for r in runs[name])
        cpu = mean(r["cpu"] for r in runs[name])
        worker = mean(r["worker"] or 0.0 for r in runs[name])
        print(f"| {label[name]} | {e2e:,.0f} | {ratio:.3f} | {cpu:.1f} | {worker:.1f} |")
    b = mean(r["end_to_end_events_per_s"] for r in runs["base"])
    h = mean(r["end_to_end_events_per_s"] for r in runs["head"])
    print(f"speed-up: {h / b:.2f}x")


if __name__ == "__main__":
    main()
