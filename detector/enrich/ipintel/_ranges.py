"""Turning possibly overlapping, unsorted ranges into sorted, disjoint lookup tables.

A lookup is a backward ``join_asof`` on the range starts followed by an ``ip <= end`` check, which is only
right when the table's ranges are disjoint: with ``A=[0,100]`` and ``B=[10,20]``, the address 50 would
find ``B`` (the last start <= 50), fail the end check and miss ``A``. So overlaps are resolved at load time:

* :func:`flatten_narrowest` (ASN ranges, provider labels): every address gets the payload of the
  narrowest range that covers it; between equally wide ranges the one with the higher ``prio`` (later
  source, then later line) wins. A range partly covered by a narrower one is cut into pieces.
* :func:`union` (flag lists): covered-or-not, so overlapping ranges just merge.
* :func:`combine_flags`: the per-flag unions and the provider labels cut into one disjoint table
  of segments carrying a flag bitmask and a label, so a lookup needs one join for all flags.

All of it is vectorised except the overlap resolution inside clusters of overlapping ranges, which is a
small heap sweep in Python over just those ranges (disjoint ranges, nearly all of real data, pass
through untouched).
"""

from __future__ import annotations

import heapq
import itertools

import polars as pl


def _clusters(df: pl.DataFrame) -> pl.DataFrame:
    """Sort by ``start`` and add ``_cid``: ranges that overlap (transitively) share a cluster id."""
    df = df.sort(["start", "end"])
    prev_end = pl.col("end").cum_max().shift(1)
    new = prev_end.is_null() | (pl.col("start") > prev_end)
    return df.with_columns(_cid=new.cum_sum())


def union(df: pl.DataFrame) -> pl.DataFrame:
    """Merge overlapping ``start``/``end`` ranges into disjoint ranges sorted by ``start``."""
    if df.is_empty():
        return df.select("start", "end")
    return (
        _clusters(df.select("start", "end"))
        .group_by("_cid", maintain_order=True)
        .agg(pl.col("start").min(), pl.col("end").max())
        .drop("_cid")
    )


def _sweep(starts: list[int], ends: list[int], prios: list[int]) -> list[tuple[int, int, int]]:
    """Disjoint ``(start, end, index)`` pieces of one cluster of overlapping ranges (sorted by start).

    At each boundary the covering range with the smallest ``(width, -prio)`` wins; adjacent pieces with
    the same winner are merged.
    """
    bounds = sorted(set(starts) | {e + 1 for e in ends})
    heap: list[tuple[int, int, int, int]] = []
    out: list[tuple[int, int, int]] = []
    j, n = 0, len(starts)
    for b, nxt in itertools.pairwise(bounds):
        while j < n and starts[j] <= b:
            heapq.heappush(heap, (ends[j] - starts[j], -prios[j], ends[j], j))
            j += 1
        while heap and heap[0][2] < b:
            heapq.heappop(heap)
        if not heap:
            continue
        idx = heap[0][3]
        if out and out[-1][2] == idx and out[-1][1] + 1 == b:
            out[-1] = (out[-1][0], nxt - 1, idx)
        else:
            out.append((b, nxt - 1, idx))
    return out


