"""Attack campaigns, one generator per family, each a labelled cluster of accounts.

Members sign up in bursts before the campaign starts; a share is banned during the run and replaced
at once by freshly created accounts, so sign-ups keep arriving. Each family mixes a share of
ordinary-looking requests (``blend_ratio``) into its extraction traffic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from detector.lab.simulate import clock, net
from detector.lab.simulate.block import I64, Block, Bool, Obj, concat, make_block
from detector.lab.simulate.clock import DAY_MS, HOUR_MS, MIN_MS
from detector.lab.simulate.content import casual_content, pick_langs
from detector.lab.simulate.params import CAMPAIGN_TYPES, FamilyParams, SimParams
from detector.lab.simulate.personas import agent_block
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


def _member(
    w: World, rng: np.random.Generator, camp: Campaign, family: str, infra: Infra, created: int
) -> int:
    if infra.cards is None:
        card = w.new_id("pf", 12)
    else:
        zipf = 1.0 / np.arange(1, len(infra.cards) + 1)
        card = infra.cards[int(rng.choice(len(infra.cards), p=zipf / zipf.sum()))]
    country = infra.countries[int(rng.integers(len(infra.countries)))]
    ips = infra.pool or [
        net.residential_ip(rng, country if country in net.COUNTRIES else "US", w.params.ipv6_fraction)
        for _ in range(int(rng.integers(1, 3)))
    ]
    idx = w.add(
        Account(
            w.new_id("acct"),
            family,
            created,
            w.new_id("org", 8),
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


def _cards(w: World, p: FamilyParams) -> list[str] | None:
    """The cluster's shared payment instruments; ``None``: every account pays with its own."""
    return [w.new_id("pf", 12) for _ in range(p.cards_per_cluster)] if p.cards_per_cluster else None


def _pool(w: World, rng: np.random.Generator, p: FamilyParams, providers: tuple[str, ...]) -> list[str]:
    """The cluster's shared proxy/datacenter addresses; empty: each account on its own residential IPs."""
    return net.proxy_pool(rng, p.ip_pool_size, providers, w.params.ipv6_fraction) if p.ip_pool_size else []


def _provision(
    w: World, rng: np.random.Generator, camp: Campaign, family: str, p: FamilyParams, infra: Infra
) -> Members:
    """Create the initial members (in sign-up bursts) and their churn replacements."""
    n0 = w.scaled(p.cluster_size)
    centers = camp.start_ms - (rng.uniform(1.0, 96.0, p.signup_bursts) * HOUR_MS).astype(np.int64)
    centers -= int(p.account_age_days * DAY_MS)  # bought or long-parked accounts
    idx, lo, hi = [], [], []
    for i in range(n0):
        created = int(centers[i % p.signup_bursts] + rng.random() * p.signup_spread_minutes * MIN_MS)
        idx.append(_member(w, rng, camp, family, infra, created))
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
            idx.append(_member(w, rng, camp, family, infra, created))
            lo.append(start)
            hi.append(w.end_ms)
    return Members(np.asarray(idx, np.int64), np.asarray(lo, np.int64), np.asarray(hi, np.int64))


def _independent(w: World, rng: np.random.Generator, m: Members, rate: float) -> tuple[I64, I64]:
    """Each member sends Poisson traffic uniformly over its active window, all 24 hours."""
    k = clock.counts(rng, rate * (m.active_to - m.active_from) / DAY_MS)
    acct = np.repeat(m.idx, k)
    lo, hi = np.repeat(m.active_from, k), np.repeat(m.active_to, k)
    return acct, lo + (rng.random(acct.shape[0]) * (hi - lo)).astype(np.int64)


def _waves(w: World, rng: np.random.Generator, m: Members, rate: float, interval_s: float) -> tuple[I64, I64]:
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


