"""Honest personas, including the ones that look like attackers (false-positive traps)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from detector.lab.simulate import clock, net, signups
from detector.lab.simulate.block import I64, Block, concat, make_block
from detector.lab.simulate.clock import HOUR_MS
from detector.lab.simulate.content import pick_langs
from detector.lab.simulate.habits import (
    _age_created,
    _casual_created,
    _chatty,
    _country,
    _human_sessions,
    _keys,
    _tz,
)
from detector.lab.simulate.params import (
    EvalHarnessParams,
    PersonaParams,
    ProductUsersParams,
    SimParams,
)
from detector.lab.simulate.shared_accounts import company_card, legit_reseller, university_nat
from detector.lab.simulate.world import Account, World


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


#: The coding tool's own system prompt: the same hash for every honest agentic_coder account.
CODING_TOOL_SYSTEM = "sp_c0d3p170"


def agentic_coder(w: World, p: ProductUsersParams) -> Block:
    """Honest users of a popular agentic coding tool: many tools, long sessions, working hours; some
    opened their accounts in the tool's adoption waves, and a few are one startup's engineers paying
    with the company card; a share may sit in one regional hub, some of whom came in its regional
    launch (``signups``)."""
    rng = w.rng("persona", "agentic_coder")
    n = w.scaled(p.accounts)
    waves = signups.adoption_waves(rng, w, p.adoption_wave_share)
    team = signups.card_team(rng, w, p.card_team_max)
    hub = signups.regional_hub(rng, w, p.regional_hub_max_share)
    accts, tzs, tools = [], [], []
    for i, lang in enumerate(pick_langs(rng, n, {"en": 0.6, "de": 0.1, "fr": 0.1, "ja": 0.1, "pt": 0.1})):
        in_hub, launched = signups.hub_member(rng, hub)
        country = hub.country if in_hub and hub is not None else _country(rng, lang)
        ips = [
            net.residential_ip(rng, country, w.params.ipv6_fraction) for _ in range(int(rng.integers(1, 3)))
        ]
        in_wave = signups.wave_created(rng, waves) if waves is not None else None
        in_wave = launched if launched is not None else in_wave
        accts.append(
            w.add(
                Account(
                    w.new_id("acct"),
                    "agentic_coder",
                    in_wave if in_wave is not None else _age_created(rng, w),
                    w.new_id("org", 8),
                    _keys(w, 1),
                    team.card if team is not None and i < team.size else w.new_id("pf", 12),
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
    tasks: np.random.Generator | None = None,
) -> Block:
    """Agentic coding session turns: the task first, then tool results and follow-ups. ``tasks``: a farm's
    own stream for its openers, drawn from the procedural task bank (``agent_first(sweep=True)``); the
    fixed set's draws are still taken from ``rng``, so every other column is as it was (round 19)."""
    k = owner.shape[0]
    first = pos == 0
    texts = np.empty(k, dtype=np.object_)
    texts[first] = w.bank.agent_first(rng, int(first.sum()))
    if tasks is not None:
        texts[first] = w.bank.agent_first(tasks, int(first.sum()), sweep=True)
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
