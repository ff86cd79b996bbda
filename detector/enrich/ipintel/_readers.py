"""Readers for the three IP-intel file kinds, vectorised, with per-line error collection.

Every reader splits the file into lines itself (so line numbers are exact, blank lines included),
validates all lines with polars expressions, and returns the parsed ranges per IP family together with
the problems found: ``path:line: what is wrong``. The caller decides to raise; a reader never stops at
the first bad line.

Range keys: IPv4 ranges are ``UInt32`` ``start``/``end`` (inclusive). IPv6 ranges are keyed on the upper
64 bits (``UInt64``): ``start`` is the /64 holding the first address and ``end`` the /64 holding the last
one, so a range smaller than a /64 widens to its whole /64 (see ``IpIntel`` for what that means on overlap).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from polars.expr.whenthen import ChainedThen, Then

from ._parse import U32_MAX, U64_MAX, hi64, parse_v4, parse_v6

#: At most this many problems are listed per file; the rest are counted.
MAX_ISSUES_PER_FILE = 20

_ASN_MAX = U32_MAX
_SNIPPET = 60

V4_RANGE_SCHEMA: dict[str, pl.DataType] = {"start": pl.UInt32(), "end": pl.UInt32()}
V6_RANGE_SCHEMA: dict[str, pl.DataType] = {"start": pl.UInt64(), "end": pl.UInt64()}


@dataclass
class ReadResult:
    """What one reader got from one file."""

    v4: pl.DataFrame
    v6: pl.DataFrame
    issues: list[str] = field(default_factory=list)
    n_issues: int = 0
    n_lines: int = 0


def _snip(col: str) -> pl.Expr:
    """The value of ``col`` cut short for an error message."""
    c = pl.col(col).fill_null("")
    return pl.when(c.str.len_chars() > _SNIPPET).then(c.str.slice(0, _SNIPPET) + "...").otherwise(c)


def read_lines(path: Path) -> tuple[pl.DataFrame | None, list[str]]:
    """Read ``path`` into a frame ``lineno`` (1-based, UInt32) / ``line`` (String, no CR/LF).

    Returns ``(None, [message])`` when the file cannot be read or is not UTF-8 (the message names the
    line of the first bad byte).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [f"{path}: cannot read file: {exc.strerror or exc}"]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return None, [f"{path}:{line}: not UTF-8 text (byte offset {exc.start}: {exc.reason})"]
    if text.endswith("\n"):
        text = text[:-1]
    lines = pl.Series("line", [text]).str.split("\n").explode()
    frame = (
        lines.to_frame()
        .with_row_index("lineno", offset=1)
        .with_columns(pl.col("line").str.strip_suffix("\r"))
    )
    if text == "":
        frame = frame.clear()
    return frame, []


def _collect_issues(path: Path, frame: pl.DataFrame) -> tuple[list[str], int]:
    """``path:line: error`` for rows whose ``err`` is set (first :data:`MAX_ISSUES_PER_FILE` of them)."""
    bad = frame.filter(pl.col("err").is_not_null())
    n = bad.height
    issues = [
        f"{path}:{ln}: {msg}" for ln, msg in bad.head(MAX_ISSUES_PER_FILE).select("lineno", "err").iter_rows()
    ]
    if n > MAX_ISSUES_PER_FILE:
        issues.append(f"{path}: ... and {n - MAX_ISSUES_PER_FILE} more problems in this file")
    return issues, n


def _first_error(*checks: tuple[pl.Expr, pl.Expr]) -> pl.Expr:
    """The message of the first failing ``(failed, message)`` check, else null."""
    (failed, message), *rest = checks
    chain: Then | ChainedThen = pl.when(failed).then(message)
    for failed, message in rest:
        chain = chain.when(failed).then(message)
    return chain.otherwise(None)


def _v6_hi_lo(text: pl.Series) -> pl.DataFrame:
    """``hi`` / ``lo`` (UInt64 halves, null when invalid) of IPv6 text."""
    g = parse_v6(text)
    lo = g.select(
        pl.col("g4") * pl.lit(1 << 48, pl.UInt64)
        + pl.col("g5") * pl.lit(1 << 32, pl.UInt64)
        + pl.col("g6") * pl.lit(1 << 16, pl.UInt64)
        + pl.col("g7")
    ).to_series()
    return pl.DataFrame({"hi": hi64(g), "lo": lo})


def _empty(schema: dict[str, pl.DataType], extra: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema={**schema, **extra})


# --------------------------------------------------------------------------------------------- asn_ranges

_ASN_EXTRA: dict[str, pl.DataType] = {"asn": pl.Int64(), "as_org": pl.String(), "prio": pl.Int64()}
_HEADER_STARTS = ("start", "ip_start", "start_ip", "range_start", "first", "network")


