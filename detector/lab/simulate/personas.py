"""Honest personas, including the ones that look like attackers (false-positive traps)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from detector.lab.simulate import clock, net, signups
from detector.lab.simulate.block import I64, Block, concat, make_block
from detector.lab.simulate.clock import DAY_MS, HOUR_MS, MIN_MS
from detector.lab.simulate.content import LANG_WEIGHTS, casual_content, event_langs, pick_langs
from detector.lab.simulate.params import (
    EvalHarnessParams,
    PersonaParams,
    ProductUsersParams,
    SharedAccountsParams,
    SimParams,
)
from detector.lab.simulate.world import Account, World


def _age_created(rng: np.random.Generator, w: World, median_days: float = 200.0) -> int:
    age = float(np.clip(rng.lognormal(np.log(median_days), 0.9), 1.0, 1500.0))
    return w.start_ms - int(age * DAY_MS) - int(rng.integers(0, DAY_MS))


#: Share of ordinary users who signed up in the last month: a growing service has many, and a detector
#: that learns "new account = attacker" must be caught out here, not in production.
NEW_SIGNUP_SHARE = 0.2


def _casual_created(rng: np.random.Generator, w: World) -> int:
    if rng.random() < NEW_SIGNUP_SHARE:
        return w.start_ms - int(rng.uniform(0.2, 30.0) * DAY_MS)
    return _age_created(rng, w)


def _keys(w: World, k: int) -> list[str]:
    return [w.new_id("key", 12) for _ in range(k)]


def _country(rng: np.random.Generator, lang: str) -> str:
    codes, weights = net.LANG_COUNTRIES[lang]
    p = np.asarray(weights)
    return codes[int(rng.choice(len(codes), p=p / p.sum()))]


def _tz(rng: np.random.Generator, country: str) -> float:
    if country == "US":
        return float(rng.choice([-5.0, -6.0, -7.0, -8.0]))
    return net.COUNTRIES[country].tz


def _human_sessions(
    w: World,
    rng: np.random.Generator,
    accts: list[int],
    rates: np.ndarray,
    tzs: np.ndarray,
    mean_len: float,
    gap_s: float,
    profile: np.ndarray = clock.HUMAN,
    weekend: float = 1.0,
) -> tuple[I64, I64, I64]:
    """Sessions of requests at human hours; returns (acct, ts, position in session)."""
    n_sess = clock.counts(rng, rates * w.days / mean_len, minimum=1)
    owner = np.repeat(np.asarray(accts, dtype=np.int64), n_sess)
    tz = np.repeat(tzs, n_sess)
    starts = clock.local_times(rng, owner.shape[0], w.start_ms, w.end_ms, tz, profile, weekend)
    lengths = rng.geometric(1.0 / mean_len, owner.shape[0])
    ts, sess, pos = clock.sessions(rng, starts, lengths, gap_s, gap_min_s=5.0)
    return owner[sess], ts, pos


def _chatty(
    w: World,
    rng: np.random.Generator,
    accts: list[int],
    primary: list[str],
    rates: np.ndarray,
    tzs: np.ndarray,
    p: PersonaParams,
    code_share: float,
    profile: np.ndarray = clock.HUMAN,
    weekend: float = 1.0,
) -> Block:
    """Everyday chat sessions for a group of accounts with the given primary languages."""
    owner, ts, pos = _human_sessions(w, rng, accts, rates, tzs, 3.0, 60.0, profile, weekend)
    lang_of = dict(zip(accts, primary, strict=True))
    langs = event_langs(rng, [lang_of[int(a)] for a in owner])
    model = w.models(rng, ts, adopt=p.new_model_adoption, adopt_hours=p.adoption_hours)
    return casual_content(
        w, rng, owner, ts, model, langs, turns=1 + 2 * pos, code_share=code_share, throttle=p.throttle_rate
    )


def casual(w: World, p: PersonaParams) -> Block:
    """Ordinary people: own residential IPs, their local diurnal rhythm, many languages."""
    rng = w.rng("persona", "casual")
    n = w.scaled(p.accounts)
    accts, primary, tzs = [], pick_langs(rng, n), []
    for lang in primary:
        country = _country(rng, lang)
        ips = [net.residential_ip(rng, country, w.params.ipv6_fraction)]
        if rng.random() < 0.4:
            ips.append(net.residential_ip(rng, country, w.params.ipv6_fraction))
        tier = "free" if rng.random() < 0.55 else "standard"
        pay = w.new_id("pf", 12) if tier == "standard" or rng.random() < 0.5 else None
        accts.append(
            w.add(
                Account(
                    w.new_id("acct"),
                    "casual",
                    _casual_created(rng, w),
                    w.new_id("org", 8),
                    _keys(w, int(rng.integers(1, 3))),
                    pay,
                    country,
                    tier,
                    bool(rng.random() < 0.85),
                    None,
                    ips,
                    net.common_client(rng),
                )
            )
        )
        tzs.append(_tz(rng, country))
    rates = clock.lognormal_rates(rng, p.requests_per_day, p.rate_sigma, n)
    return _chatty(w, rng, accts, primary, rates, np.asarray(tzs), p, code_share=0.15)


def app_backend(w: World, p: PersonaParams) -> Block:
    """One template with varying slots, steady volume around the clock from cloud IPs."""
    rng = w.rng("persona", "app_backend")
    blocks = []
    rates = clock.lognormal_rates(rng, p.requests_per_day, p.rate_sigma, w.scaled(p.accounts))
    app0 = int(rng.integers(w.bank.n_apps))
    for i, rate in enumerate(rates):
        provider = ("aws", "gcp", "digitalocean", "hetzner")[int(rng.integers(4))]
        ips = [
            net.datacenter_ip(rng, (provider,), w.params.ipv6_fraction)
            for _ in range(int(rng.integers(2, 5)))
        ]
        country = ("US", "DE", "GB", "FR")[int(rng.integers(4))]
        client = net.COMMON_CLIENTS[int(rng.choice([0, 2, 3]))][0]
        a = w.add(
            Account(
                w.new_id("acct"),
                "app_backend",
                _age_created(rng, w, 400.0),
                w.new_id("org", 8),
                _keys(w, 1),
                w.new_id("pf", 12),
                country,
                ("standard", "enterprise")[int(rng.integers(2))],
                True,
                None,
                ips,
                client,
            )
        )
        k = int(clock.counts(rng, np.array([rate * w.days]), minimum=1)[0])
        ts = clock.local_times(rng, k, w.start_ms, w.end_ms, net.COUNTRIES[country].tz, clock.SERVICE)
        model = w.base_models[int(rng.choice([0, 0, 1, 2]))]
        texts = w.bank.app(rng, app0 + i, k)
        blocks.append(
            make_block(
                np.full(k, a),
                ts,
                model,
                texts,
                "en",
                max_tokens=int(rng.choice([256, 512, 1024])),
                temperature=float(rng.choice([0.0, 0.2, 0.3])),
                sys_hash=w.new_id("sp", 8),
                out_median=150.0,
                history=0.0,
                throttle=p.throttle_rate,
            )
        )
    return concat(blocks)


def eval_harness(w: World, p: EvalHarnessParams) -> Block:
    """Benchmark runs: bursts of step-by-step math at temperature 0, thinking on, high max_tokens;
    extra bursts on the new model on its launch day."""
    rng = w.rng("persona", "eval_harness")
    blocks = []
    rates = clock.lognormal_rates(rng, p.requests_per_day, p.rate_sigma, w.scaled(p.accounts))
    for i, rate in enumerate(rates):
        ips = [
            net.datacenter_ip(rng, ("gcp", "aws"), w.params.ipv6_fraction)
            for _ in range(int(rng.integers(2, 4)))
        ]
        a = w.add(
            Account(
                w.new_id("acct"),
                "eval_harness",
                _age_created(rng, w, 300.0),
                w.new_id("org", 8),
                _keys(w, 2),
                w.new_id("pf", 12),
                "US",
                ("research", "enterprise")[i % 2],
                True,
                None,
                ips,
                net.COMMON_CLIENTS[0][0],
            )
        )
        n_b = int(clock.counts(rng, np.array([rate * w.days / p.burst_size]), minimum=1)[0])
        starts = clock.local_times(rng, n_b, w.start_ms, w.end_ms, -6.0, clock.OFFICE)
        models = [
            w.base_models[-1] if rng.random() < 0.6 else w.base_models[int(rng.integers(len(w.base_models)))]
            for _ in range(n_b)
        ]
        if w.launch_ms < w.end_ms:
            extra = p.launch_day_bursts
            hi = min(w.end_ms, w.launch_ms + 12 * HOUR_MS)
            starts = np.concatenate(
                [starts, w.launch_ms + (rng.random(extra) * (hi - w.launch_ms)).astype(np.int64)]
            )
            models += [w.params.new_model_id] * extra
        lengths = (p.burst_size * np.asarray(rng.uniform(0.5, 1.5, starts.shape[0]))).astype(np.int64)
        ts, sess, _ = clock.sessions(rng, starts, lengths, gap_mean_s=0.8, gap_min_s=0.05)
        model = np.asarray(models, dtype=np.object_)[sess]
        thinking = i % 4 != 3
        blocks.append(
            make_block(
                np.full(ts.shape[0], a),
                ts,
                model,
                w.bank.eval_prompts(rng, i, ts.shape[0]),
                "en",
                max_tokens=w.cap(model, np.full(ts.shape[0], 32000)),
                temperature=0.0,
                thinking=thinking,
                out_median=1800.0 if thinking else 700.0,
                history=0.0,
                throttle=p.throttle_rate,
            )
        )
    return concat(blocks)


def bulk_synthetic(w: World, p: PersonaParams) -> Block:
    """Legitimate bulk synthetic data: batch jobs of templated generation, n > 1 sometimes."""
    rng = w.rng("persona", "bulk_synthetic")
    blocks = []
    rates = clock.lognormal_rates(rng, p.requests_per_day, p.rate_sigma, w.scaled(p.accounts))
    for i, rate in enumerate(rates):
        ips = [
            net.datacenter_ip(rng, ("aws", "gcp"), w.params.ipv6_fraction)
            for _ in range(int(rng.integers(1, 4)))
        ]
        a = w.add(
            Account(
                w.new_id("acct"),
                "bulk_synthetic",
                _age_created(rng, w, 250.0),
                w.new_id("org", 8),
                _keys(w, 1),
                w.new_id("pf", 12),
                ("US", "DE", "GB")[i % 3],
                "enterprise",
                True,
                None,
                ips,
                net.COMMON_CLIENTS[0][0],
            )
        )
        n_jobs = int(clock.counts(rng, np.array([rate * w.days / 300.0]), minimum=1)[0])
        starts = w.start_ms + (rng.random(n_jobs) * (w.end_ms - w.start_ms)).astype(np.int64)
        ts, _, _ = clock.sessions(
            rng, starts, (300 * rng.uniform(0.5, 1.5, n_jobs)).astype(np.int64), 2.0, 0.2
        )
        k = ts.shape[0]
        model = w.models(rng, ts, (0.5, 0.3, 0.2), p.new_model_adoption, p.adoption_hours)
        blocks.append(
            make_block(
                np.full(k, a),
                ts,
                model,
                w.bank.synthetic(rng, k, i),
                "en",
                n=rng.choice(np.array([1, 1, 1, 2, 4]), size=k),
                max_tokens=4096,
                temperature=float(rng.choice([0.9, 1.0])),
                sys_hash=w.new_id("sp", 8),
                out_median=1200.0,
                history=0.0,
                throttle=p.throttle_rate,
            )
        )
    return concat(blocks)


def _burst_created(
    rng: np.random.Generator, w: World, n: int, p: SharedAccountsParams, center: int, spread_days: float
) -> list[int]:
    """Creation times: a share in one burst at ``center``, the rest spread over ``spread_days`` before it."""
    out = []
    for _ in range(n):
        if rng.random() < p.signup_burst_share:
            out.append(center + int(rng.random() * p.signup_burst_minutes * MIN_MS))
        else:
            out.append(center - int(rng.random() * spread_days * DAY_MS))
    return out


def university_nat(w: World, p: SharedAccountsParams) -> Block:
    """Students behind ONE NAT address, education tier, signed up around the semester start."""
    rng = w.rng("persona", "university_nat")
    n = w.scaled(p.accounts)
    nat = net.v4(rng, net.UNIVERSITY_V4[int(rng.integers(len(net.UNIVERSITY_V4)))])
    semester = w.start_ms - int(rng.uniform(25, 40) * DAY_MS)
    created = _burst_created(rng, w, n, p, semester, 20.0)
    primary = pick_langs(rng, n, {"en": 0.75, "zh": 0.1, "ko": 0.05, "es": 0.05, "ar": 0.05})
    accts = [
        w.add(
            Account(
                w.new_id("acct"),
                "university_nat",
                c,
                w.new_id("org", 8),
                _keys(w, 1),
                None,
                "US",
                "education",
                True,
                None,
                [nat],
                net.common_client(rng),
            )
        )
        for c in created
    ]
    rates = clock.lognormal_rates(rng, p.requests_per_day, p.rate_sigma, n)
    tzs = np.full(n, -9.0)  # students keep late hours: the human curve shifted by one hour
    return _chatty(w, rng, accts, primary, rates, tzs, p, code_share=0.35)


def company_card(w: World, p: SharedAccountsParams) -> Block:
    """A company paying for many accounts with one card: one org, one office prefix, office hours."""
    rng = w.rng("persona", "company_card")
    n = w.scaled(p.accounts)
    country = ("DE", "US")[int(rng.integers(2))]
    office = f"{net.OFFICE_V4[int(rng.integers(len(net.OFFICE_V4)))]}.{rng.integers(0, 256)}"
    office_ips = [f"{office}.{rng.integers(2, 254)}" for _ in range(3)]
    card, org = w.new_id("pf", 12), w.new_id("org", 8)
    created = _burst_created(rng, w, n, p, w.start_ms - int(rng.uniform(60, 200) * DAY_MS), 150.0)
    client = net.common_client(rng)
    accts = []
    for c in created:
        ips = office_ips + (
            [net.residential_ip(rng, country, w.params.ipv6_fraction)] if rng.random() < 0.5 else []
        )
        accts.append(
            w.add(
                Account(
                    w.new_id("acct"),
                    "company_card",
                    c,
                    org,
                    _keys(w, 1),
                    card,
                    country,
                    "standard",
                    True,
                    None,
                    ips,
                    client if rng.random() < 0.8 else net.common_client(rng),
                )
            )
        )
    rates = clock.lognormal_rates(rng, p.requests_per_day, p.rate_sigma, n)
    tzs = np.full(n, net.COUNTRIES[country].tz)
    lang = "de" if country == "DE" else "en"
    return _chatty(
        w, rng, accts, [lang] * n, rates, tzs, p, code_share=0.3, profile=clock.OFFICE, weekend=0.1
    )


def legit_reseller(w: World, p: SharedAccountsParams) -> Block:
    """Customers provisioned through a legitimate reseller: one reseller_id, ordinary varied traffic."""
    rng = w.rng("persona", "legit_reseller")
    n = w.scaled(p.accounts)
    reseller = w.new_id("rs", 6)
    accts: list[int] = []
    primary: list[str] = []
    tzs: list[float] = []
    while len(accts) < n:
        lang = pick_langs(rng, 1, LANG_WEIGHTS)[0]
        country = _country(rng, lang)
        card, org = w.new_id("pf", 12), w.new_id("org", 8)
        dc = rng.random() < 0.3
        for _ in range(min(int(rng.integers(1, 6)), n - len(accts))):
            ip = (
                net.datacenter_ip(rng, ("aws", "hetzner", "ovh"), w.params.ipv6_fraction)
                if dc
                else net.residential_ip(rng, country, w.params.ipv6_fraction)
            )
            accts.append(
                w.add(
                    Account(
                        w.new_id("acct"),
                        "legit_reseller",
                        _age_created(rng, w, 150.0),
                        org,
                        _keys(w, 1),
                        card,
                        country,
                        "reseller",
                        True,
                        reseller,
                        [ip],
                        net.common_client(rng),
                    )
                )
            )
            primary.append(lang)
            tzs.append(_tz(rng, country))
    rates = clock.lognormal_rates(rng, p.requests_per_day, p.rate_sigma, n)
    return _chatty(w, rng, accts, primary, rates, np.asarray(tzs), p, code_share=0.25)


#: The coding tool's own system prompt: the same hash for every honest agentic_coder account.
CODING_TOOL_SYSTEM = "sp_c0d3p170"


def agentic_coder(w: World, p: ProductUsersParams) -> Block:
    """Honest users of a popular agentic coding tool: many tools, long sessions, working hours; some
    opened their accounts in the tool's adoption waves (``signups``)."""
    rng = w.rng("persona", "agentic_coder")
    n = w.scaled(p.accounts)
    waves = signups.adoption_waves(rng, w, p.adoption_wave_share)
    accts, tzs, tools = [], [], []
    for lang in pick_langs(rng, n, {"en": 0.6, "de": 0.1, "fr": 0.1, "ja": 0.1, "pt": 0.1}):
        country = _country(rng, lang)
        ips = [
            net.residential_ip(rng, country, w.params.ipv6_fraction) for _ in range(int(rng.integers(1, 3)))
        ]
        in_wave = signups.wave_created(rng, waves) if waves is not None else None
        accts.append(
            w.add(
                Account(
                    w.new_id("acct"),
                    "agentic_coder",
                    in_wave if in_wave is not None else _age_created(rng, w),
                    w.new_id("org", 8),
                    _keys(w, 1),
                    w.new_id("pf", 12),
                    country,
                    "standard",
                    True,
                    None,
                    ips,
                    net.CODING_TOOL,
                )
            )
        )
        tzs.append(_tz(rng, country))
        tools.append(18 if rng.random() < 0.7 else 22)
    rates = clock.lognormal_rates(rng, p.requests_per_day, p.rate_sigma, n)
    owner, ts, pos = _human_sessions(w, rng, accts, rates, np.asarray(tzs), 25.0, 20.0, clock.HUMAN, 0.5)
    return agent_block(
        w,
        rng,
        owner,
        ts,
        pos,
        w.models(rng, ts, (0.1, 0.4, 0.5), p.new_model_adoption, p.adoption_hours),
        tools=np.asarray(tools)[np.searchsorted(accts, owner)],
        thinking_share=0.5,
        throttle=p.throttle_rate,
        sys_hash=CODING_TOOL_SYSTEM,
    )


