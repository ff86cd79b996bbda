"""Tests for detector.enrich.ipintel: prefixes, range lookups, flags, malformed sources, real shared data."""

from __future__ import annotations

import ipaddress
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from detector.enrich.ipintel import (
    IP_COLUMNS,
    MAX_ISSUES_PER_FILE,
    IpIntel,
    IpIntelError,
    IpSource,
    add_ip_columns,
    discover_sources,
    ip_prefix_exprs,
)

DATA = Path(__file__).parent / "data" / "ipintel"
SHARED_IP_INTEL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ip_intel"


def enrich(ips: Sequence[str | None], intel: IpIntel | None) -> dict[str | None, dict[str, object]]:
    """``add_ip_columns`` over ``ips``, as ``{ip: row}``."""
    out = add_ip_columns(pl.DataFrame({"client_ip": ips}, schema={"client_ip": pl.String}), intel)
    return {row["client_ip"]: row for row in out.iter_rows(named=True)}


@pytest.fixture(scope="module")
def intel() -> IpIntel:
    return IpIntel.load(
        [
            IpSource(path=DATA / "asn_v4.csv", kind="asn_ranges"),
            IpSource(path=DATA / "asn_v6.csv", kind="asn_ranges"),
            IpSource(path=DATA / "datacenter.txt", kind="cidr_list", flag="datacenter", label="cloudco"),
            IpSource(path=DATA / "vpn.txt", kind="cidr_list", flag="vpn", label="vpnco"),
            {"path": DATA / "hosting_asns.txt", "kind": "asn_list"},  # flag defaults to datacenter
        ]
    )


# ------------------------------------------------------------------------------------------------ prefixes


@pytest.mark.parametrize(
    ("ip", "version", "prefix"),
    [
        ("8.8.8.8", 4, "8.8.8.0/24"),
        ("0.0.0.0", 4, "0.0.0.0/24"),
        ("255.255.255.255", 4, "255.255.255.0/24"),
        ("2001:db8::1", 6, "2001:db8::/48"),
        ("2001:DB8:0:1::1", 6, "2001:db8::/48"),
        ("2001:0db8:0001:0000:0000:0000:0000:0001", 6, "2001:db8:1::/48"),
        ("2001:db8:0:0:1:0:0:1", 6, "2001:db8::/48"),
        ("2a00:1450:4001:82b::200e", 6, "2a00:1450:4001::/48"),
        ("::", 6, "::/48"),
        ("::1", 6, "::/48"),
        ("1::", 6, "1::/48"),
        ("0:0:1::", 6, "0:0:1::/48"),
        ("1:2:3:4:5:6:7::", 6, "1:2:3::/48"),
        ("fe80::1%eth0", 6, "fe80::/48"),
        ("::1.2.3.4", 6, "::/48"),  # IPv4-compatible (deprecated), not mapped: stays IPv6
        ("::ffff:198.51.100.7", 4, "198.51.100.0/24"),  # IPv4-mapped -> IPv4
        ("::FFFF:c633:6407", 4, "198.51.100.0/24"),  # the same, in hex
        ("0:0:0:0:0:ffff:10.1.2.3", 4, "10.1.2.0/24"),
    ],
)
def test_prefixes(ip: str, version: int, prefix: str) -> None:
    row = enrich([ip], None)[ip]
    assert (row["ip_version"], row["ip_prefix"]) == (version, prefix)


@pytest.mark.parametrize(
    "bad",
    ["", "abc", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1:::2", "1::2::3", "12345::", "g::",
     "1:2:3:4:5:6:7:8:9", "::ffff:1.2.3.256", "1.2.3.4/24"],
)  # fmt: skip
def test_not_an_address_gives_nulls(bad: str) -> None:
    row = enrich([bad], None)[bad]
    assert row["ip_version"] is None and row["ip_prefix"] is None


def test_prefixes_match_ipaddress_on_random_addresses() -> None:
    rng = random.Random(42)
    ips: list[str] = []
    for _ in range(3000):
        if rng.random() < 0.3:
            ips.append(str(ipaddress.IPv4Address(rng.getrandbits(32))))
            continue
        groups = [rng.choice([0, 0, rng.getrandbits(16), rng.getrandbits(4)]) for _ in range(8)]
        addr = ipaddress.IPv6Address(sum(g << (16 * (7 - i)) for i, g in enumerate(groups)))
        ips.append(rng.choice([str(addr), addr.exploded.upper(), ":".join(f"{g:x}" for g in groups)]))
    got = enrich(ips, None)
    for ip in ips:
        parsed = ipaddress.ip_address(ip)
        bits = 24 if parsed.version == 4 else 48
        expected = str(ipaddress.ip_network(f"{parsed}/{bits}", strict=False))
        assert (got[ip]["ip_version"], got[ip]["ip_prefix"]) == (parsed.version, expected), ip