def flatten_narrowest(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Resolve overlaps in ``start``/``end``/``prio``/payload ranges: narrowest wins, then highest prio.

    Returns the disjoint table sorted by ``start`` (without ``prio``) and the number of input ranges that
    overlapped another one.
    """
    payload = [c for c in df.columns if c not in ("start", "end", "prio")]
    if df.is_empty():
        return df.select("start", "end", *payload), 0
    key_dtype = df.schema["start"]
    df = _clusters(df).with_columns(_size=pl.len().over("_cid"))
    singles = df.filter(pl.col("_size") == 1).select("start", "end", *payload)
    multi = df.filter(pl.col("_size") > 1)
    if multi.is_empty():
        return singles.sort("start"), 0
    pieces: list[tuple[int, int, int]] = []
    offset = 0
    for part in multi.partition_by("_cid", maintain_order=True):
        sub = _sweep(part["start"].to_list(), part["end"].to_list(), part["prio"].to_list())
        pieces.extend((s, e, i + offset) for s, e, i in sub)
        offset += part.height
    s, e, i = zip(*pieces, strict=True) if pieces else ((), (), ())
    cut = pl.DataFrame(
        {"start": list(s), "end": list(e), "_i": list(i)},
        schema={"start": key_dtype, "end": key_dtype, "_i": pl.UInt32},
    )
    cut = cut.drop("_i").hstack(multi.select(pl.col(payload).gather(cut["_i"])))
    return pl.concat([singles, cut]).sort("start"), multi.height


def elementary_segments(
    tables: list[pl.DataFrame], key_dtype: pl.DataType, key_max: int, start: str = "start", end: str = "end"
) -> pl.DataFrame:
    """Cut the key space at every ``start`` and every ``end + 1`` of ``tables``: disjoint segments."""
    edges: list[pl.Series] = []
    for t in tables:
        edges.append(t["start"])
        edges.append(t.filter(pl.col("end") < key_max)["end"] + 1)
    return (
        pl.concat(edges)
        .cast(key_dtype)
        .unique()
        .sort()
        .alias(start)
        .to_frame()
        .with_columns((pl.col(start).shift(-1) - 1).fill_null(pl.lit(key_max, key_dtype)).alias(end))
    )


def combine_flags(
    flag_unions: dict[int, pl.DataFrame], labels: pl.DataFrame, key_dtype: pl.DataType, key_max: int
) -> pl.DataFrame:
    """One disjoint table ``start``/``end``/``net_flags`` (UInt8 bitmask)/``ip_provider`` (String).

    ``flag_unions`` maps a flag bit to its disjoint ranges; ``labels`` holds disjoint ``start``/``end``/
    ``ip_provider`` ranges. Elementary segments are cut at every start and every end + 1; each one looks
    up every input table (they are disjoint, so one asof join each is exact), and adjacent segments with
    the same flags and label are merged again.
    """
    tables = [t for t in flag_unions.values() if not t.is_empty()]
    if not tables and labels.is_empty():
        return pl.DataFrame(
            schema={"start": key_dtype, "end": key_dtype, "net_flags": pl.UInt8, "ip_provider": pl.String}
        )
    seg = elementary_segments([*tables, labels], key_dtype, key_max)
    flags = pl.lit(0, pl.UInt8)
    for bit, table in flag_unions.items():
        if table.is_empty():
            continue
        hit = seg.join_asof(
            table.select(pl.col("start").alias("_s"), pl.col("end").alias("_e")),
            left_on="start",
            right_on="_s",
        ).select((pl.col("_e") >= pl.col("start")).fill_null(False))
        flags = flags + pl.when(hit.to_series()).then(pl.lit(bit, pl.UInt8)).otherwise(pl.lit(0, pl.UInt8))
    seg = seg.with_columns(net_flags=flags)
    if labels.is_empty():
        seg = seg.with_columns(ip_provider=pl.lit(None, pl.String))
    else:
        seg = seg.join_asof(
            labels.select(pl.col("start").alias("_s"), pl.col("end").alias("_e"), "ip_provider"),
            left_on="start",
            right_on="_s",
        )
        seg = seg.with_columns(
            ip_provider=pl.when(pl.col("_e") >= pl.col("start")).then(pl.col("ip_provider")).otherwise(None)
        ).drop("_s", "_e")
    seg = seg.filter((pl.col("net_flags") > 0) | pl.col("ip_provider").is_not_null())
    same = (
        (pl.col("start") == pl.col("end").shift(1) + 1)
        & (pl.col("net_flags") == pl.col("net_flags").shift(1))
        & pl.col("ip_provider").eq_missing(pl.col("ip_provider").shift(1))
    ).fill_null(False)
    return (
        seg.with_columns(_g=(~same).cum_sum())
        .group_by("_g", maintain_order=True)
        .agg(
            pl.col("start").first(),
            pl.col("end").last(),
            pl.col("net_flags").first(),
            pl.col("ip_provider").first(),
        )
        .drop("_g")
    )
