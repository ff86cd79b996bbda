"""Network and client material: real-looking address prefixes, TLS fingerprints, SDK strings.

Datacenter prefixes lie in real cloud ranges and residential prefixes in real consumer ISPs' ranges
(checked against a RouteViews/DB-IP ASN table when written), so IP-intelligence enrichment sees
them as it would see real traffic. Addresses inside each prefix are random.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

#: Provider -> (IPv4 /16 prefixes, IPv6 /32-ish prefixes).
DATACENTER: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "aws": (("3.80", "3.208", "18.204", "52.14", "54.160", "13.228"), ("2600:1f18",)),
    "gcp": (("34.67", "34.102", "35.184"), ("2600:1900",)),
    "digitalocean": (("104.131", "159.89", "167.99", "138.197"), ("2604:a880",)),
    "hetzner": (("95.216", "116.202", "88.198", "94.130", "176.9"), ("2a01:4f8",)),
    "ovh": (("51.38", "145.239"), ()),
    "vultr": (("45.76",), ()),
    "linode": (("172.104", "139.162"), ()),
    "alibaba": (("47.74", "8.210"), ()),
    "tencent": (("43.128",), ()),
    "scaleway": (("62.210",), ()),
}


@dataclass(frozen=True)
class Country:
    """A billing country with its time zone and consumer-ISP prefixes."""

    code: str
    tz: float
    v4: tuple[str, ...]
    v6: tuple[str, ...] = ()


COUNTRIES: dict[str, Country] = {
    c.code: c
    for c in (
        Country("US", -6.0, ("73.15", "98.207", "24.6", "99.43", "107.77"), ("2601:640",)),
        Country("GB", 0.0, ("86.128", "81.129", "2.96")),
        Country("AU", 10.0, ("101.180", "60.240", "58.7", "220.233")),
        Country("IN", 5.5, ("49.36", "106.200")),
        Country("CN", 8.0, ("113.87", "116.24", "183.6", "123.120")),
        Country("HK", 8.0, ("1.36",)),
        Country("ES", 1.0, ("83.45", "88.12", "79.116")),
        Country("MX", -6.0, ("187.190", "201.141")),
        Country("DE", 1.0, ("79.200", "87.150", "93.200"), ("2003:e0", "2a02:8108")),
        Country("FR", 1.0, ("90.12", "92.150", "82.64"), ("2a01:cb00",)),
        Country("RU", 3.0, ("95.24", "178.66"), ("2a00:1370",)),
        Country("JP", 9.0, ("153.220", "126.10"), ("2400:4050",)),
        Country("BR", -3.0, ("177.80", "189.40"), ("2804:14c",)),
        Country("SA", 3.0, ("188.48", "109.166")),
        Country("EG", 2.0, ("41.40", "197.45")),
        Country("KR", 9.0, ("121.130", "175.210"), ("2001:e60",)),
        Country("VN", 7.0, ("118.70", "27.64"), ("2001:ee0",)),
        Country("IT", 1.0, ("151.38", "5.90")),
    )
}

#: Prompt language -> (countries, weights) its speakers bill from.
LANG_COUNTRIES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "en": (("US", "GB", "AU", "IN"), (0.6, 0.2, 0.1, 0.1)),
    "zh": (("CN", "HK"), (0.85, 0.15)),
    "es": (("ES", "MX"), (0.5, 0.5)),
    "de": (("DE",), (1.0,)),
    "fr": (("FR",), (1.0,)),
    "ru": (("RU",), (1.0,)),
    "ja": (("JP",), (1.0,)),
    "pt": (("BR",), (1.0,)),
    "ar": (("SA", "EG"), (0.5, 0.5)),
    "ko": (("KR",), (1.0,)),
}

#: University networks (one NAT address each) and office prefixes (business ISPs).
UNIVERSITY_V4: tuple[str, ...] = ("128.32", "171.64")
OFFICE_V4: tuple[str, ...] = ("12.0", "62.2")


def v4(rng: np.random.Generator, prefix16: str) -> str:
    """A random host address inside an IPv4 /16 given as ``"a.b"``."""
    c, d = rng.integers(0, 256), rng.integers(1, 255)
    return f"{prefix16}.{c}.{d}"


def v6(rng: np.random.Generator, prefix: str) -> str:
    """A random address under an IPv6 prefix given as its leading groups (``"2601:640"``)."""
    groups = [int(g, 16) for g in prefix.split(":")]
    groups += [int(x) for x in rng.integers(0, 0x10000, 8 - len(groups))]
    value = 0
    for g in groups:
        value = (value << 16) | g
    return ipaddress.IPv6Address(value).compressed


def residential_ip(rng: np.random.Generator, country: str, ipv6_fraction: float) -> str:
    """A consumer address in ``country``; IPv6 with probability ``ipv6_fraction`` where the ISP has it."""
    c = COUNTRIES[country]
    if c.v6 and rng.random() < ipv6_fraction * 2.5:
        return v6(rng, c.v6[int(rng.integers(len(c.v6)))])
    return v4(rng, c.v4[int(rng.integers(len(c.v4)))])


def datacenter_ip(rng: np.random.Generator, providers: tuple[str, ...], ipv6_fraction: float) -> str:
    """A cloud address at one of ``providers``; IPv6 with probability ``ipv6_fraction`` where offered."""
    p4, p6 = DATACENTER[providers[int(rng.integers(len(providers)))]]
    if p6 and rng.random() < ipv6_fraction:
        return v6(rng, p6[int(rng.integers(len(p6)))])
    return v4(rng, p4[int(rng.integers(len(p4)))])


def proxy_pool(
    rng: np.random.Generator, size: int, providers: tuple[str, ...], ipv6_fraction: float
) -> list[str]:
    """A proxy pool: ``size`` datacenter addresses clustered in a few /24s per provider."""
    subnets: list[str] = []
    for _ in range(max(1, size // 8)):
        p4, _p6 = DATACENTER[providers[int(rng.integers(len(providers)))]]
        subnets.append(f"{p4[int(rng.integers(len(p4)))]}.{rng.integers(0, 256)}")
    pool: list[str] = []
    for _ in range(size):
        if rng.random() < ipv6_fraction:
            pool.append(datacenter_ip(rng, providers, 1.0))
        else:
            pool.append(f"{subnets[int(rng.integers(len(subnets)))]}.{rng.integers(2, 254)}")
    return sorted(set(pool))


@dataclass(frozen=True)
class Client:
    """What the gateway sees of the calling software."""

    user_agent: str | None
    tls: str | None
    sdk: str | None
    endpoint: str


_TLS_PY = "t13d1715h2_5b57614c22b0_3d5424432f57"
_TLS_NODE = "t13d1516h2_8daaf6152771_e5627efa2ab1"
_TLS_CHROME = "t13d1516h2_8daaf6152771_02713d6af862"

#: Common clients of honest users, with their weights: many accounts share each one.
COMMON_CLIENTS: tuple[tuple[Client, float], ...] = (
    (Client("Vendor/Python 0.40.0", _TLS_PY, "vendor-python/0.40.0", "/v1/messages"), 30.0),
    (Client("Vendor/Python 0.39.0", _TLS_PY, "vendor-python/0.39.0", "/v1/messages"), 10.0),
    (Client("Vendor/JS 0.32.1", _TLS_NODE, "vendor-typescript/0.32.1", "/v1/messages"), 15.0),
    (Client("OpenAI/Python 1.54.3", _TLS_PY, "openai-python/1.54.3", "/v1/chat/completions"), 12.0),
    (Client("litellm/1.51.0", _TLS_PY, "litellm/1.51.0", "/v1/chat/completions"), 5.0),
    (Client("python-requests/2.32.3", "t13d1812h1_85036bcba153_b26ce05bbdd6", None, "/v1/messages"), 6.0),
    (Client("curl/8.5.0", "t13d3112h2_e8f1e7e78f70_6bebaf5329ac", None, "/v1/messages"), 3.0),
    (
        Client(
            "Go-http-client/2.0", "t13d1310h2_e8f1e7e78f70_3a4f4f1a9f6b", "vendor-go/0.1.2", "/v1/messages"
        ),
        4.0,
    ),
    (
        Client(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Safari/537.36",
            _TLS_CHROME,
            None,
            "/v1/messages",
        ),
        5.0,
    ),
)

#: The popular agentic coding tool every honest agentic_coder account runs (shared TLS + SDK).
CODING_TOOL = Client(
    "codepilot-cli/2.4.1 (darwin; arm64)", _TLS_NODE, "vendor-typescript/0.33.0", "/v1/messages"
)


def common_client(rng: np.random.Generator) -> Client:
    """One of the common honest clients, by popularity."""
    w = np.array([x[1] for x in COMMON_CLIENTS])
    return COMMON_CLIENTS[int(rng.choice(len(w), p=w / w.sum()))][0]


def custom_client(
    rng: np.random.Generator, user_agent: str, sdk: str | None, endpoint: str = "/v1/messages"
) -> Client:
    """A campaign's own client build: an uncommon TLS fingerprint shared by all its accounts."""
    a = int(rng.integers(10, 40))
    b = int(rng.integers(8, 20))
    h1 = "".join(f"{int(x):x}" for x in rng.integers(0, 16, 12))
    h2 = "".join(f"{int(x):x}" for x in rng.integers(0, 16, 12))
    return Client(user_agent, f"t13d{a}{b}h2_{h1}_{h2}", sdk, endpoint)