def test_ip_prefix_exprs_matches_add_ip_columns() -> None:
    ips = ["8.8.8.8", "2001:db8::1", "::ffff:1.2.3.4", "nope", None]
    df = pl.DataFrame({"client_ip": ips})
    via_exprs = df.with_columns(ip_prefix_exprs())
    assert via_exprs.schema["ip_version"] == pl.Int8 and via_exprs.schema["ip_prefix"] == pl.String
    expected = add_ip_columns(df, None).select("client_ip", "ip_version", "ip_prefix")
    assert via_exprs.equals(expected)
    # works in lazy frames and on another column name
    lazy = df.rename({"client_ip": "ip"}).lazy().select(ip_prefix_exprs("ip")).collect()
    assert lazy.columns == ["ip_version", "ip_prefix"] and lazy["ip_prefix"].to_list()[:2] == [
        "8.8.8.0/24",
        "2001:db8::/48",
    ]


# ------------------------------------------------------------------------------------------- no intel mode


def test_no_intel_columns_exist_null_with_dtypes() -> None:
    df = pl.DataFrame({"account_id": ["a", "b", "c"], "client_ip": ["8.8.8.8", "2001:db8::1", None]})
    out = add_ip_columns(df, None)
    assert out.columns == ["account_id", "client_ip", *IP_COLUMNS]
    assert {c: out.schema[c] for c in IP_COLUMNS} == IP_COLUMNS
    for col in IP_COLUMNS:
        if col not in ("ip_version", "ip_prefix"):
            assert out[col].null_count() == 3, col
    assert out["account_id"].to_list() == ["a", "b", "c"]


@pytest.mark.parametrize("use_intel", [False, True])
def test_empty_and_all_null_batches(use_intel: bool, intel: IpIntel) -> None:
    it = intel if use_intel else None
    empty = add_ip_columns(pl.DataFrame({"client_ip": []}, schema={"client_ip": pl.String}), it)
    assert empty.height == 0 and {c: empty.schema[c] for c in IP_COLUMNS} == IP_COLUMNS
    nulls = add_ip_columns(pl.DataFrame({"client_ip": [None, None]}, schema={"client_ip": pl.String}), it)
    assert {c: nulls.schema[c] for c in IP_COLUMNS} == IP_COLUMNS
    assert all(nulls[c].null_count() == 2 for c in IP_COLUMNS)


def test_existing_columns_are_replaced_and_order_kept(intel: IpIntel) -> None:
    ips = ["10.1.2.3", "8.8.8.8", "10.1.2.3", "2001:db8::1"] * 50  # repeats: dedupe + join-back path
    df = pl.DataFrame({"client_ip": ips, "asn": [0] * len(ips)})
    out = add_ip_columns(df, intel)
    assert out.height == len(ips) and out["client_ip"].to_list() == ips
    assert out.schema["asn"] == pl.Int64
    assert out["asn"].to_list()[:4] == [64513, None, 64513, 64496]
    distinct = [f"10.{i // 256}.{i % 256}.1" for i in range(300)]  # all distinct: direct path
    out2 = add_ip_columns(pl.DataFrame({"client_ip": distinct}), intel)
    assert out2["client_ip"].to_list() == distinct
    assert out2["ip_prefix"].to_list()[:2] == ["10.0.0.0/24", "10.0.1.0/24"]
    assert out2["asn"].to_list()[256:258] == [64513, 64513]


# --------------------------------------------------------------------------------------------------- lookups


