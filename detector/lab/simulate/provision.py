"""Campaign provisioning: the infrastructure a cluster shares, its members and their request times.

Members sign up in bursts before the campaign starts; a share is banned during the run and replaced at
once by freshly created accounts. The reseller and network knobs act here: ``via_router`` makes the
members sub-accounts of the world's legitimate router, ``rotating_proxy`` sends them through the world's
residential proxy exits (both shared with honest users).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from detector.lab.simulate import clock, net
from detector.lab.simulate.block import I64
from detector.lab.simulate.clock import DAY_MS, HOUR_MS, MIN_MS
from detector.lab.simulate.params import FamilyParams
from detector.lab.simulate.world import Account, Campaign, World


@dataclass(frozen=True)
class Infra:
    """What a campaign's accounts share (or deliberately do not)."""

    reseller: str | None
    cards: list[str] | None
    pool: list[str]
    client: net.Client
    tiers: dict[str, float]
    countries: tuple[str, ...]
    verified_p: float
    #: One org for every member (a router's tenant); ``None``: each member its own.
    org: str | None = None
    #: Rotating residential proxy exits each member picks from; empty: ``pool`` or own addresses.
    exits: tuple[str, ...] = ()


@dataclass(frozen=True)
class Members:
    """Member accounts and the window in which each sends traffic."""

    idx: I64
    active_from: I64
    active_to: I64


def _weighted(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys])
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def member(
    w: World, rng: np.random.Generator, camp: Campaign, family: str, infra: Infra, created: int
) -> int:
    """Create one member account on the campaign's infrastructure; returns its index."""
    if infra.cards is None:
        card = w.new_id("pf", 12)
    else:
        zipf = 1.0 / np.arange(1, len(infra.cards) + 1)
        card = infra.cards[int(rng.choice(len(infra.cards), p=zipf / zipf.sum()))]
    country = infra.countries[int(rng.integers(len(infra.countries)))]
    if infra.exits:  # a rotating proxy: each request leaves through one of the account's sticky exits
        k = min(len(infra.exits), int(rng.integers(20, 61)))
        ips = [str(x) for x in rng.choice(np.asarray(infra.exits, dtype=np.object_), size=k, replace=False)]
    else:
        ips = infra.pool or [
            net.residential_ip(rng, country if country in net.COUNTRIES else "US", w.params.ipv6_fraction)
            for _ in range(int(rng.integers(1, 3)))
        ]
    idx = w.add(
        Account(
            w.new_id("acct"),
            family,
            created,
            infra.org or w.new_id("org", 8),
            [w.new_id("key", 12)],
            card,
            country,
            _weighted(rng, infra.tiers),
            bool(rng.random() < infra.verified_p),
            infra.reseller,
            ips,
            infra.client,
            camp.campaign_id,
            camp.campaign_type,
        )
    )
    camp.members.append(idx)
    return idx


def cards(w: World, p: FamilyParams) -> list[str] | None:
    """The cluster's shared payment instruments; ``None``: every account pays with its own."""
    return [w.new_id("pf", 12) for _ in range(p.cards_per_cluster)] if p.cards_per_cluster else None


def pool(w: World, rng: np.random.Generator, p: FamilyParams, providers: tuple[str, ...]) -> list[str]:
    """The cluster's shared proxy/datacenter addresses; empty: each account on its own residential IPs."""
    return net.proxy_pool(rng, p.ip_pool_size, providers, w.params.ipv6_fraction) if p.ip_pool_size else []


def apply_knobs(w: World, p: FamilyParams, infra: Infra) -> Infra:
    """The reseller and network knobs: through the world's router (its org, card, egress, client build,
    tier; sub-accounts inherit the tenant's verification), or through the residential proxy exits; the
    verified knob sets the members' verified share outside the router."""
    if p.verified_share is not None:
        infra = replace(infra, verified_p=p.verified_share)
    if p.via_router:
        r = w.router()
        return replace(
            infra,
            reseller=r.reseller_id,
            cards=[r.payment],
            pool=list(r.egress),
            client=r.client,
            tiers={"reseller": 1.0},
            verified_p=1.0,
            org=r.org_id,
        )
    if p.rotating_proxy:
        return replace(infra, pool=[], exits=tuple(w.proxy_exits()))
    return infra