def _blend(
    w: World,
    rng: np.random.Generator,
    acct: I64,
    ts: I64,
    ratio: float,
    langs: dict[str, float],
    main: Callable[[np.ndarray], Block],
) -> Block:
    """Split requests into ordinary-looking ones (share ``ratio``) and the campaign's own (``main``)."""
    mask: Bool = np.less(rng.random(acct.shape[0]), ratio)
    ordinary = casual_content(
        w, rng, acct[mask], ts[mask], w.models(rng, ts[mask]), pick_langs(rng, int(mask.sum()), langs)
    )
    return concat([main(~mask), ordinary])


def _near_max(w: World, rng: np.random.Generator, model: Obj) -> I64:
    top = w.model_max(model)
    return np.where(rng.random(model.shape[0]) < 0.8, top, top - 192)


def cot_hydra(w: World, rng: np.random.Generator, camp: Campaign, p: FamilyParams) -> Block:
    """Chain-of-thought extraction through a reseller's hydra cluster: one reseller, a few cards, a proxy
    pool, one client build; synchronised 24h waves; CoT wrappers, rubric grading and identity probes."""
    infra = Infra(
        w.new_id("rs", 6),
        _cards(w, p),
        _pool(w, rng, p, ("aws", "digitalocean", "hetzner", "ovh", "vultr")),
        net.custom_client(rng, "python-httpx/0.27.0", "vendor-python/0.36.2"),
        {"reseller": 0.5, "startup": 0.2, "education": 0.15, "research": 0.15},
        ("SG", "HK", "US", "MY", "AE", "KZ"),
        0.3,
    )
    m = _provision(w, rng, camp, "cot_hydra", p, infra)
    acct, ts = _waves(w, rng, m, p.requests_per_account_day, p.wave_interval_s or 300.0)
    temperature = float(rng.choice([0.0, 0.0, 0.6]))
    sys_cot, sys_rubric = w.new_id("sp", 8), w.new_id("sp", 8)

    def main(sel: np.ndarray) -> Block:
        a, t = acct[sel], ts[sel]
        k = a.shape[0]
        model = w.models(rng, t, (0.0, 0.3, 0.7), p.pivot_share, p.pivot_ramp_hours)
        kind = rng.random(k)
        texts, langs = w.bank.cot(rng, k)
        rub = kind >= 0.75
        for i, txt in zip(np.flatnonzero(rub), w.bank.rubric(rng, int(rub.sum())), strict=True):
            texts[i], langs[i] = txt, "en"
        ident = kind >= 0.97
        probes, plangs = w.bank.identity(rng, int(ident.sum()))
        for i, txt, lang in zip(np.flatnonzero(ident), probes, plangs, strict=True):
            texts[i], langs[i] = txt, lang
        sys_hash = np.where(rub & ~ident, sys_rubric, sys_cot).astype(np.object_)
        return make_block(
            a,
            t,
            model,
            texts,
            langs,
            max_tokens=_near_max(w, rng, model),
            temperature=temperature,
            thinking=True,
            sys_hash=sys_hash,
            out_median=np.where(rub, 800.0, 4500.0),
            history=0.0,
        )

    return _blend(w, rng, acct, ts, p.blend_ratio, {"en": 0.7, "zh": 0.3}, main)