@pytest.mark.parametrize(
    ("ip", "asn", "org"),
    [
        ("1.0.0.0", 13335, "Cloudflare, Inc."),  # start is inclusive
        ("1.0.0.255", 13335, "Cloudflare, Inc."),  # end is inclusive
        ("1.0.1.0", None, None),  # gap after a range
        ("1.0.3.255", None, None),  # gap before a range
        ("1.0.4.0", 38803, "Gtelecom Pty Ltd"),
        ("1.0.7.255", 38803, "Gtelecom Pty Ltd"),
        ("5.5.5.5", 555, "Unsorted Row"),  # rows need not be sorted
        ("10.0.0.1", 64512, "Wide Net"),
        ("10.1.2.3", 64513, "Nested Narrow"),  # nested range: the narrowest wins
        ("10.2.0.0", 64512, "Wide Net"),  # the wide range resumes after the nested one
        ("10.255.255.255", 64512, "Wide Net"),
        ("20.0.0.5", 100, 'LLC "SPUTNIK"'),  # quoted CSV field with "" escapes
        ("20.0.1.5", 200, "Partial Overlap"),  # equal widths overlapping: the later line wins
        ("20.0.2.255", 200, "Partial Overlap"),
        ("0.0.0.0", 1, None),  # lowest address; empty org is null
        ("255.255.255.255", 65000, "Top Of Space"),  # highest address
        ("198.18.1.1", 64499, "Mixed File V4 Row"),  # IPv4 row in the IPv6 file
        ("::ffff:10.1.2.3", 64513, "Nested Narrow"),  # mapped IPv6 uses the IPv4 tables
        ("2001:db8::1", 64496, "Doc Net"),
        ("2001:db8:1::5", 64497, "Doc Sub"),
        ("2001:db8:2::", 64496, "Doc Net"),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 64496, "Doc Net"),
        ("2a00::1", 64498, "Tiny Range"),
        ("2a00::1:0", 64498, "Tiny Range"),  # outside 2a00::-2a00::ff but in its /64 (documented)
        ("2a00:0:0:1::", None, None),  # next /64
        ("2001:db7:ffff:ffff::", None, None),
    ],
)
def test_asn_lookup(intel: IpIntel, ip: str, asn: int | None, org: str | None) -> None:
    row = enrich([ip], intel)[ip]
    assert (row["asn"], row["as_org"]) == (asn, org)


@pytest.mark.parametrize(
    ("ip", "dc", "vpn", "provider"),
    [
        ("198.51.100.0", True, False, "cloudco"),
        ("198.51.100.127", True, False, "cloudco"),
        ("198.51.100.128", True, True, "vpnco"),  # both flags; the narrower label wins
        ("198.51.100.255", True, True, "vpnco"),
        ("198.51.101.0", False, False, None),
        ("203.0.113.200", True, False, "cloudco"),  # listed with host bits set
        ("192.0.2.5", True, False, "cloudco"),  # bare address = /32
        ("192.0.2.6", False, False, None),
        ("1.0.5.5", True, False, None),  # AS38803 is in the asn_list
        ("20.0.0.1", True, False, None),  # AS100 ("as100") too
        ("20.0.2.1", False, False, None),  # AS200 is not
        ("2001:db8:aaaa:5::1", True, False, "cloudco"),
        ("2001:db8:aaaa:1::9", True, True, "vpnco"),
        ("2001:db8:aaab::1", False, False, None),
        ("9.9.9.9", False, False, None),  # in no table at all: valid, so False not null
    ],
)
def test_flags(intel: IpIntel, ip: str, dc: bool, vpn: bool, provider: str | None) -> None:
    row = enrich([ip], intel)[ip]
    assert (row["is_datacenter"], row["is_vpn"], row["ip_provider"]) == (dc, vpn, provider)
    assert row["is_proxy"] is None and row["is_tor"] is None  # no proxy/tor source loaded: unknown


def test_invalid_address_gets_null_flags(intel: IpIntel) -> None:
    row = enrich(["not-an-ip"], intel)["not-an-ip"]
    assert all(row[c] is None for c in IP_COLUMNS)


def test_describe_and_summaries(intel: IpIntel) -> None:
    text = intel.describe()
    assert "asn_v4.csv: 9 IPv4 + 0 IPv6 ranges" in text
    assert "asn_v6.csv: 1 IPv4 + 3 IPv6 ranges" in text
    assert "flag=vpn label=vpnco" in text and "2 ASNs" in text
    assert intel.flags == {"datacenter", "vpn"}
    assert [s.v4 for s in intel.summaries] == [9, 1, 3, 1, 2]
    assert "IpIntel(" in repr(intel)


def test_asn_list_without_ranges_is_noted() -> None:
    it = IpIntel.load([IpSource(path=DATA / "hosting_asns.txt", kind="asn_list", flag="vpn")])
    assert "no asn_ranges source" in it.describe()
    assert enrich(["1.0.5.5"], it)["1.0.5.5"]["is_vpn"] is False


