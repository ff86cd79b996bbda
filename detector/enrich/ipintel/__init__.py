"""IP enrichment: /24 and /48 prefixes, ASN and organisation, datacenter / VPN / proxy / Tor flags.

Vectorised with polars: IP text is parsed in polars (IPv4 to ``UInt32``, IPv6 to its upper 64 bits as
``UInt64``, ``::`` expanded in polars), and intel lookups are backward ``join_asof`` on the sorted, disjoint
range starts of each table, followed by an ``ip <= end`` check. Everything runs once per distinct address
of a batch and is joined back.

Typical use::

    intel = IpIntel.from_dir("/data/ip_intel")          # or IpIntel.load([IpSource(...), ...])
    log.info(intel.describe())
    events = add_ip_columns(events, intel)              # or add_ip_columns(events, None): no intel

Added columns (:data:`IP_COLUMNS`): ``ip_version`` Int8, ``ip_prefix`` String, ``asn`` Int64, ``as_org``
String, ``is_datacenter`` / ``is_vpn`` / ``is_proxy`` / ``is_tor`` Boolean, ``ip_provider`` String (the label
of the cidr_list source covering the address, e.g. ``amazon``).

Data attribution: the ASN tables of ip-location-db derive from RouteViews, NRO and DB-IP (CC BY 4.0);
attribute them where results are shown.
"""

from ._columns import FLAG_COLUMNS, IP_COLUMNS, add_ip_columns, ip_prefix_exprs
from ._intel import FLAG_BITS, IpIntel
from ._readers import MAX_ISSUES_PER_FILE
from ._sources import Flag, IpIntelError, IpSource, SourceKind, SourceSummary, discover_sources

__all__ = [
    "FLAG_BITS",
    "FLAG_COLUMNS",
    "IP_COLUMNS",
    "MAX_ISSUES_PER_FILE",
    "Flag",
    "IpIntel",
    "IpIntelError",
    "IpSource",
    "SourceKind",
    "SourceSummary",
    "add_ip_columns",
    "discover_sources",
    "ip_prefix_exprs",
]
