"""A/B cost of the secret key on ``text_fp`` (round 13): decoding polls without and with a key, one run.

On the same polls of the same file, alternately in one interpreter, measures CPU microseconds per event
of ``decode_poll`` (JSON, validation and the prompt features, where ``text_fp`` is computed: what the
daemon's decoding worker and replay's enrichment do) with no key and with a key, and of the keyed hash
alone (``TextKey.series`` on the batch's ``text_fp``). The best of the rounds is reported (the shared
machine drifts). Both sides must give the same events but for ``text_fp``: checked, and printed.

    .venv/bin/python benchmarks/ab_text_key.py FILE [--rounds 5] [--events 40000] [--poll 5000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

from detector.decode import decode_lines
from detector.enrich.prompt.hashing import TextKey
from detector.enrich.prompt_features import add_prompt_features
from detector.runtime.stream.decoding import decode_poll

KEY = TextKey(b"a-benchmark-text-key-of-32-bytes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("file", type=Path, help="A JSONL file of gateway events (detector simulate).")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--events", type=int, default=40_000, help="Records read from the file.")
    ap.add_argument("--poll", type=int, default=5_000, help="Records per poll.")
    args = ap.parse_args()
    lines = [ln for ln in args.file.read_bytes().split(b"\n") if ln][: args.events]
    polls = [lines[i : i + args.poll] for i in range(0, len(lines), args.poll)]

    def run(key: TextKey | None) -> tuple[float, list[pl.DataFrame]]:
        t = time.process_time()
        out = [decode_poll("in", p, [0] * len(p), list(range(len(p))), None, key).events for p in polls]
        return time.process_time() - t, out

    decoded = [decode_lines(p, position_of=str).events.drop("_pos") for p in polls]

    def features(key: TextKey | None) -> float:
        t = time.process_time()
        for frame in decoded:
            add_prompt_features(frame, key)
        return time.process_time() - t

    run(None)  # warm: imports, compiled patterns
    best = dict.fromkeys(("none", "key", "hash", "pf_none", "pf_key"), float("inf"))
    for r in range(args.rounds):  # which side goes first alternates too
        if r % 2:
            t_key, keyed = run(KEY)
            t_none, plain = run(None)
        else:
            t_none, plain = run(None)
            t_key, keyed = run(KEY)
        t = time.process_time()
        for frame in plain:
            KEY.series(frame["text_fp"])
        t_hash = time.process_time() - t
        pf = (
            (features(None), features(KEY))
            if r % 2 == 0
            else tuple(reversed((features(KEY), features(None))))
        )
        for name, value in (
            ("none", t_none),
            ("key", t_key),
            ("hash", t_hash),
            ("pf_none", pf[0]),
            ("pf_key", pf[1]),
        ):
            best[name] = min(best[name], value)
    same = all(a.drop("text_fp").equals(b.drop("text_fp")) for a, b in zip(plain, keyed, strict=True))
    keyed_ok = all(KEY.series(a["text_fp"]).equals(b["text_fp"]) for a, b in zip(plain, keyed, strict=True))
    n = len(lines)
    per = {k: v / n * 1e6 for k, v in best.items()}
    print(
        f"{args.file.name}: {n:,} records in polls of {args.poll:,}; best of {args.rounds} alternating rounds"
    )
    ratio, pf_ratio = per["key"] / per["none"], per["pf_key"] / per["pf_none"]
    print(f"  decode_poll, no key      {per['none']:8.2f} us CPU/event")
    print(f"  decode_poll, key         {per['key']:8.2f} us CPU/event  (ratio {ratio:.3f})")
    print(f"  prompt features, no key  {per['pf_none']:8.2f} us CPU/event  (add_prompt_features, decoded)")
    print(f"  prompt features, key     {per['pf_key']:8.2f} us CPU/event  (ratio {pf_ratio:.3f})")
    print(f"  keyed hash alone         {per['hash']:8.3f} us CPU/event  (TextKey.series: SipHash-2-4, numpy)")
    print(f"  other columns equal: {same}; text_fp = key(public text_fp): {keyed_ok}")


if __name__ == "__main__":
    main()