def test_later_source_wins_label_ties(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("192.0.2.0/24\n")
    (tmp_path / "b.txt").write_text("192.0.2.0/24\n")
    srcs = [
        IpSource(path=tmp_path / "a.txt", kind="cidr_list", flag="datacenter", label="first"),
        IpSource(path=tmp_path / "b.txt", kind="cidr_list", flag="proxy", label="second"),
    ]
    row = enrich(["192.0.2.1"], IpIntel.load(srcs))["192.0.2.1"]
    assert (row["ip_provider"], row["is_datacenter"], row["is_proxy"]) == ("second", True, True)


# -------------------------------------------------------------------------------------------- bad sources


def test_malformed_asn_ranges_lists_every_bad_line() -> None:
    path = DATA / "bad" / "asn_ranges.csv"
    with pytest.raises(IpIntelError) as err:
        IpIntel.load([IpSource(path=path, kind="asn_ranges")])
    issues = err.value.issues
    assert [i.split(": ", 1)[0] for i in issues] == [f"{path}:{n}" for n in (2, 3, 4, 5, 6)]
    assert "expected 4 comma-separated fields" in issues[0]
    assert "start '300.0.0.0' is not an IPv4 or IPv6 address" in issues[1]
    assert "is after end" in issues[2]
    assert "asn 'notanumber' is not an integer" in issues[3]
    assert "different IP versions" in issues[4]
    assert f"{path}:3:" in str(err.value)  # the message itself names file:line


def test_errors_of_several_files_are_reported_together() -> None:
    srcs = [
        IpSource(path=DATA / "bad" / "cidr.txt", kind="cidr_list", flag="vpn"),
        IpSource(path=DATA / "asn_v4.csv", kind="asn_ranges"),  # fine
        IpSource(path=DATA / "bad" / "asn_list.txt", kind="asn_list"),
    ]
    with pytest.raises(IpIntelError) as err:
        IpIntel.load(srcs)
    cidr, asn_list = DATA / "bad" / "cidr.txt", DATA / "bad" / "asn_list.txt"
    heads = [i.split(": ", 1)[0] for i in err.value.issues]
    assert heads == [f"{cidr}:2", f"{cidr}:3", f"{cidr}:6", f"{cidr}:7", f"{asn_list}:2", f"{asn_list}:3"]
    text = "\n".join(err.value.issues)
    assert "prefix length 33 is out of range 0..32" in text
    assert "'not-an-ip' is not an IPv4 or IPv6 address" in text
    assert "prefix length 129 is out of range 0..128" in text
    assert "expected one CIDR" in text  # 1.2.3.4/24/5
    assert "expected 'AS<number>'" in text and "ASN 99999999999 is out of range" in text
    assert "problems in 2 file(s)" in str(err.value)


def test_issue_cap_per_file(tmp_path: Path) -> None:
    path = tmp_path / "many.txt"
    path.write_text("".join(f"bad{i}\n" for i in range(MAX_ISSUES_PER_FILE + 10)))
    with pytest.raises(IpIntelError) as err:
        IpIntel.load([IpSource(path=path, kind="cidr_list", flag="tor")])
    assert len(err.value.issues) == MAX_ISSUES_PER_FILE + 1
    assert err.value.issues[-1].endswith("... and 10 more problems in this file")


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"1.0.0.0,1.0.0.255,1,ok\n2.0.0.0,2.0.0.255,2,\xff\xfe\n")
    with pytest.raises(IpIntelError) as err:
        IpIntel.load(
            [
                IpSource(path=tmp_path / "nope.csv", kind="asn_ranges"),
                IpSource(path=binary, kind="asn_ranges"),
            ]
        )
    assert err.value.issues[0].startswith(f"{tmp_path / 'nope.csv'}: cannot read file")
    assert err.value.issues[1].startswith(f"{binary}:2: not UTF-8 text")


def test_header_line_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_bytes(b"start,end,asn,org\r\n1.0.0.0,1.0.0.255,7,Seven\r\n")
    row = enrich(["1.0.0.9"], IpIntel.load([IpSource(path=path, kind="asn_ranges")]))["1.0.0.9"]
    assert (row["asn"], row["as_org"]) == (7, "Seven")


def test_source_validation() -> None:
    with pytest.raises(ValidationError, match="needs a flag"):
        IpSource(path=Path("x"), kind="cidr_list")
    with pytest.raises(ValidationError, match="neither flag nor label"):
        IpSource(path=Path("x"), kind="asn_ranges", flag="vpn")
    with pytest.raises(ValidationError):
        IpSource(path=Path("x"), kind="cidr_list", flag="botnet")  # type: ignore[arg-type]
    assert IpSource(path=Path("x"), kind="asn_list").flag == "datacenter"