def _bought_created(start_ms: int, n: int, p: FamilyParams) -> I64 | None:
    """Bought aged seats' sign-up instants (``bought_age_days``, from their own stream: the campaign's
    stream draws what it drew for the bursts, so the rest of the run stays as it was); ``None``: bursts."""
    if p.bought_age_days is None:
        return None
    lo, hi = p.bought_age_days
    ages = np.random.default_rng([p.bought_seed, 21]).uniform(lo, hi, n)
    return (start_ms - ages * DAY_MS).astype(np.int64)


def provision(
    w: World, rng: np.random.Generator, camp: Campaign, family: str, p: FamilyParams, infra: Infra
) -> Members:
    """Create the initial members (in sign-up bursts) and their churn replacements."""
    infra = apply_knobs(w, p, infra)
    n0 = w.scaled(p.cluster_size)
    centers = camp.start_ms - (rng.uniform(1.0, 96.0, p.signup_bursts) * HOUR_MS).astype(np.int64)
    centers -= int(p.account_age_days * DAY_MS)  # bought or long-parked accounts
    bought = _bought_created(camp.start_ms, n0, p)
    idx, lo, hi = [], [], []
    for i in range(n0):
        created = int(centers[i % p.signup_bursts] + rng.random() * p.signup_spread_minutes * MIN_MS)
        created = created if bought is None else int(bought[i])
        idx.append(member(w, rng, camp, family, infra, created))
        lo.append(max(camp.start_ms, created + 10 * MIN_MS) + int(rng.random() * 2 * HOUR_MS))
        hi.append(w.end_ms)
    n_churn = round(n0 * p.churn_fraction)
    for i in rng.choice(n0, size=min(n_churn, n0), replace=False):
        ban = int(lo[i] + 2 * HOUR_MS + rng.random() * max(0, w.end_ms - lo[i] - 2 * HOUR_MS))
        if ban >= w.end_ms:
            continue
        hi[i] = ban
        created = ban + int(rng.uniform(2, 45) * MIN_MS)
        start = created + int(rng.uniform(5, 30) * MIN_MS)
        if start < w.end_ms:
            idx.append(member(w, rng, camp, family, infra, created))
            lo.append(start)
            hi.append(w.end_ms)
    return Members(np.asarray(idx, np.int64), np.asarray(lo, np.int64), np.asarray(hi, np.int64))


def independent(w: World, rng: np.random.Generator, m: Members, rate: float) -> tuple[I64, I64]:
    """Each member sends Poisson traffic uniformly over its active window, all 24 hours."""
    k = clock.counts(rng, rate * (m.active_to - m.active_from) / DAY_MS)
    acct = np.repeat(m.idx, k)
    lo, hi = np.repeat(m.active_from, k), np.repeat(m.active_to, k)
    return acct, lo + (rng.random(acct.shape[0]) * (hi - lo)).astype(np.int64)


def waves(w: World, rng: np.random.Generator, m: Members, rate: float, interval_s: float) -> tuple[I64, I64]:
    """A dispatcher load-balancing across the cluster: every ``interval_s`` a wave of requests lands on
    distinct active members within a few seconds (synchronised timing)."""
    step = int(interval_s * 1000)
    acct_parts, ts_parts = [], []
    for t in range(int(m.active_from.min()), w.end_ms, step):
        t0 = t + int(rng.integers(-step // 10, step // 10 + 1))
        active = m.idx[(m.active_from <= t0) & (m.active_to > t0)]
        if active.shape[0] == 0:
            continue
        k = min(int(rng.poisson(active.shape[0] * rate * interval_s / 86400.0)), active.shape[0])
        acct_parts.append(rng.choice(active, size=k, replace=False))
        ts_parts.append(t0 + rng.integers(0, 4000, k))
    if not acct_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    acct, ts = np.concatenate(acct_parts), np.concatenate(ts_parts)
    keep = (ts >= w.start_ms) & (ts < w.end_ms)
    return acct[keep].astype(np.int64), ts[keep].astype(np.int64)