def _range_keys(f: pl.DataFrame, is6: bool) -> pl.DataFrame:
    """Add ``ks``/``ke`` (lookup keys of start/end; null when invalid) and ``after`` (start > end)."""
    if not is6:
        return f.with_columns(ks=parse_v4(f["s"]), ke=parse_v4(f["e"])).with_columns(
            after=pl.col("ks") > pl.col("ke")
        )
    s6 = _v6_hi_lo(f["s"]).rename({"hi": "ks", "lo": "s_lo"})
    e6 = _v6_hi_lo(f["e"]).rename({"hi": "ke", "lo": "e_lo"})
    return (
        f.hstack(s6)
        .hstack(e6)
        .with_columns(
            after=(pl.col("ks") > pl.col("ke"))
            | ((pl.col("ks") == pl.col("ke")) & (pl.col("s_lo") > pl.col("e_lo")))
        )
        .drop("s_lo", "e_lo")
    )


def read_asn_ranges(path: Path, prio_base: int) -> ReadResult:
    """Read a ``start,end,asn,org`` CSV (ip-location-db layout; no header, or a header on line 1).

    IPv4 and IPv6 rows may be mixed. ``org`` may be double-quoted with ``""`` escapes and contain commas.
    ``prio`` is ``prio_base + line number`` (later lines win ties on overlap).
    """
    frame, issues = read_lines(path)
    if frame is None:
        return ReadResult(_empty(V4_RANGE_SCHEMA, _ASN_EXTRA), _empty(V6_RANGE_SCHEMA, _ASN_EXTRA), issues, 1)
    n_lines = frame.height
    f = frame.filter(pl.col("line").str.strip_chars() != "")
    f = f.with_columns(
        pl.col("line").str.splitn(",", 4).struct.rename_fields(["s", "e", "a", "o"]).struct.unnest()
    ).with_columns(pl.col("s", "e", "a").str.strip_chars())
    if f.height and f["lineno"][0] == 1 and (f["s"][0] or "").lower().startswith(_HEADER_STARTS):
        f = f.slice(1)
    f = f.with_columns(
        is6=pl.col("s").str.contains(":", literal=True).fill_null(False),
        e6=pl.col("e").str.contains(":", literal=True).fill_null(False),
        asn=pl.col("a").str.to_integer(dtype=pl.Int64, strict=False),
    )
    parts = [_range_keys(f.filter(pl.col("is6") == fam), fam) for fam in (False, True)]
    checks = (
        (
            pl.col("o").is_null(),
            pl.format("expected 4 comma-separated fields start,end,asn,org, got '{}'", _snip("line")),
        ),
        (pl.col("ks").is_null(), pl.format("start '{}' is not an IPv4 or IPv6 address", _snip("s"))),
        (
            pl.col("is6") != pl.col("e6"),
            pl.format("start '{}' and end '{}' are different IP versions", _snip("s"), _snip("e")),
        ),
        (pl.col("ke").is_null(), pl.format("end '{}' is not an IPv4 or IPv6 address", _snip("e"))),
        (pl.col("after"), pl.format("start '{}' is after end '{}'", _snip("s"), _snip("e"))),
        (
            pl.col("asn").is_null() | (pl.col("asn") < 0) | (pl.col("asn") > _ASN_MAX),
            pl.format("asn '{}' is not an integer in 0..{}", _snip("a"), pl.lit(_ASN_MAX)),
        ),
    )
    parts = [p.with_columns(err=_first_error(*checks)) for p in parts]
    issues, n = _collect_issues(path, pl.concat([p.select("lineno", "err") for p in parts]).sort("lineno"))
    org = pl.col("o").str.strip_chars()
    org = (
        pl.when(org.str.starts_with('"') & org.str.ends_with('"') & (org.str.len_chars() >= 2))
        .then(org.str.slice(1, org.str.len_chars() - 2).str.replace_all('""', '"', literal=True))
        .otherwise(org)
    )
    payload = [
        pl.col("ks").alias("start"),
        pl.col("ke").alias("end"),
        pl.col("asn"),
        pl.when(org == "").then(None).otherwise(org).alias("as_org"),
        (pl.col("lineno").cast(pl.Int64) + prio_base).alias("prio"),
    ]
    v4, v6 = (p.filter(pl.col("err").is_null()).select(payload) for p in parts)
    return ReadResult(v4, v6, issues, n, n_lines)


# ---------------------------------------------------------------------------------------------- cidr_list

_CIDR_EXTRA: dict[str, pl.DataType] = {"prio": pl.Int64()}
_CIDR_RE = r"^([^/\s]+)(?:/([0-9]{1,3}))?$"
_V4_BLOCK = {k: 1 << (32 - k) for k in range(33)}
_V6_BLOCK = {k: 1 << (64 - k) for k in range(1, 65)}