def agentic_pivot(w: World, rng: np.random.Generator, camp: Campaign, p: FamilyParams) -> Block:
    """Agentic coding / tool-use extraction: many tools, long fast sessions around the clock; after the
    new model launches, ``pivot_share`` of sessions move to it within ``pivot_ramp_hours``."""
    infra = Infra(
        None,
        _cards(w, p),
        _pool(w, rng, p, ("aws", "gcp", "alibaba", "tencent")),
        net.custom_client(rng, "node-fetch/3.3.2", "vendor-typescript/0.30.1"),
        {"startup": 0.6, "standard": 0.4},
        ("SG", "US", "HK", "GB"),
        0.5,
    )
    m = _provision(w, rng, camp, "agentic_pivot", p, infra)
    mean_len = 30.0
    n_sess = clock.counts(rng, p.requests_per_account_day * (m.active_to - m.active_from) / DAY_MS / mean_len)
    owner = np.repeat(m.idx, n_sess)
    lo, hi = np.repeat(m.active_from, n_sess), np.repeat(m.active_to, n_sess)
    starts = lo + (rng.random(owner.shape[0]) * (hi - lo)).astype(np.int64)
    ts, sess, pos = clock.sessions(rng, starts, rng.geometric(1.0 / mean_len, owner.shape[0]), 6.0, 2.0)
    sess_model = w.models(rng, starts, (0.0, 0.4, 0.6), p.pivot_share, p.pivot_ramp_hours)
    acct, model = owner[sess], sess_model[sess]
    keep = ts < w.end_ms
    acct, ts, pos, model = acct[keep], ts[keep], pos[keep], model[keep]
    tools, sys_hash = int(rng.choice([38, 45])), w.new_id("sp", 8)

    def main(sel: np.ndarray) -> Block:
        return agent_block(
            w,
            rng,
            acct[sel],
            ts[sel],
            pos[sel],
            model[sel],
            tools=tools,
            thinking_share=0.6,
            throttle=0.01,
            max_tokens=32000,
            sys_hash=sys_hash,
        )

    return _blend(w, rng, acct, ts, p.blend_ratio, {"en": 1.0}, main)


def multilingual_coercion(w: World, rng: np.random.Generator, camp: Campaign, p: FamilyParams) -> Block:
    """Reasoning-trace coercion, largely non-English: each account works in one or two languages."""
    infra = Infra(
        None,
        _cards(w, p),
        _pool(w, rng, p, ("alibaba", "tencent", "hetzner", "digitalocean")),
        net.custom_client(rng, "Vendor/Python 0.38.0", "vendor-python/0.38.0"),
        {"free": 0.4, "standard": 0.4, "education": 0.2},
        ("HK", "SG", "RU", "KR", "VN", "KZ"),
        0.4,
    )
    m = _provision(w, rng, camp, "multilingual_coercion", p, infra)
    langs_pool = [x for x in w.bank.coercion_langs if x != "en"]
    own = {int(a): list(rng.choice(langs_pool, size=int(rng.integers(1, 3)), replace=False)) for a in m.idx}
    acct, ts = _independent(w, rng, m, p.requests_per_account_day)
    temperature = float(rng.choice([0.6, 0.7]))

    def main(sel: np.ndarray) -> Block:
        a, t = acct[sel], ts[sel]
        k = a.shape[0]
        langs = [str(own[int(x)][int(rng.integers(len(own[int(x)])))]) for x in a]
        model = w.models(rng, t, (0.2, 0.3, 0.5), p.pivot_share, p.pivot_ramp_hours)
        return make_block(
            a,
            t,
            model,
            w.bank.coercion(rng, langs),
            langs,
            max_tokens=w.cap(model, np.full(k, 16384)),
            temperature=temperature,
            thinking=rng.random(k) < 0.5,
            refusal_p=0.25,
            out_median=2500.0,
            history=0.0,
        )

    return _blend(w, rng, acct, ts, p.blend_ratio, {"zh": 0.4, "ru": 0.3, "ko": 0.3}, main)