# --------------------------------------------------------------------------------------------- discovery


def test_discover_layouts() -> None:
    root = DATA / "layout"
    got = {(s.path.relative_to(root).as_posix(), s.kind, s.flag, s.label) for s in discover_sources(root)}
    assert got == {
        ("ip-location-db/asn-ipv4.csv", "asn_ranges", None, None),
        ("ip-location-db/asn-ipv6.csv", "asn_ranges", None, None),
        ("x4bnet/output/datacenter/ipv4.txt", "cidr_list", "datacenter", None),
        ("x4bnet/output/vpn/ipv4.txt", "cidr_list", "vpn", None),
        ("x4bnet/input/datacenter/ASN.txt", "asn_list", "datacenter", None),
        ("lord/amazon/ipv4_merged.txt", "cidr_list", "datacenter", "amazon"),  # merged preferred
        ("lord/protonvpn/ipv4_merged.txt", "cidr_list", "vpn", "protonvpn"),
    }  # lord/all and the -num CSV are skipped
    it = IpIntel.from_dir(root)
    rows = enrich(["3.5.140.2", "8.8.8.8", "185.159.156.1", "46.0.0.1", "99.1.1.1"], it)
    assert (rows["3.5.140.2"]["asn"], rows["3.5.140.2"]["ip_provider"]) == (16509, "amazon")
    assert rows["8.8.8.8"]["is_datacenter"] is True  # through the ASN list
    assert rows["185.159.156.1"]["is_vpn"] is True and rows["46.0.0.1"]["is_vpn"] is True
    assert rows["99.1.1.1"]["is_datacenter"] is False  # only in the unmerged amazon list, which is skipped


def test_discover_rejects_empty_or_missing(tmp_path: Path) -> None:
    with pytest.raises(IpIntelError, match="no IP-intel files found"):
        IpIntel.from_dir(tmp_path)
    with pytest.raises(IpIntelError, match="not a directory"):
        IpIntel.from_dir(tmp_path / "missing")


# ------------------------------------------------------------------------------------ real shared data


@pytest.fixture(scope="module")
def shared_intel() -> IpIntel:
    if not SHARED_IP_INTEL.is_dir():
        message = f"shared IP-intel data not found at {SHARED_IP_INTEL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return IpIntel.from_dir(SHARED_IP_INTEL)


@pytest.mark.shared
def test_real_ip_intel(shared_intel: IpIntel) -> None:
    rows = enrich(
        [
            "8.8.8.8",
            "3.5.140.2",
            "1.1.1.1",
            "2001:4860:4860::8888",
            "104.28.28.1",
            "2.58.241.66",
            "192.168.1.1",
        ],
        shared_intel,
    )
    assert (rows["8.8.8.8"]["asn"], rows["8.8.8.8"]["as_org"]) == (15169, "Google LLC")
    aws = rows["3.5.140.2"]
    assert (aws["asn"], aws["is_datacenter"], aws["ip_provider"]) == (16509, True, "amazon")
    assert rows["1.1.1.1"]["asn"] == 13335
    assert rows["2001:4860:4860::8888"]["asn"] == 15169
    assert rows["104.28.28.1"]["is_proxy"] is True and rows["104.28.28.1"]["ip_provider"] == "apple-proxy"
    assert rows["2.58.241.66"]["is_vpn"] is True and rows["2.58.241.66"]["ip_provider"] == "protonvpn"
    private = rows["192.168.1.1"]
    assert (private["asn"], private["is_datacenter"], private["is_vpn"]) == (None, False, False)
    assert private["is_tor"] is None  # no Tor list in the shared data
    text = shared_intel.describe()
    assert "asn-ipv4.csv: 411,961 IPv4" in text and "lord-alfred_ipranges/all" not in text


@pytest.mark.shared
def test_real_asn_ipv4_load_and_lookup_speed(shared_intel: IpIntel) -> None:
    """Loose regression guards; the budgets are 3 s to load and 50 ms per 100k IPv4 rows."""
    t0 = time.perf_counter()
    IpIntel.load([IpSource(path=SHARED_IP_INTEL / "ip-location-db_asn" / "asn-ipv4.csv", kind="asn_ranges")])
    assert time.perf_counter() - t0 < 6.0
    octets = [pl.int_range(100_000).hash(seed=i) % 256 for i in range(4)]
    df = pl.select(client_ip=pl.concat_str([o.cast(pl.String) for o in octets], separator="."))
    assert df["client_ip"].n_unique() > 99_000
    add_ip_columns(df, shared_intel)  # warm-up
    t0 = time.perf_counter()
    add_ip_columns(df, shared_intel)
    assert time.perf_counter() - t0 < 0.5