def read_cidr_list(path: Path, prio_base: int) -> ReadResult:
    """Read a CIDR list: one ``addr/len`` (or a bare address) per line, ``#`` starts a comment.

    IPv4 and IPv6 lines may be mixed. Host bits below the prefix length are ignored (``10.1.2.3/8`` is
    ``10.0.0.0/8``), as list publishers are not always strict about them.
    """
    frame, issues = read_lines(path)
    if frame is None:
        return ReadResult(
            _empty(V4_RANGE_SCHEMA, _CIDR_EXTRA), _empty(V6_RANGE_SCHEMA, _CIDR_EXTRA), issues, 1
        )
    n_lines = frame.height
    f = frame.with_columns(body=pl.col("line").str.replace(r"#.*$", "").str.strip_chars()).filter(
        pl.col("body") != ""
    )
    f = f.with_columns(
        pl.col("body").str.extract_groups(_CIDR_RE).struct.rename_fields(["addr", "plen_s"]).struct.unnest()
    )
    f = f.with_columns(
        is6=pl.col("addr").str.contains(":", literal=True).fill_null(False),
        plen=pl.col("plen_s").str.to_integer(dtype=pl.Int64, strict=False),
    )
    v6 = parse_v6(f["addr"])
    f = f.with_columns(v4=parse_v4(f["addr"]), hi=hi64(v6))
    f = f.with_columns(
        plen=pl.when(pl.col("plen").is_not_null())
        .then(pl.col("plen"))
        .when(pl.col("is6"))
        .then(pl.lit(128, pl.Int64))
        .otherwise(pl.lit(32, pl.Int64)),
        max_plen=pl.when(pl.col("is6")).then(pl.lit(128, pl.Int64)).otherwise(pl.lit(32, pl.Int64)),
    )
    f = f.with_columns(
        err=_first_error(
            (
                pl.col("addr").is_null(),
                pl.format("expected one CIDR such as 192.0.2.0/24, got '{}'", _snip("body")),
            ),
            (
                pl.when(pl.col("is6")).then(pl.col("hi").is_null()).otherwise(pl.col("v4").is_null()),
                pl.format("'{}' is not an IPv4 or IPv6 address", _snip("addr")),
            ),
            (
                pl.col("plen") > pl.col("max_plen"),
                pl.format("prefix length {} is out of range 0..{}", pl.col("plen"), pl.col("max_plen")),
            ),
        )
    )
    issues, n = _collect_issues(path, f)
    ok = f.filter(pl.col("err").is_null())
    prio = (pl.col("lineno").cast(pl.Int64) + prio_base).alias("prio")

    r4 = ok.filter(~pl.col("is6"))
    block4 = pl.col("plen").replace_strict(_V4_BLOCK, return_dtype=pl.Int64)
    start4 = pl.col("v4").cast(pl.Int64) - pl.col("v4").cast(pl.Int64) % block4
    v4 = r4.select(
        start4.cast(pl.UInt32).alias("start"), (start4 + block4 - 1).cast(pl.UInt32).alias("end"), prio
    )

    r6 = ok.filter(pl.col("is6"))
    k = pl.col("plen").clip(upper_bound=64)
    block6 = k.replace_strict(_V6_BLOCK, default=None, return_dtype=pl.UInt64)
    start6 = pl.when(k == 0).then(pl.lit(0, pl.UInt64)).otherwise(pl.col("hi") - pl.col("hi") % block6)
    end6 = (
        pl.when(k == 0)
        .then(pl.lit(U64_MAX, pl.UInt64))
        .otherwise(pl.col("hi") - pl.col("hi") % block6 + (block6 - pl.lit(1, pl.UInt64)))
    )
    v6r = r6.select(start6.alias("start"), end6.alias("end"), prio)
    return ReadResult(v4, v6r, issues, n, n_lines)


# ----------------------------------------------------------------------------------------------- asn_list

_ASN_LINE_RE = r"(?i)^(?:as)?\s*([0-9]{1,12})\s*(?:#\s*(.*?)\s*)?$"


def read_asn_list(path: Path) -> tuple[pl.DataFrame, list[str], int, int]:
    """Read an ASN list (x4bnet layout): ``AS<number>`` (the ``AS`` is optional) and an optional
    ``# name`` comment per line; lines that are only a ``#`` comment are skipped.

    Returns ``(frame asn Int64 / name String, issues, n_issues, n_lines)``.
    """
    frame, issues = read_lines(path)
    if frame is None:
        return pl.DataFrame(schema={"asn": pl.Int64, "name": pl.String}), issues, 1, 1
    n_lines = frame.height
    f = frame.with_columns(body=pl.col("line").str.strip_chars()).filter(
        (pl.col("body") != "") & ~pl.col("body").str.starts_with("#")
    )
    f = f.with_columns(
        pl.col("body").str.extract_groups(_ASN_LINE_RE).struct.rename_fields(["a", "name"]).struct.unnest()
    )
    f = f.with_columns(asn=pl.col("a").str.to_integer(dtype=pl.Int64, strict=False))
    f = f.with_columns(
        err=_first_error(
            (
                pl.col("a").is_null(),
                pl.format("expected 'AS<number>' optionally followed by '# name', got '{}'", _snip("body")),
            ),
            (
                pl.col("asn") > _ASN_MAX,
                pl.format("ASN {} is out of range 0..{}", pl.col("asn"), pl.lit(_ASN_MAX)),
            ),
        )
    )
    issues, n = _collect_issues(path, f)
    ok = f.filter(pl.col("err").is_null()).select(
        "asn", pl.when(pl.col("name") == "").then(None).otherwise(pl.col("name")).alias("name")
    )
    return ok, issues, n, n_lines