def low_and_slow(w: World, rng: np.random.Generator, camp: Campaign, p: FamilyParams) -> Block:
    """Careful chain-of-thought harvesting: own card and residential IP per account, human hours, heavy
    blending, low rate; linked only by a template skeleton, a sign-up burst and one client build."""
    infra = Infra(
        None,
        _cards(w, p),
        _pool(w, rng, p, ("aws", "gcp", "hetzner")),
        net.custom_client(rng, "aiohttp/3.9.5 Python/3.11", "vendor-python/0.37.1"),
        {"standard": 0.6, "free": 0.4},
        ("US", "US", "GB"),
        0.8,
    )
    m = _provision(w, rng, camp, "low_and_slow", p, infra)
    mean_len = 3.0
    n_sess = clock.counts(rng, p.requests_per_account_day * (m.active_to - m.active_from) / DAY_MS / mean_len)
    owner = np.repeat(m.idx, n_sess)
    tz = np.array([net.COUNTRIES[w.accounts[int(a)].country or "US"].tz for a in owner])
    starts = clock.local_times(
        rng,
        owner.shape[0],
        np.repeat(m.active_from, n_sess),
        np.repeat(m.active_to, n_sess),
        tz,
        clock.HUMAN,
        weekend=0.6,
    )
    ts, sess, pos = clock.sessions(rng, starts, rng.geometric(1.0 / mean_len, owner.shape[0]), 90.0, 10.0)
    acct = owner[sess]
    keep = ts < w.end_ms
    acct, ts, pos = acct[keep], ts[keep], pos[keep]
    tag = w.new_id("T", 4).upper()

    def main(sel: np.ndarray) -> Block:
        a, t = acct[sel], ts[sel]
        model = w.models(rng, t, (0.0, 0.4, 0.6), p.pivot_share, p.pivot_ramp_hours)
        return make_block(
            a,
            t,
            model,
            w.bank.skeleton(rng, a.shape[0], tag),
            "en",
            turns=1 + 2 * pos[sel],
            max_tokens=w.cap(model, np.full(a.shape[0], 4096)),
            temperature=0.7,
            stream=True,
            out_median=1100.0,
            history=250.0,
        )

    return _blend(w, rng, acct, ts, p.blend_ratio, {"en": 1.0}, main)


def logprob_harvest(w: World, rng: np.random.Generator, camp: Campaign, p: FamilyParams) -> Block:
    """Distribution harvesting: logprobs with high top_logprobs, n > 1, fixed temperature, shared infra."""
    infra = Infra(
        None,
        _cards(w, p),
        _pool(w, rng, p, ("aws", "gcp")),
        net.custom_client(rng, "OpenAI/Python 1.40.0", "openai-python/1.40.0", "/v1/chat/completions"),
        {"research": 0.5, "startup": 0.5},
        ("US", "SG"),
        0.5,
    )
    m = _provision(w, rng, camp, "logprob_harvest", p, infra)
    if p.wave_interval_s > 0:
        acct, ts = _waves(w, rng, m, p.requests_per_account_day, p.wave_interval_s)
    else:
        acct, ts = _independent(w, rng, m, p.requests_per_account_day)

    def main(sel: np.ndarray) -> Block:
        a, t = acct[sel], ts[sel]
        k = a.shape[0]
        model = w.models(rng, t, (0.5, 0.3, 0.2), p.pivot_share, p.pivot_ramp_hours)
        return make_block(
            a,
            t,
            model,
            w.bank.instructions(rng, k),
            "en",
            n=rng.choice(np.array([4, 8]), size=k),
            logprobs=1,
            top_logprobs=20,
            temperature=1.0,
            max_tokens=rng.choice(np.array([256, 512]), size=k),
            out_median=120.0,
            history=0.0,
        )

    return _blend(w, rng, acct, ts, p.blend_ratio, {"en": 1.0}, main)


FAMILY_GENERATORS: dict[str, Callable[[World, np.random.Generator, Campaign, FamilyParams], Block]] = {
    "cot_hydra": cot_hydra,
    "agentic_pivot": agentic_pivot,
    "multilingual_coercion": multilingual_coercion,
    "low_and_slow": low_and_slow,
    "logprob_harvest": logprob_harvest,
}


def run_families(w: World, params: SimParams) -> list[Block]:
    """Every campaign of every family, in a fixed order."""
    blocks = []
    for family, gen in FAMILY_GENERATORS.items():
        fp: FamilyParams = getattr(params, family)
        for i in range(fp.campaigns):
            offset = fp.start_offsets[i % len(fp.start_offsets)] if fp.start_offsets else 0.0
            start = w.start_ms + int(offset * (w.end_ms - w.start_ms))
            camp = w.new_campaign(family, CAMPAIGN_TYPES[family], start)
            blocks.append(gen(w, w.rng("campaign", family, str(i)), camp, fp))
    return blocks
