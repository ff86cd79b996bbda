"""A/B cost of decoding the daemon's polls (``decode_poll``) for two revisions, in one run.

The base revision is checked out in a temporary git worktree; both are run alternately, each in a fresh
interpreter, on the same polls of the same file (a share of them made hostile, so that rejects are
decoded too). Each run measures CPU microseconds per event of ``decode_poll`` on the calling thread
(inline decoding), and of a real decoding worker process (``Decoder(topic, 1)``: the worker's CPU, as the
daemon's benchmark counts it, and the daemon side's), and prints a digest of what came out (events,
rejects with their reasons, details, positions and payloads). The digests must agree: a speed-up that
changes the output is a bug. The best of the rounds is reported (the shared machine drifts).

    .venv/bin/python benchmarks/ab_decode.py FILE [--base HEAD~1] [--rounds 3] [--events 40000] [--poll 5000]
        [--hostile-every 50]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _worktree import ROOT, base_worktree

_RUN = r"""
import hashlib, json, sys, time
import polars as pl
from detector.runtime.stream.decoding import Decoder, decode_poll
from detector.runtime.stream.source import Records

path, n, size, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lines = [ln for ln in open(path, "rb").read().split(b"\n") if ln][:n]
# every `every`-th record hostile (0: none), cycling through kinds a gateway bug or an attacker could send
hostile = [
    lambda r: r[: len(r) // 2],                                   # truncated
    lambda r: r.replace(b'"status":', b'"status":"x","status":', 1),  # a key twice
    lambda r: r.replace(b'"model":"', b'"model":7,"_m":"', 1),   # a number where a string goes
    lambda r: r.replace(b'"ts":"', b'"ts":"\xff', 1),              # not UTF-8
    lambda r: b"\xef\xbb\xbf" + r,                                 # byte order mark
    lambda r: r.replace(b'"account_id":"', b'"account_id" : "', 1),  # white space before a colon
    lambda r: r.replace(b'"request_id":"', b'"request_\\u0069d":"', 1),  # an escaped key
    lambda r: b"[" + r + b"]",                                     # not an object
    lambda r: r.replace(b'"client":{', b'"client":null,"_c":{', 1),  # required field missing
    lambda r: b"",                                                 # empty value
]
if every:
    lines = [hostile[(i // every) % len(hostile)](r) if i % every == every - 1 else r
             for i, r in enumerate(lines)]
polls = [lines[i : i + size] for i in range(0, len(lines), size)]

def args(k, poll):
    return ("in", poll, [i % 4 for i in range(len(poll))], list(range(k * size, k * size + len(poll))),
            [1_700_000_000_000 + i for i in range(len(poll))])

def digest(batches):
    h = hashlib.sha256()
    for b in batches:
        h.update(repr(b.events.schema).encode())
        h.update(b.events.hash_rows(seed=0).to_numpy().tobytes())
        for r in b.rejects:
            h.update(repr((r.reason, r.field, r.detail, r.position, r.raw, r.index)).encode())
        h.update(repr((b.records, b.duplicates)).encode())
    return h.hexdigest()[:16]

decode_poll(*args(0, polls[0]))  # warm: imports, compiled patterns
inline = []
for _ in range(2):
    t = time.process_time()
    out = [decode_poll(*args(k, p)) for k, p in enumerate(polls)]
    inline.append(time.process_time() - t)
dec = Decoder("in", 1)
try:
    dec.start(Records(polls[0], [None] * len(polls[0]), *args(0, polls[0])[2:5])).result()
    w0, p0 = dec.worker_cpu_seconds(), time.process_time()
    polled = [dec.start(Records(p, [None] * len(p), *args(k, p)[2:5])) for k, p in enumerate(polls)]
    pooled = [poll.result() for poll in polled]
    worker, parent = dec.worker_cpu_seconds() - w0, time.process_time() - p0
finally:
    dec.close()
events = sum(b.events.height for b in out)
print(json.dumps({
    "n": len(lines), "events": events, "rejects": sum(len(b.rejects) for b in out),
    "inline": min(inline) / len(lines) * 1e6, "worker": worker / len(lines) * 1e6,
    "parent": parent / len(lines) * 1e6, "digest": digest(out), "worker_digest": digest(pooled),
}))
"""


def _once(tree: Path, path: Path, n: int, size: int, every: int) -> dict[str, float | str]:
    out = subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", _RUN, str(path), str(n), str(size), str(every)],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float | str] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("file", type=Path, help="A JSONL file of gateway events (detector simulate).")
    ap.add_argument("--base", default="HEAD~1", help="The revision to compare against.")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--events", type=int, default=40_000, help="Records read from the file.")
    ap.add_argument("--poll", type=int, default=5_000, help="Records per poll.")
    ap.add_argument("--hostile-every", type=int, default=50, help="Every n-th record made hostile (0: none).")
    args = ap.parse_args()
    path = args.file.resolve()
    with base_worktree(args.base) as base:
        runs: dict[str, list[dict[str, float | str]]] = {"base": [], "head": []}
        for _ in range(args.rounds):
            for name, tree in (("base", base), ("head", ROOT)):
                runs[name].append(_once(tree, path, args.events, args.poll, args.hostile_every))
    head, first = runs["head"], runs["head"][0]
    print(
        f"{path.name}: {int(first['n']):,} records ({int(first['events']):,} events, "
        f"{int(first['rejects']):,} rejects) in polls of {args.poll:,}; best of {args.rounds} alternating "
        f"runs ({args.base} vs the working tree); CPU µs per record"
    )
    print("| decoding | base | head | speed-up |")
    print("|---|---|---|---|")
    labels = {
        "inline": "decode_poll on the calling thread",
        "worker": "decoding worker process (`Decoder`, 1 worker)",
        "parent": "daemon side of the worker (hand-off, results)",
    }
    for key, label in labels.items():
        b = min(float(r[key]) for r in runs["base"])
        h = min(float(r[key]) for r in head)
        print(f"| {label} | {b:.1f} | {h:.1f} | {b / h:.2f}x |")
    digests = {str(r[k]) for rs in runs.values() for r in rs for k in ("digest", "worker_digest")}
    print(f"output digests (events and rejects, inline and worker, every run): {sorted(digests)}")
    if len(digests) != 1:
        raise SystemExit("the revisions (or inline and worker decoding) decoded the polls differently")


if __name__ == "__main__":
    main()
