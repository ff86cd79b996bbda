"""Rebuild the IP-intelligence snapshot that ships in the package (``detector/defaults/ip_intel``).

The engine uses IP intelligence for one thing: whether an address is hosted (datacenter, VPN, proxy or
Tor; ``is_hosted_ip``), which decides whether an address links accounts on its own or by its prefix.
The full public folders are ~34 MB, 32 MB of which is the ip-location-db ASN table; only the ranges
whose ASN is on a hosting or VPN ASN list can set a flag, so the snapshot keeps those ranges (and their
lines verbatim), the CIDR lists the discovery reads, and every licence and source file. An address
gets the same flags and provider label from the snapshot as from the full folder (tests check the
flag tables segment by segment); ``asn`` / ``as_org`` are filled only for hosted ranges.

    .venv/bin/python scripts/make_ip_snapshot.py [--src DIR] [--out DIR]

(defaults: ../shared/data/ip_intel and detector/defaults/ip_intel).
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASN_LISTS = ("x4bnet_lists_vpn/input/datacenter/ASN.txt", "x4bnet_lists_vpn/input/vpn/ASN.txt")
ASN_TABLES = ("ip-location-db_asn/asn-ipv4.csv", "ip-location-db_asn/asn-ipv6.csv")
#: Copied as they are: licences, sources, and the lists ``discover_sources`` reads.
KEEP_NAMES = ("LICENSE", "README.md", "SOURCE_COMMIT.txt", "SOURCE.txt", "MODIFICATIONS", "package.json")
SKIP_DIRS = ("lord-alfred_ipranges/all",)  # the union of the provider lists; discovery skips it
_ASN_RE = re.compile(r"(?i)^(?:as)?\s*([0-9]{1,12})")


def hosted_asns(src: Path) -> set[int]:
    """ASNs on the hosting and VPN lists."""
    out: set[int] = set()
    for rel in ASN_LISTS:
        for line in (src / rel).read_text(encoding="utf-8").splitlines():
            m = _ASN_RE.match(line.strip())
            if m:
                out.add(int(m.group(1)))
    return out


def build(src: Path, out: Path) -> dict[str, int]:
    """Write the snapshot to ``out`` (replacing it); return bytes per top-level folder."""
    if out.exists():
        shutil.rmtree(out)
    asns = hosted_asns(src)
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if not path.is_file() or any(str(rel).startswith(s) for s in SKIP_DIRS):
            continue
        dest = out / rel
        keep = (
            path.name in KEEP_NAMES
            or path.name.endswith("LICENSE")
            or path.suffix == ".txt"
            or str(rel) in ASN_TABLES
        )
        if not keep:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if str(rel) in ASN_TABLES:
            with path.open(encoding="utf-8") as fin, dest.open("w", encoding="utf-8") as fout:
                fout.writelines(line for line in fin if int(line.split(",", 3)[2]) in asns)
        else:
            shutil.copyfile(path, dest)
    sizes: dict[str, int] = {}
    for f in out.rglob("*"):
        if f.is_file():
            top = f.relative_to(out).parts[0]
            sizes[top] = sizes.get(top, 0) + f.stat().st_size
    return sizes


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=ROOT.parent / "shared" / "data" / "ip_intel")
    ap.add_argument("--out", type=Path, default=ROOT / "detector" / "defaults" / "ip_intel")
    args = ap.parse_args()
    sizes = build(args.src, args.out)
    for top, n in sorted(sizes.items()):
        print(f"{top}: {n / 1e6:.2f} MB")
    print(f"total: {sum(sizes.values()) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
