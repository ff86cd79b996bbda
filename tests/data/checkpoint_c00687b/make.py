"""Writes this folder: a checkpoint of the window state as main at c00687b wrote it (account ids and
32-bit counts in buckets and templates, a time per request id). Run with that commit's package::

    git archive c00687b | tar -x -C /tmp/c00687b
    cd /tmp/c00687b && PYTHONPATH=. python /path/to/tests/data/checkpoint_c00687b/make.py
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from detector.app import build_engine
from detector.decode import decode_lines

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE.parents[3] / "shared" / "contracts" / "examples" / "good" / "text_free.json"
START = datetime(2026, 3, 2, tzinfo=UTC)


def events(accounts: int = 40, per_account: int = 6) -> pl.DataFrame:
    """``accounts`` x ``per_account`` text-free requests over two hours, 6 accounts to a card."""
    one = decode_lines(TEMPLATE.read_bytes(), lambda i: "template").events.drop("_pos")
    n = accounts * per_account
    i = pl.int_range(n, eager=True)
    a = i % accounts
    return one.select(pl.all().repeat_by(n).explode()).with_columns(
        pl.format("req_{}", i).alias("request_id"),
        (pl.lit(START) + pl.duration(seconds=i * 7200 // n)).alias("ts"),
        pl.format("acct_{}", a).alias("account_id"),
        pl.format("pf_{}", a // 6).alias("payment_fingerprint"),
    )


if __name__ == "__main__":
    engine = build_engine(None, None, None, False)
    engine.process(events())
    assert engine.clock.last_closed is not None and engine.clock.last_closed > START + timedelta(hours=1)
    engine.state.save(HERE)