def agent_block(
    w: World,
    rng: np.random.Generator,
    owner: I64,
    ts: I64,
    pos: I64,
    model: np.ndarray,
    tools: np.ndarray | int,
    thinking_share: float,
    throttle: float,
    max_tokens: int = 16000,
    sys_hash: str | None = None,
) -> Block:
    """Agentic coding session turns: the task first, then tool results and follow-ups."""
    k = owner.shape[0]
    first = pos == 0
    texts = np.empty(k, dtype=np.object_)
    texts[first] = w.bank.agent_first(rng, int(first.sum()))
    texts[~first] = w.bank.agent_next(rng, int((~first).sum()))
    thinking = rng.random(k) < thinking_share
    return make_block(
        owner,
        ts,
        model,
        texts,
        "en",
        turns=1 + 2 * pos,
        tools=tools,
        thinking=thinking,
        max_tokens=w.cap(model, np.full(k, max_tokens)),
        stream=True,
        out_median=np.where(thinking, 900.0, 500.0),
        history=1200.0,
        tool_stop=0.65,
        throttle=throttle,
        sys_hash=sys_hash,
    )


GENERATORS: dict[str, Callable[[World, SimParams], Block]] = {
    "casual": lambda w, s: casual(w, s.casual),
    "app_backend": lambda w, s: app_backend(w, s.app_backend),
    "eval_harness": lambda w, s: eval_harness(w, s.eval_harness),
    "bulk_synthetic": lambda w, s: bulk_synthetic(w, s.bulk_synthetic),
    "university_nat": lambda w, s: university_nat(w, s.university_nat),
    "company_card": lambda w, s: company_card(w, s.company_card),
    "legit_reseller": lambda w, s: legit_reseller(w, s.legit_reseller),
    "agentic_coder": lambda w, s: agentic_coder(w, s.agentic_coder),
}
