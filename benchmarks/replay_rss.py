"""Peak RSS of ``detector replay`` on JSON Lines shuffled within 5-minute windows, at several sizes.

Each input (a time-ordered JSON Lines file from ``detector simulate``) is copied with its lines shuffled
within 5-minute windows of event time (gateway logs are nearly, not exactly, time-ordered), then
replayed by ``detector replay --json`` in a child process; its peak RSS is read from
``resource.getrusage(RUSAGE_CHILDREN)`` once it has exited (one child per measurement, so the figure is
that child's). The alerts of the shuffled copy are compared with those of the time-ordered file.

    .venv/bin/python benchmarks/replay_rss.py FILE.jsonl [FILE.jsonl ...] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
DETECTOR = Path(sys.executable).with_name("detector")


def shuffle_within(src: Path, dst: Path, window: str = "5m", seed: int = 7) -> None:
    """``src``'s lines, shuffled within windows of event time, written to ``dst``."""
    lines = src.read_bytes().splitlines(keepends=True)
    ts = pl.read_ndjson(src, schema={"ts": pl.String}).get_column("ts").str.to_datetime(time_zone="UTC")
    order = (
        pl.DataFrame({"w": ts.dt.truncate(window), "i": pl.int_range(len(lines), eager=True)})
        .with_columns(pl.col("i").shuffle(seed=seed).over("w").alias("j"))
        .sort("w", maintain_order=True)
        .get_column("j")
    )
    with dst.open("wb") as fh:
        for j in order.to_list():
            fh.write(lines[j])


def run(path: Path, alerts: Path) -> dict[str, object]:
    """One replay in a child process: its summary, wall time and peak RSS."""
    t = time.perf_counter()
    cmd = [str(DETECTOR), "replay", str(path), "--alerts-out", str(alerts), "--json", "--no-models"]
    # a fresh wrapper per run: RUSAGE_CHILDREN is the largest of its children, here exactly one
    done = subprocess.run(  # noqa: S603 (our own interpreter and CLI)
        [sys.executable, "-c", _WRAP, *cmd], check=True, capture_output=True, text=True
    )
    wall = time.perf_counter() - t
    summary = json.loads(done.stdout)
    return {
        "events": summary["events"],
        "late": summary["late"],
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(int(done.stderr.strip().splitlines()[-1]) / 1024),
    }


_WRAP = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", type=Path, nargs="+")
    ap.add_argument("--work", type=Path, default=None, help="Folder for the shuffled copies and alerts.")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="replay-rss-"))
    work.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(sorted(args.files, key=lambda p: p.stat().st_size)):
        shuffled = work / f"shuffled{i}.jsonl"
        shuffle_within(src, shuffled)
        mb = round(src.stat().st_size / 1e6)
        for name, path in (("shuffled", shuffled), ("ordered", src)):
            print(json.dumps({"file": str(src), "mb": mb, "input": name, **run(path, work / f"{name}{i}.a")}))
        same = (work / f"shuffled{i}.a").read_bytes() == (work / f"ordered{i}.a").read_bytes()
        print(json.dumps({"file": str(src), "alerts_shuffled_equal_ordered": same}))


if __name__ == "__main__":
    main()
