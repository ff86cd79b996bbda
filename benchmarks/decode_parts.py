"""The decoding worker's per-event cost split into its parts, alternating in one interpreter (issue 13,
round 19).

The daemon's decoding worker runs ``decode_poll`` on each poll: ``decode_lines`` (polars' JSON parse,
the strict scan for records polars may read laxly, column-wise validation, de-duplication), then the
prompt features (``enrich_prompt``). This times, on the same polls of a file's records, in turn
``--rounds`` times so that each sees the same load: the whole ``decode_poll``; ``decode_lines`` on the
values (as the daemon calls it) and on the values record by record (the path before round 19:
``_one_buffer`` patched out); polars' parse alone
(``pl.read_ndjson`` with the schema: the floor of any polars-based decoder); the strict scan alone
(``strict_json.suspects``); and the prompt features alone (on the decoded events). CPU µs per record,
the process's CPU time (polars' threads included); best of the rounds.

    .venv/bin/python benchmarks/decode_parts.py FILE.jsonl [--events 40000] [--poll 5000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import polars as pl

import detector.decode as decode_module
from detector.decode import decode_lines
from detector.enrich import enrich_prompt
from detector.runtime.stream.decoding import decode_poll
from detector.schema import RAW_SCHEMA
from detector.strict_json import suspects


def _polls(path: Path, n: int, size: int) -> list[list[bytes]]:
    lines: list[bytes] = []
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                lines.append(line.rstrip(b"\r\n"))
            if len(lines) >= n:
                break
    return [lines[i : i + size] for i in range(0, len(lines), size)]


def _per_record(run: Callable[[], object]) -> object:
    """``run`` with Kafka values decoded by the per-record path (no one-buffer attempt)."""
    with mock.patch.object(decode_module, "_one_buffer", lambda values, limit: None):
        return run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("file", type=Path, help="A JSONL file of gateway events (detector simulate).")
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--poll", type=int, default=5_000)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    polls = _polls(args.file, args.events, args.poll)
    n = sum(map(len, polls))

    def pos(i: int) -> str:
        return f"in/0@{i}"

    def poll_args(k: int, p: list[bytes]) -> tuple[str, list[bytes], list[int], list[int], list[int]]:
        offs = list(range(k * args.poll, k * args.poll + len(p)))
        return "in", p, [i % 4 for i in range(len(p))], offs, [1_700_000_000_000] * len(p)

    buffers = [b"\n" + b"\n".join(p) for p in polls]
    texts = [pl.Series(p, dtype=pl.Binary).cast(pl.String) for p in polls]
    events = [decode_lines(p, pos).events for p in polls]
    stages: dict[str, Callable[[], object]] = {
        "decode_poll (the worker's whole job)": lambda: [
            decode_poll(*poll_args(k, p)) for k, p in enumerate(polls)
        ],
        "decode_lines on the values": lambda: [decode_lines(p, pos) for p in polls],
        "decode_lines on the values record by record (the path before round 19)": lambda: _per_record(
            lambda: [decode_lines(p, pos) for p in polls]
        ),
        "polars' parse alone (read_ndjson, schema)": lambda: [
            pl.read_ndjson(io.BytesIO(b), schema=RAW_SCHEMA) for b in buffers
        ],
        "strict scan alone (suspects)": lambda: [suspects(t) for t in texts],
        "prompt features alone (enrich_prompt)": lambda: [enrich_prompt(e) for e in events],
    }
    for fn in stages.values():  # warm: imports, compiled patterns
        fn()
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, fn in stages.items():
            t = time.process_time()
            fn()
            us = (time.process_time() - t) / n * 1e6
            best[name] = min(best.get(name, us), us)
    print(
        f"{args.file.name}: {n:,} records ({sum(map(len, buffers)) / n:,.0f} bytes each) in polls "
        f"of {args.poll:,}; polars threads {pl.thread_pool_size()}; best of {args.rounds}; CPU µs per record"
    )
    print("| part | µs |\n|---|---|")
    for name, us in best.items():
        print(f"| {name} | {us:.1f} |")


if __name__ == "__main__":
    main()
