"""``python -m detector.enrich.ipintel DIR``: load an IP-intel folder, print its summary and a timing report.

Useful to check a folder before pointing the daemon at it; exits 1 (with the file:line problems) when a
source is malformed.
"""

from __future__ import annotations

import argparse
import sys
import time

import polars as pl

from . import IpIntel, IpIntelError, add_ip_columns


def _random_ips(n: int, *, v6: bool) -> pl.DataFrame:
    """``n`` distinct-looking addresses as text, made with polars hashes (deterministic)."""
    idx = pl.int_range(n, dtype=pl.UInt64)
    if v6:
        groups = [(idx.hash(seed=i) % 65_536).cast(pl.String) for i in range(3)]
        text = pl.concat_str([pl.lit("2a00"), *groups], separator=":") + pl.lit("::1")
    else:
        text = pl.concat_str([(idx.hash(seed=i) % 256).cast(pl.String) for i in range(4)], separator=".")
    return pl.select(client_ip=text)


def _rate(df: pl.DataFrame, intel: IpIntel | None, repeat: int = 5) -> tuple[float, float]:
    """Best-of-``repeat`` seconds and rows/s of :func:`add_ip_columns` on ``df``."""
    add_ip_columns(df, intel)
    best = min(_timed(df, intel) for _ in range(repeat))
    return best, df.height / best


def _timed(df: pl.DataFrame, intel: IpIntel | None) -> float:
    t0 = time.perf_counter()
    add_ip_columns(df, intel)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m detector.enrich.ipintel", description=__doc__)
    parser.add_argument("directory", help="folder holding ip-location-db / x4bnet / lord-alfred style files")
    args = parser.parse_args(argv)
    try:
        intel = IpIntel.from_dir(args.directory)
    except IpIntelError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(intel.describe())
    print("timing (best of 5):")
    for label, df, it in (
        ("100k IPv4 rows, all distinct", _random_ips(100_000, v6=False), intel),
        ("100k IPv4 rows, 10k distinct", pl.concat([_random_ips(10_000, v6=False)] * 10), intel),
        ("10k IPv6 rows, all distinct", _random_ips(10_000, v6=True), intel),
        ("100k IPv4 rows, no intel", _random_ips(100_000, v6=False), None),
    ):
        seconds, rate = _rate(df, it)
        print(f"  {label:<30} {seconds * 1000:7.1f} ms  {rate:>12,.0f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
