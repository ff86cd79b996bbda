"""The batch enrichment: ``add_ip_columns`` adds :data:`IP_COLUMNS` to a frame (prefixes always; ASN,
organisation, flags and provider from an ``IpIntel`` when one is given), once per distinct address."""

from __future__ import annotations

import polars as pl

from ._intel import FLAG_BITS, IpIntel
from ._parse import parse_ips

#: The output column each flag fills.
FLAG_COLUMNS: dict[str, str] = {flag: f"is_{flag}" for flag in FLAG_BITS}

#: The columns :func:`add_ip_columns` adds, with their dtypes (always all of them, intel or not).
IP_COLUMNS: dict[str, pl.DataType] = {
    "ip_version": pl.Int8(),
    "ip_prefix": pl.String(),
    "asn": pl.Int64(),
    "as_org": pl.String(),
    "is_datacenter": pl.Boolean(),
    "is_vpn": pl.Boolean(),
    "is_proxy": pl.Boolean(),
    "is_tor": pl.Boolean(),
    "ip_provider": pl.String(),
}


def _null_intel_columns() -> list[pl.Expr]:
    return [pl.lit(None, IP_COLUMNS[c]).alias(c) for c in IP_COLUMNS if c not in ("ip_version", "ip_prefix")]


def _parse_struct(s: pl.Series) -> pl.Series:
    return parse_ips(s).select("ip_version", "ip_prefix").to_struct(s.name)


def ip_prefix_exprs(column: str = "client_ip") -> list[pl.Expr]:
    """Expressions that add ``ip_version`` (Int8) and ``ip_prefix`` (String) computed from ``column``.

    ``ip_prefix`` is the /24 of an IPv4 address (``"a.b.c.0/24"``, IPv4-mapped IPv6 included) and the /48
    of an IPv6 address (canonical lowercase, ``"2001:db8:1::/48"``); both are null for text that is not
    an address. The list holds one expression with two output columns (the parser runs once); use it in
    ``select`` / ``with_columns``. :func:`add_ip_columns` is faster on batches with repeated addresses.
    """
    struct = pl.Struct({"ip_version": pl.Int8, "ip_prefix": pl.String})
    return [
        pl.col(column).map_batches(_parse_struct, return_dtype=struct, is_elementwise=True).struct.unnest()
    ]


#: Below this share of distinct addresses, a batch is parsed once per distinct address and joined back;
#: above it (nearly all distinct) the rows are parsed directly, which skips the dedupe and the join.
_DEDUPE_BELOW = 0.7


def _enriched(keys: pl.Series, intel: IpIntel | None) -> pl.DataFrame:
    """``_ip`` (the text) and :data:`IP_COLUMNS` for each IP text in ``keys``, in order."""
    parsed = parse_ips(keys)
    if intel is None:
        return parsed.select(_ip=keys, ip_version="ip_version", ip_prefix="ip_prefix").with_columns(
            _null_intel_columns()
        )
    found = intel._lookup(parsed)
    flag_cols = [
        (
            ((found["_flags"] & bit) != 0)
            if flag in intel.flags
            else pl.repeat(None, len(keys), dtype=pl.Boolean, eager=True)
        ).alias(FLAG_COLUMNS[flag])
        for flag, bit in FLAG_BITS.items()
    ]
    return pl.DataFrame(
        [
            keys.alias("_ip"),
            parsed["ip_version"],
            parsed["ip_prefix"],
            found["asn"],
            found["as_org"],
            *flag_cols,
            found["ip_provider"],
        ]
    )


def add_ip_columns(df: pl.DataFrame, intel: IpIntel | None, *, column: str = "client_ip") -> pl.DataFrame:
    """Add :data:`IP_COLUMNS` to ``df`` from its IP text column (existing ones are replaced).

    ``ip_version`` / ``ip_prefix`` are always computed; ``asn``, ``as_org``, the ``is_*`` flags and
    ``ip_provider`` come from ``intel`` and are null when it is ``None`` (or for rows whose IP is null or
    not an address). With intel, a flag is ``False`` for a valid address no source lists, and null when no
    loaded source can set that flag at all. Rows keep their order. When addresses repeat (the usual case)
    the work runs once per distinct address and is joined back.
    """
    base = df.drop([c for c in IP_COLUMNS if c in df.columns])
    ips = base.get_column(column).cast(pl.String)
    n = len(ips)
    if n and ips.to_frame().select(pl.first().approx_n_unique()).item() < _DEDUPE_BELOW * n:
        keys = ips.unique()
        enriched = _enriched(keys, intel)
        return base.join(enriched, left_on=column, right_on="_ip", how="left", maintain_order="left")
    return base.hstack(_enriched(ips, intel).drop("_ip"))
