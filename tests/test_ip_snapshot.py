"""The packaged IP-intelligence snapshot gives every address the flags and provider label the full public
folders give it (checked on the built lookup tables, segment by segment, IPv4 and IPv6)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from detector.defaults import ip_intel_dir
from detector.enrich.ipintel import IpIntel, add_ip_columns


def _flag_segments(intel: IpIntel) -> list[pl.DataFrame]:
    """Per family: maximal runs of addresses with the same flag bits and provider label (flagged only)."""
    out = []
    for fam in (intel._v4, intel._v6):
        t = (
            fam.table.filter((pl.col("_f") > 0) | pl.col("ip_provider").is_not_null())
            .select("_s", "_e", "_f", "ip_provider")
            .sort("_s")
        )
        same = (
            (pl.col("_s") == pl.col("_e").shift(1) + 1)
            & (pl.col("_f") == pl.col("_f").shift(1))
            & pl.col("ip_provider").eq_missing(pl.col("ip_provider").shift(1))
        ).fill_null(False)
        out.append(
            t.with_columns(_g=(~same).cum_sum())
            .group_by("_g", maintain_order=True)
            .agg(
                pl.col("_s").first(), pl.col("_e").last(), pl.col("_f").first(), pl.col("ip_provider").first()
            )
            .drop("_g")
        )
    return out


@pytest.mark.shared
def test_the_snapshot_flags_every_address_as_the_full_folders_do(shared_dir: Path) -> None:
    full = IpIntel.from_dir(shared_dir / "data" / "ip_intel")
    snap = IpIntel.from_dir(ip_intel_dir())
    for a, b in zip(_flag_segments(full), _flag_segments(snap), strict=True):
        assert a.height > 1000
        assert a.equals(b)


def test_the_snapshot_is_small_and_flags_known_hosting_space() -> None:
    size = sum(p.stat().st_size for p in ip_intel_dir().rglob("*") if p.is_file())
    assert size < 6_000_000
    intel = IpIntel.from_dir(ip_intel_dir())
    got = add_ip_columns(pl.DataFrame({"client_ip": ["3.5.140.2", "192.168.1.1"]}), intel)
    assert got["is_datacenter"].to_list() == [True, False]
    assert got["ip_provider"].to_list() == ["amazon", None]