# ------------------------------------------------------------------------------------ brute-force oracle


def test_overlap_resolution_matches_brute_force(tmp_path: Path) -> None:
    """Random overlapping ASN ranges and CIDR lists in a small space, checked address by address."""
    rng = random.Random(7)
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    span = 4096

    def addr(i: int) -> str:
        return str(ipaddress.IPv4Address(base + i))

    asn_rows: list[tuple[int, int, int]] = []
    for n in range(40):
        start = rng.randrange(span)
        end = min(span - 1, start + rng.choice([0, 3, 50, 255, 700, 2000]))
        asn_rows.append((start, end, 1000 + n))
    (tmp_path / "asn.csv").write_text("".join(f"{addr(s)},{addr(e)},{a},org{a}\n" for s, e, a in asn_rows))

    lists: list[tuple[str, str, list[tuple[int, int]]]] = []
    for k, (flag, label) in enumerate(
        [("datacenter", "p0"), ("vpn", "p1"), ("datacenter", "p2"), ("proxy", "p3")]
    ):
        blocks = []
        for _ in range(12):
            plen = rng.choice([20, 22, 24, 26, 28, 30, 32])
            size = 1 << (32 - plen)
            start = rng.randrange(span // size) * size
            blocks.append((start, start + size - 1))
        body = "".join(f"{addr(s)}/{32 - (e - s + 1).bit_length() + 1}\n" for s, e in blocks)
        (tmp_path / f"l{k}.txt").write_text(body)
        lists.append((flag, label, blocks))
    asn_list = [1000 + n for n in range(0, 40, 5)]
    (tmp_path / "asns.txt").write_text("".join(f"AS{a}\n" for a in asn_list))
    intel = IpIntel.load(
        [
            IpSource(path=tmp_path / "asn.csv", kind="asn_ranges"),
            *(
                IpSource(path=tmp_path / f"l{k}.txt", kind="cidr_list", flag=flag, label=label)  # type: ignore[arg-type]
                for k, (flag, label, _) in enumerate(lists)
            ),
            IpSource(path=tmp_path / "asns.txt", kind="asn_list", flag="tor"),
        ]
    )
    probes = sorted({rng.randrange(span + 64) for _ in range(1500)} | {s for s, _, _ in asn_rows})
    got = enrich([addr(i) for i in probes], intel)
    for i in probes:
        covering = [(e - s, -line, a) for line, (s, e, a) in enumerate(asn_rows) if s <= i <= e]
        asn = min(covering)[2] if covering else None
        flags = {flag for flag, _, blocks in lists if any(s <= i <= e for s, e in blocks)}
        labelled = [
            (e - s, -k, label) for k, (_, label, blocks) in enumerate(lists) for s, e in blocks if s <= i <= e
        ]
        row = got[addr(i)]
        assert row["asn"] == asn, addr(i)
        assert row["ip_provider"] == (min(labelled)[2] if labelled else None), addr(i)
        for flag in ("datacenter", "vpn", "proxy"):
            assert row[f"is_{flag}"] == (flag in flags), (addr(i), flag)
        assert row["is_tor"] == (asn in asn_list), addr(i)


def test_whole_address_space_edges(tmp_path: Path) -> None:
    (tmp_path / "all.txt").write_text("0.0.0.0/0\n::/0\nffff:ffff:ffff:ffff::/64\n255.255.255.255/32\n")
    intel = IpIntel.load(
        [
            IpSource(path=tmp_path / "all.txt", kind="cidr_list", flag="tor", label="everything"),
            IpSource(path=DATA / "datacenter.txt", kind="cidr_list", flag="datacenter", label="cloudco"),
        ]
    )
    ips = ["0.0.0.0", "255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::", "198.51.100.1"]
    rows = enrich(ips, intel)
    assert all(rows[ip]["is_tor"] is True for ip in ips)
    assert [rows[ip]["ip_provider"] for ip in ips] == ["everything"] * 4 + ["cloudco"]
    assert [rows[ip]["is_datacenter"] for ip in ips] == [False] * 4 + [True]
