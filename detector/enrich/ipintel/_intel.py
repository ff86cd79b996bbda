"""``IpIntel``: the loaded IP-intelligence tables (one disjoint, start-sorted table per IP family) and
their lookup."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ._parse import U32_MAX, U64_MAX
from ._ranges import combine_flags, elementary_segments, flatten_narrowest, union
from ._readers import read_asn_list, read_asn_ranges, read_cidr_list
from ._sources import IpIntelError, IpSource, SourceSummary, discover_sources

#: Bit of each flag in the internal bitmasks (``FLAG_COLUMNS`` names the output column each fills).
FLAG_BITS: dict[str, int] = {"datacenter": 1, "vpn": 2, "proxy": 4, "tor": 8}

_SOURCE_PRIO_STRIDE = 1 << 32  # prio = source index * stride + line number


@dataclass(frozen=True)
class _FamilyTables:
    """The disjoint, start-sorted lookup table of one IP family (keys UInt32 or UInt64).

    ``table`` columns: ``_s``/``_e`` (inclusive range), ``asn``, ``as_org``, ``_f`` (UInt8 flag bits from
    cidr_list and asn_list sources), ``ip_provider``. ASN segments and flag/provider segments are cut into
    one table at load time so that a lookup is a single ``join_asof``.
    """

    table: pl.DataFrame
    n_asn: int
    n_net: int
    asn_overlaps: int
    label_overlaps: int
    index: pl.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        index = self.table.select("_s", "_e", _t=pl.int_range(pl.len(), dtype=pl.UInt32))
        object.__setattr__(self, "index", index)

    def row_index(self, keys: pl.Series) -> pl.Series:
        """Row of ``table`` holding each key (UInt32, aligned with ``keys``; null for a miss or null key).

        Only the keys and a row index are sorted and joined (backward ``join_asof`` on ``_s``, then the
        ``key <= _e`` check); the result is scattered back to the keys' order, so the caller gathers the
        payload columns once, in order, without sorting any strings.
        """
        n = len(keys)
        slim = (
            pl.DataFrame({"_row": pl.int_range(n, dtype=pl.UInt32, eager=True), "_k": keys})
            .filter(pl.col("_k").is_not_null())
            .sort("_k")
        )
        found = slim.join_asof(self.index, left_on="_k", right_on="_s").select(
            "_row", _t=pl.when(pl.col("_k") <= pl.col("_e")).then(pl.col("_t")).otherwise(None)
        )
        return pl.repeat(None, n, dtype=pl.UInt32, eager=True).alias("_t").scatter(found["_row"], found["_t"])

    def payload(self, rows: pl.Series) -> pl.DataFrame:
        """``asn``, ``as_org``, ``_f``, ``ip_provider`` of table ``rows`` (null rows give nulls)."""
        return self.table.select(pl.col("asn", "as_org", "_f", "ip_provider").gather(rows))


def _concat(frames: list[pl.DataFrame], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.concat(frames) if frames else pl.DataFrame(schema=dict(schema))


def _merge_tables(asn: pl.DataFrame, net: pl.DataFrame, key_dtype: pl.DataType, key_max: int) -> pl.DataFrame:
    """Cut the disjoint ASN table and the disjoint flag/provider table into one disjoint table."""
    seg = elementary_segments([asn, net], key_dtype, key_max, start="_s", end="_e")
    seg = seg.join_asof(asn.rename({"start": "_as", "end": "_ae"}), left_on="_s", right_on="_as").join_asof(
        net.rename({"start": "_ns", "end": "_ne"}), left_on="_s", right_on="_ns"
    )
    hit_a = (pl.col("_s") <= pl.col("_ae")).fill_null(False)
    hit_n = (pl.col("_s") <= pl.col("_ne")).fill_null(False)
    return seg.filter(hit_a | hit_n).select(
        "_s",
        "_e",
        asn=pl.when(hit_a).then(pl.col("asn")).otherwise(None),
        as_org=pl.when(hit_a).then(pl.col("as_org")).otherwise(None),
        _f=pl.when(hit_a).then(pl.col("_af")).otherwise(pl.lit(0, pl.UInt8))
        | pl.when(hit_n).then(pl.col("net_flags")).otherwise(pl.lit(0, pl.UInt8)),
        ip_provider=pl.when(hit_n).then(pl.col("ip_provider")).otherwise(None),
    )


def _build_family(
    key_dtype: pl.DataType,
    key_max: int,
    asn_ranges: list[pl.DataFrame],
    asn_flags: pl.DataFrame,
    cidr: list[tuple[int, str | None, pl.DataFrame]],
) -> _FamilyTables:
    """Resolve overlaps and build the lookup table of one family."""
    rng = {"start": key_dtype, "end": key_dtype}
    asn_all = _concat(asn_ranges, {**rng, "asn": pl.Int64(), "as_org": pl.String(), "prio": pl.Int64()})
    asn_tab, asn_overlaps = flatten_narrowest(asn_all)
    asn_tab = asn_tab.join(asn_flags, on="asn", how="left", maintain_order="left").with_columns(
        pl.col("_af").fill_null(0).cast(pl.UInt8)
    )

    unions: dict[int, pl.DataFrame] = {}
    for bit in sorted({b for b, _, _ in cidr}):
        unions[bit] = union(pl.concat([f for b, _, f in cidr if b == bit]))
    labelled = [f.with_columns(ip_provider=pl.lit(lab, pl.String)) for _, lab, f in cidr if lab is not None]
    labels, label_overlaps = flatten_narrowest(
        _concat(labelled, {**rng, "prio": pl.Int64(), "ip_provider": pl.String()})
    )
    net = combine_flags(unions, labels, key_dtype, key_max)
    table = _merge_tables(asn_tab, net, key_dtype, key_max).sort("_s")
    return _FamilyTables(table, asn_tab.height, net.height, asn_overlaps, label_overlaps)


class IpIntel:
    """Loaded IP-intelligence tables: ASN/organisation ranges and datacenter/VPN/proxy/Tor flags.

    Build it with :meth:`load` (explicit sources) or :meth:`from_dir` (the layouts of the public lists);
    pass it to :func:`add_ip_columns`. Instances are immutable and safe to share between threads.

    Lookup semantics:

    * IPv4 tables are keyed on the full address; IPv6 tables on the upper 64 bits, so IPv6 intel has /64
      resolution (a range smaller than a /64 covers its whole /64).
    * Overlapping ASN ranges: each address gets the narrowest covering range (in key space); on equal
      width the later source, then the later line, wins. The real ip-location-db files have a few such
      overlaps (one partial IPv4 overlap; some IPv6 ranges that share a /64).
    * Flags are the union over sources: an address is ``is_datacenter`` when any ``datacenter`` source
      lists it, by CIDR or by ASN. Provider labels resolve like ASN ranges (narrowest, then later).
    * A flag with no source loaded is unknown (null) rather than false.
    """

    def __init__(
        self,
        *,
        v4: _FamilyTables,
        v6: _FamilyTables,
        flags: frozenset[str],
        summaries: tuple[SourceSummary, ...],
        load_seconds: float,
        notes: tuple[str, ...] = (),
    ) -> None:
        self._v4 = v4
        self._v6 = v6
        self._flags = flags
        self._summaries = summaries
        self._load_seconds = load_seconds
        self._notes = notes

    @property
    def flags(self) -> frozenset[str]:
        """Flags some loaded source can set (the others come out null)."""
        return self._flags

    @property
    def summaries(self) -> tuple[SourceSummary, ...]:
        """Per-source load summary, in source order."""
        return self._summaries

    @property
    def load_seconds(self) -> float:
        """Wall time :meth:`load` took."""
        return self._load_seconds

    @classmethod
    def load(cls, sources: Iterable[IpSource | Mapping[str, Any]]) -> IpIntel:
        """Read and index ``sources`` (later sources win ties, see the class docstring).

        Every file is read and checked before anything is raised; :class:`IpIntelError` then lists the
        problems of all files (``path:line: message``, at most 20 per file).
        """
        t0 = time.perf_counter()
        srcs = [s if isinstance(s, IpSource) else IpSource.model_validate(s) for s in sources]
        issues: list[str] = []
        bad_files = 0
        asn4: list[pl.DataFrame] = []
        asn6: list[pl.DataFrame] = []
        cidr4: list[tuple[int, str | None, pl.DataFrame]] = []
        cidr6: list[tuple[int, str | None, pl.DataFrame]] = []
        asn_lists: list[pl.DataFrame] = []
        flags: set[str] = set()
        summaries: list[SourceSummary] = []
        for index, src in enumerate(srcs):
            ts = time.perf_counter()
            prio_base = index * _SOURCE_PRIO_STRIDE
            if src.kind == "asn_list":
                frame, file_issues, _n, n_lines = read_asn_list(src.path)
                assert src.flag is not None
                asn_lists.append(frame.select("asn", _bit=pl.lit(FLAG_BITS[src.flag], pl.UInt8)))
                flags.add(src.flag)
                n4, n6 = frame.height, 0
            else:
                res = (read_asn_ranges if src.kind == "asn_ranges" else read_cidr_list)(src.path, prio_base)
                file_issues, n_lines, n4, n6 = res.issues, res.n_lines, res.v4.height, res.v6.height
                if src.kind == "asn_ranges":
                    asn4.append(res.v4)
                    asn6.append(res.v6)
                else:
                    assert src.flag is not None
                    bit = FLAG_BITS[src.flag]
                    cidr4.append((bit, src.label, res.v4))
                    cidr6.append((bit, src.label, res.v6))
                    flags.add(src.flag)
            if file_issues:
                bad_files += 1
                issues.extend(file_issues)
            summaries.append(SourceSummary(src, n4, n6, n_lines, time.perf_counter() - ts))
        if issues:
            raise IpIntelError(f"malformed IP-intel source(s): problems in {bad_files} file(s)", issues)

        notes: list[str] = []
        if asn_lists and not (asn4 or asn6):
            notes.append("asn_list sources have no effect: no asn_ranges source is loaded")
        asn_flags = (
            pl.concat(asn_lists).group_by("asn").agg(_af=pl.col("_bit").unique().sum().cast(pl.UInt8))
            if asn_lists
            else pl.DataFrame(schema={"asn": pl.Int64, "_af": pl.UInt8})
        )
        v4 = _build_family(pl.UInt32(), U32_MAX, asn4, asn_flags, cidr4)
        v6 = _build_family(pl.UInt64(), U64_MAX, asn6, asn_flags, cidr6)
        return cls(
            v4=v4,
            v6=v6,
            flags=frozenset(flags),
            summaries=tuple(summaries),
            load_seconds=time.perf_counter() - t0,
            notes=tuple(notes),
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> IpIntel:
        """Load every source :func:`discover_sources` finds under ``path``."""
        return cls.load(discover_sources(path))

    def describe(self) -> str:
        """Multi-line summary for logs: ranges per source and the sizes of the built tables."""
        flags = ", ".join(f for f in FLAG_BITS if f in self._flags) or "none"
        lines = [
            f"IP intel: {len(self._summaries)} source(s) loaded in {self._load_seconds:.2f} s; flags: {flags}"
        ]
        for s in self._summaries:
            src = s.source
            what = f"{s.v4:,} ASNs" if src.kind == "asn_list" else f"{s.v4:,} IPv4 + {s.v6:,} IPv6 ranges"
            tag = "".join(
                [f" flag={src.flag}" if src.flag else "", f" label={src.label}" if src.label else ""]
            )
            lines.append(f"  {src.kind:<10} {src.path}{tag}: {what} ({s.seconds:.2f} s)")
        for name, fam in (("IPv4", self._v4), ("IPv6 /64", self._v6)):
            lines.append(
                f"  {name}: {fam.n_asn:,} ASN segments ({fam.asn_overlaps:,} overlapping ranges resolved), "
                f"{fam.n_net:,} flag/provider segments ({fam.label_overlaps:,} overlapping labelled ranges "
                f"resolved), {fam.table.height:,} lookup segments"
            )
        lines.extend(f"  note: {n}" for n in self._notes)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"IpIntel(sources={len(self._summaries)}, v4_segments={self._v4.table.height}, "
            f"v6_segments={self._v6.table.height}, flags={sorted(self._flags)})"
        )

    def _lookup(self, parsed: pl.DataFrame) -> pl.DataFrame:
        """``asn``, ``as_org``, ``_flags`` (UInt8 bits, 0 for a valid address no source lists, null for an
        invalid one) and ``ip_provider`` for each row of :func:`parse_ips` output, in its order."""
        out: pl.DataFrame | None = None
        for fam, key in ((self._v4, "_v4"), (self._v6, "_v6")):
            keys = parsed[key]
            if keys.null_count() == len(keys):
                continue
            got = fam.payload(fam.row_index(keys))
            out = (
                got
                if out is None
                else out.select(pl.coalesce(pl.col(c), got[c]).alias(c) for c in out.columns)
            )
        if out is None:
            schema = {"asn": pl.Int64, "as_org": pl.String, "_f": pl.UInt8, "ip_provider": pl.String}
            out = pl.DataFrame(schema=schema).clear(len(parsed))
        valid = parsed["_v4"].is_not_null() | parsed["_v6"].is_not_null()
        return out.select(
            "asn",
            "as_org",
            _flags=pl.when(valid).then(pl.col("_f").fill_null(0)).otherwise(None),
            ip_provider=pl.col("ip_provider"),
        )
