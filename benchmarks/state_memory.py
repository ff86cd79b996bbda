"""Memory of the engine's state for N accounts active in one hour (issue 14: bounded state).

Builds one hour of text-free gateway events (``--accounts`` accounts, ``--per-account`` requests
each, spread over the hour; one in 50 accounts shares a payment card, every account has its own
client IP and a /24 prefix shared by 256), feeds them through the real engine (enrichment, state,
features, links, rules) in slices of ``--slice`` events, and prints the state table sizes, their
row counts, the rows dropped per table and cause, and the process's peak RSS::

    .venv/bin/python benchmarks/state_memory.py --accounts 1000000 --per-account 3
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from detector.app import build_engine
from detector.decode import decode_lines

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT.parent / "shared" / "contracts" / "examples" / "good" / "text_free.json"
START = datetime(2026, 3, 2, tzinfo=UTC)


def hour_of_events(accounts: int, per_account: int, seed: int = 1) -> pl.DataFrame:
    """Decoded events: ``accounts`` x ``per_account`` requests in one hour, sorted by time."""
    one = decode_lines(TEMPLATE.read_bytes(), lambda i: "template").events.drop("_pos")
    n = accounts * per_account
    rng = np.random.default_rng(seed)
    acct = np.repeat(np.arange(accounts), per_account)
    offsets_us = np.sort(rng.integers(0, 3_600_000_000, n))
    rng.shuffle(acct)  # who sends when is random; time stays sorted
    frame = pl.concat([one] * n) if n <= 1 else one.select(pl.all().repeat_by(n).explode())
    a = pl.Series(acct)
    return frame.with_columns(
        pl.format("req_{}", pl.int_range(n)).alias("request_id"),
        (pl.lit(START) + pl.duration(microseconds=pl.Series(offsets_us))).alias("ts"),
        pl.format("acct_{}", a).alias("account_id"),
        pl.format("org_{}", a // 10).alias("org_id"),
        pl.format("pf_{}", a // 50).alias("payment_fingerprint"),
        pl.format("10.{}.{}.{}", (a // 65536) % 256, (a // 256) % 256, a % 256).alias("client_ip"),
    )


def main() -> None:
    """Run the hour through the engine; print a JSON report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--per-account", type=int, default=3)
    parser.add_argument("--slice", type=int, default=200_000)
    args = parser.parse_args()
    t0 = time.monotonic()
    events = hour_of_events(args.accounts, args.per_account)
    built = time.monotonic() - t0
    engine = build_engine(ROOT / "rules", models=False)
    t1 = time.monotonic()
    alerts = 0
    for start in range(0, events.height, args.slice):
        alerts += len(engine.process(events.slice(start, args.slice)))
    alerts += len(engine.flush())
    took = time.monotonic() - t1
    sizes = engine.state.size_bytes()
    rows = {t: getattr(engine.state, t).height for t in sizes}
    del events
    report = {
        "accounts": args.accounts,
        "events": args.accounts * args.per_account,
        "build_s": round(built, 1),
        "engine_s": round(took, 1),
        "alerts": alerts,
        "state_mb": {t: round(b / 2**20, 1) for t, b in sizes.items()},
        "state_total_mb": round(sum(sizes.values()) / 2**20, 1),
        "state_bytes_per_account": round(sum(sizes.values()) / args.accounts),
        "rows": rows,
        "evicted": dict(engine.stats.evicted),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
