"""IP-intelligence sources: what one file is (``IpSource``), what loading it gave (``SourceSummary``),
the error a missing or malformed one raises, and ``discover_sources``, which finds them in the layouts of
the public lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, model_validator

from detector.errors import DetectorError

Flag = Literal["datacenter", "vpn", "proxy", "tor"]
SourceKind = Literal["asn_ranges", "cidr_list", "asn_list"]


class IpIntelError(DetectorError, ValueError):
    """An IP-intel source is missing or malformed.

    ``issues`` lists every problem found (``path:line: what is wrong``), up to a cap per file; the
    exception text carries them all, one per line.
    """

    def __init__(self, message: str, issues: Sequence[str] = ()) -> None:
        self.issues: list[str] = list(issues)
        text = message if not self.issues else message + "\n  " + "\n  ".join(self.issues)
        super().__init__(text)


class IpSource(BaseModel):
    """One IP-intel file.

    * ``asn_ranges``: ``start,end,asn,org`` CSV (ip-location-db), IPv4 and/or IPv6 rows.
    * ``cidr_list``: one CIDR per line, ``#`` comments; every address in it gets ``flag``, and ``label``
      (a provider name such as ``amazon``) if given. ``flag`` is required.
    * ``asn_list``: ``AS<number> # name`` per line (x4bnet); every address whose ASN (from the
      ``asn_ranges`` sources) is listed gets ``flag`` (default ``datacenter``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path
    kind: SourceKind
    flag: Flag | None = None
    label: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_flag(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("kind") == "asn_list" and data.get("flag") is None:
            return {**data, "flag": "datacenter"}
        return data

    @model_validator(mode="after")
    def _check_kind(self) -> Self:
        if self.kind == "cidr_list" and self.flag is None:
            raise ValueError("a cidr_list source needs a flag (datacenter, vpn, proxy or tor)")
        if self.kind == "asn_ranges" and (self.flag is not None or self.label is not None):
            raise ValueError("an asn_ranges source takes neither flag nor label")
        if self.kind == "asn_list" and self.label is not None:
            raise ValueError("an asn_list source takes no label")
        return self


@dataclass(frozen=True)
class SourceSummary:
    """What was loaded from one source: ``v4`` / ``v6`` ranges (for ``asn_list``: ``v4`` is the number
    of ASNs and ``v6`` is 0), lines read, and seconds spent."""

    source: IpSource
    v4: int
    v6: int
    lines: int
    seconds: float


_FLAG_DIRS: dict[str, Flag] = {"datacenter": "datacenter", "vpn": "vpn", "proxy": "proxy", "tor": "tor"}
#: lord-alfred/ipranges provider folders that are not plain datacenter space.
_PROVIDER_FLAGS: dict[str, Flag] = {"protonvpn": "vpn", "apple-proxy": "proxy", "tor": "tor"}
_SKIP_DIRS = frozenset({"all"})  # the union of the other providers, with no label
_CIDR_NAMES = ("ipv4_merged.txt", "ipv6_merged.txt", "ipv4.txt", "ipv6.txt")


def discover_sources(path: str | Path) -> list[IpSource]:
    """Find IP-intel files under ``path`` in the known public layouts (best effort), sorted by path.

    * ip-location-db: ``asn-ipv4.csv`` / ``asn-ipv6.csv`` (any ``asn*.csv`` except the ``-num`` variants)
      -> ``asn_ranges``.
    * x4bnet/lists_vpn: ``<flag>/ipv4.txt``, ``<flag>/ipv6.txt`` (``output/datacenter``,
      ``output/vpn``) -> ``cidr_list`` with that flag; ``<flag>/ASN.txt`` (``input/...``) -> ``asn_list``.
    * lord-alfred/ipranges: ``<provider>/ipv4_merged.txt`` / ``ipv6_merged.txt`` (or the unmerged
      ``ipv4.txt`` / ``ipv6.txt`` when no merged file is there) -> ``cidr_list`` labelled with the
      provider; the flag is ``datacenter`` except ``protonvpn`` (vpn) and ``apple-proxy`` (proxy). The
      ``all`` folder (the union of the others) is skipped.

    Raises :class:`IpIntelError` when ``path`` is not a directory or holds none of these.
    """
    root = Path(path)
    if not root.is_dir():
        raise IpIntelError(f"{root}: not a directory")
    found: list[IpSource] = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if not p.is_file() or any(part.startswith(".") for part in rel):
            continue
        name, parent = p.name.lower(), p.parent.name.lower()
        if name.startswith("asn") and name.endswith(".csv") and "num" not in name:
            found.append(IpSource(path=p, kind="asn_ranges"))
        elif name == "asn.txt" and parent in _FLAG_DIRS:
            found.append(IpSource(path=p, kind="asn_list", flag=_FLAG_DIRS[parent]))
        elif name in _CIDR_NAMES:
            if "_merged" not in name and (p.parent / name.replace(".txt", "_merged.txt")).exists():
                continue
            if parent in _FLAG_DIRS:
                found.append(IpSource(path=p, kind="cidr_list", flag=_FLAG_DIRS[parent]))
            elif parent in _SKIP_DIRS or p.parent == root or (p.parent / "output").is_dir():
                continue  # an aggregate list, or x4bnet's legacy top-level copy of output/datacenter
            else:
                flag = _PROVIDER_FLAGS.get(parent, "datacenter")
                found.append(IpSource(path=p, kind="cidr_list", flag=flag, label=p.parent.name))
    if not found:
        raise IpIntelError(
            f"{root}: no IP-intel files found (expected asn-ipv4.csv / asn-ipv6.csv, "
            "<flag>/ipv4.txt and <flag>/ASN.txt, or <provider>/ipv4_merged.txt)"
        )
    return found
