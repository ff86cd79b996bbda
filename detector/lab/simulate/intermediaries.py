"""Honest users behind intermediaries that campaigns hide behind too (issue 17's reseller and network knobs).

- ``router_customers``: the customers of the world's legitimate router (``World.router``), an API
  reseller that forwards each customer's requests under a sub-account of its own verified tenant: the
  gateway sees the router's org, card, egress addresses and client build on every one of them. Its
  customers signed up over the router's years of business and are mostly people chatting and coding,
  some apps built on it, and some developers comparing models with benchmark prompts (a common use of
  routers), busiest on a new model's launch day.
- ``residential_vpn``: people whose traffic leaves through the residential proxy network's exits
  (``World.proxy_exits``): half run a bandwidth-sharing or free-VPN app, so their own home connection
  IS an exit the network rents out; half subscribe to a residential VPN that rotates them over a few
  exits. Ordinary chat otherwise.

Campaigns with ``via_router`` or ``rotating_proxy`` use the very same router and exits.
"""

from __future__ import annotations

import numpy as np

from detector.lab.simulate import clock, net
from detector.lab.simulate.block import I64, Block, Bool, concat, empty_block, make_block
from detector.lab.simulate.businesses import _system, rollout_created, tool_traffic
from detector.lab.simulate.clock import DAY_MS, HOUR_MS
from detector.lab.simulate.content import pick_langs
from detector.lab.simulate.habits import _casual_created, _chatty, _country, _tz
from detector.lab.simulate.params import PersonaParams, SharedAccountsParams
from detector.lab.simulate.world import Account, World

#: Router customers by what they use it for (chat and coding, an app backend, model comparison).
_KINDS: dict[str, float] = {"chat": 0.75, "app": 0.15, "eval": 0.10}
#: An app built on the router sends this many times a person's volume.
_APP_FACTOR = 10.0
#: One company's team among the router's customers, by seats (drawn per world), and how its seats were
#: opened and used (as ``internal_tool_team``: most in the admin's batch at rollout).
_TEAM_SEATS = (8, 20)
_TEAM = SharedAccountsParams(
    accounts=0, requests_per_day=35.0, signup_burst_share=0.6, signup_burst_minutes=90.0
)


def router_customers(w: World, p: PersonaParams) -> Block:
    """The router's honest customers: sub-accounts under its tenant, varied ordinary use."""
    rng = w.rng("persona", "router_customers")
    n = w.scaled(p.accounts)
    if n == 0:
        return empty_block()
    r = w.router()
    kinds = list(_KINDS)
    kind_p = np.array([_KINDS[k] for k in kinds])
    accts: dict[str, list[int]] = {k: [] for k in kinds}
    primary: list[str] = []
    tzs: list[float] = []
    for lang in pick_langs(rng, n):
        kind = kinds[int(rng.choice(len(kinds), p=kind_p / kind_p.sum()))]
        country = _country(rng, lang)
        a = _sub_account(w, r.created_ms + int(rng.random() * (w.start_ms - DAY_MS - r.created_ms)), country)
        accts[kind].append(a)
        if kind == "chat":
            primary.append(lang)
            tzs.append(_tz(rng, country))
    blocks = []
    if accts["chat"]:
        rates = clock.lognormal_rates(rng, p.requests_per_day, p.rate_sigma, len(accts["chat"]))
        blocks.append(_chatty(w, rng, accts["chat"], primary, rates, np.asarray(tzs), p, code_share=0.3))
    app0 = int(rng.integers(w.bank.n_apps))
    for i, a in enumerate(accts["app"]):
        rate = float(clock.lognormal_rates(rng, p.requests_per_day * _APP_FACTOR, 0.5, 1)[0])
        k = int(clock.counts(rng, np.array([rate * w.days]), minimum=1)[0])
        ts = clock.local_times(rng, k, w.start_ms, w.end_ms, -6.0, clock.SERVICE)
        blocks.append(
            make_block(
                np.full(k, a),
                ts,
                w.base_models[int(rng.integers(len(w.base_models)))],
                w.bank.app(rng, app0 + i, k),
                "en",
                max_tokens=1024,
                temperature=0.3,
                sys_hash=w.new_id("sp", 8),
                out_median=180.0,
                history=0.0,
                throttle=p.throttle_rate,
            )
        )
    for i, a in enumerate(accts["eval"]):
        blocks.append(_model_comparison(w, rng, a, i, p))
    blocks.append(router_team(w, n))
    blocks.append(router_calibration(w, n))
    blocks.append(router_judges(w, n))
    blocks.append(router_uncertainty(w, n))
    return concat(blocks)


def _aged_sub_account(
    w: World, rng: np.random.Generator, countries: tuple[str, ...], persona: str = "router_customers"
) -> int:
    """A sub-account opened at a random time between the router's own start and the day before the
    run, in one of ``countries`` (the router's long-standing customers' shape)."""
    r = w.router()
    created = r.created_ms + int(rng.random() * (w.start_ms - DAY_MS - r.created_ms))
    return _sub_account(w, created, countries[int(rng.integers(len(countries)))], persona)


def _sub_account(w: World, created_ms: int, country: str, persona: str = "router_customers") -> int:
    """A sub-account under the router's tenant: its org, card, tier, verification, reseller id, egress
    and client build are the router's (``persona``: the matrix's row for it; a judge pipeline has its own)."""
    r = w.router()
    return w.add(
        Account(
            w.new_id("acct"),
            persona,
            created_ms,
            r.org_id,
            [w.new_id("key", 12)],
            r.payment,
            country,
            "reseller",
            True,
            r.reseller_id,
            list(r.egress),
            r.client,
        )
    )


def router_team(w: World, customers: int) -> Block:
    """One company's team among the router's customers: its internal tool (one system prompt, one
    template) reaches the model through the router, a sub-account per seat. On the gateway the seats
    carry the router's org, card, egress and client build like every other customer; what they share
    beyond the router is the tool's system prompt and template and the admin's sign-up batch."""
    rng = w.rng("persona", "router_team")
    seats = min(customers, int(rng.integers(_TEAM_SEATS[0], _TEAM_SEATS[1] + 1)))
    if seats < 2:
        return empty_block()
    country = ("US", "DE", "GB")[int(rng.integers(3))]
    rollout = w.start_ms - int(rng.uniform(20, 200) * DAY_MS)
    tool = w.bank.d["internal_tools"][int(rng.integers(len(w.bank.d["internal_tools"])))]
    sys_hash = _system(w, tool["system"])
    accts = [_sub_account(w, rollout_created(w, rng, rollout, _TEAM), country) for _ in range(seats)]
    return tool_traffic(w, rng, accts, tool, sys_hash, country, _TEAM)


#: Router customers who study a model's calibration, as a share of its customers (at least one).
_CALIBRATION_SHARE = 0.02


def router_calibration(w: World, customers: int) -> Block:
    """Researchers among the router's customers studying calibration: benchmark questions at temperature
    0 with log-probabilities (``top_logprobs`` 5, one completion, a few tokens: the answer's
    distribution, not a reasoning trace), in a few sessions in office hours. Aged sub-accounts like the
    router's other customers (its own random stream: the other customers' traffic is unchanged)."""
    rng = w.rng("persona", "router_calibration")
    if customers <= 0:
        return empty_block()
    blocks = []
    for i in range(max(1, round(customers * _CALIBRATION_SHARE))):
        a = _aged_sub_account(w, rng, ("US", "GB", "DE"))
        runs = int(clock.counts(rng, np.array([w.days * 1.5]), minimum=1)[0])
        starts = clock.local_times(rng, runs, w.start_ms, w.end_ms, -5.0, clock.OFFICE)
        lengths: I64 = np.asarray(rng.integers(20, 80, runs), dtype=np.int64)
        ts, _, _ = clock.sessions(rng, starts, lengths, gap_mean_s=3.0, gap_min_s=0.5)
        k = ts.shape[0]
        blocks.append(
            make_block(
                np.full(k, a),
                ts,
                w.base_models[int(rng.integers(len(w.base_models)))],
                w.bank.eval_prompts(rng, 7 + i, k),
                "en",
                max_tokens=16,
                temperature=0.0,
                logprobs=1,
                top_logprobs=5,
                out_median=4.0,
                history=0.0,
            )
        )
    return concat(blocks)


#: Router customers whose evaluation pipeline grades answers with a model as judge, as a share of its
#: customers (at least one), and the share of those pipelines on a reasoning model with a thinking budget.
_JUDGE_SHARE = 0.02
_JUDGE_REASONING_SHARE = 0.3


def router_judges(w: World, customers: int) -> Block:
    """Router customers running an LLM-as-judge evaluation pipeline: a batch of graded answers now and
    then (a rubric or a pairwise "which answer is better" prompt per candidate answer, the pipeline's
    own system prompt, temperature 0, a verdict and a short justification), in runs of 50-400 at any
    hour (a nightly job or an engineer's run). Randomized per pipeline: runs a day, run length,
    ``max_tokens`` and output size, and about a third on a reasoning model with a thinking budget (and
    the ``max_tokens`` it needs). Aged sub-accounts like the router's other customers; its own random
    stream (the other customers' traffic is unchanged)."""
    rng = w.rng("persona", "router_judges")
    if customers <= 0:
        return empty_block()
    blocks = []
    for _ in range(max(1, round(customers * _JUDGE_SHARE))):
        a = _aged_sub_account(w, rng, ("US", "GB", "DE", "FR", "IN"), "router_judges")
        runs = int(clock.counts(rng, np.array([w.days * rng.uniform(0.5, 2.5)]), minimum=1)[0])
        profile = clock.FLAT if rng.random() < 0.5 else clock.OFFICE
        starts = clock.local_times(rng, runs, w.start_ms, w.end_ms, float(rng.uniform(-8.0, 2.0)), profile)
        lengths: I64 = np.asarray(rng.integers(50, 400, runs), dtype=np.int64)
        gap = float(rng.uniform(0.5, 4.0))
        ts, _, _ = clock.sessions(rng, starts, lengths, gap_mean_s=gap, gap_min_s=0.2)
        k = ts.shape[0]
        model = np.full(k, w.base_models[int(rng.integers(len(w.base_models)))], dtype=np.object_)
        reasoning = bool(rng.random() < _JUDGE_REASONING_SHARE)
        wanted = 16000 if reasoning else int(rng.choice([256, 512, 1024, 2048]))
        blocks.append(
            make_block(
                np.full(k, a),
                ts,
                model,
                w.bank.rubric(rng, k),
                "en",
                max_tokens=w.cap(model, np.full(k, wanted)),
                temperature=0.0,
                thinking=reasoning,
                sys_hash=w.new_id("sp", 8),
                out_median=float(rng.uniform(900.0, 2500.0) if reasoning else rng.uniform(60.0, 400.0)),
                history=0.0,
            )
        )
    return concat(blocks)


def _model_comparison(w: World, rng: np.random.Generator, a: int, i: int, p: PersonaParams) -> Block:
    """A developer comparing models: a few runs of a small benchmark at temperature 0 on each model,
    one on the new model on its launch day."""
    runs = int(clock.counts(rng, np.array([w.days * 0.7]), minimum=1)[0])
    starts = clock.local_times(rng, runs, w.start_ms, w.end_ms, -6.0, clock.OFFICE)
    models = [w.base_models[int(rng.integers(len(w.base_models)))] for _ in range(runs)]
    if w.start_ms <= w.launch_ms < w.end_ms:
        hi = min(w.end_ms, w.launch_ms + 12 * HOUR_MS)
        starts = np.append(starts, w.launch_ms + int(rng.random() * (hi - w.launch_ms)))
        models.append(w.params.new_model_id)
    lengths: I64 = np.asarray(rng.integers(30, 120, starts.shape[0]), dtype=np.int64)
    ts, sess, _ = clock.sessions(rng, starts, lengths, gap_mean_s=2.0, gap_min_s=0.3)
    model = np.asarray(models, dtype=np.object_)[sess]
    return make_block(
        np.full(ts.shape[0], a),
        ts,
        model,
        w.bank.eval_prompts(rng, i, ts.shape[0]),
        "en",
        max_tokens=w.cap(model, np.full(ts.shape[0], 8192)),
        temperature=0.0,
        out_median=900.0,
        history=0.0,
        throttle=p.throttle_rate,
    )


def residential_vpn(w: World, p: PersonaParams) -> Block:
    """Ordinary people on the residential proxy network's exits (exit-device owners, VPN subscribers)."""
    rng = w.rng("persona", "residential_vpn")
    n = w.scaled(p.accounts)
    if n == 0:
        return empty_block()
    exits = w.proxy_exits()
    pool = np.asarray(exits, dtype=np.object_)
    accts, primary, tzs = [], [], []
    for i in range(n):
        if i % 2 == 0:  # the home connection is an exit; sometimes also a phone on mobile data
            home = str(exits[int(rng.integers(len(exits)))])
            country = w.exit_country[home]
            ips = [home] + (
                [net.residential_ip(rng, country, w.params.ipv6_fraction)] if rng.random() < 0.3 else []
            )
            lang = {"DE": "de", "FR": "fr", "ES": "es", "MX": "es", "BR": "pt", "JP": "ja"}.get(country, "en")
        else:  # a residential VPN subscriber, rotated over a handful of exits
            lang = pick_langs(rng, 1)[0]
            country = _country(rng, lang)
            ips = [str(x) for x in rng.choice(pool, size=int(rng.integers(3, 9)), replace=False)]
        accts.append(
            w.add(
                Account(
                    w.new_id("acct"),
                    "residential_vpn",
                    _casual_created(rng, w),
                    w.new_id("org", 8),
                    [w.new_id("key", 12)],
                    w.new_id("pf", 12) if rng.random() < 0.6 else None,
                    country,
                    "standard" if rng.random() < 0.5 else "free",
                    bool(rng.random() < 0.85),
                    None,
                    ips,
                    net.common_client(rng),
                )
            )
        )
        primary.append(lang)
        tzs.append(_tz(rng, country))
    rates = clock.lognormal_rates(rng, p.requests_per_day, p.rate_sigma, n)
    return _chatty(w, rng, accts, primary, rates, np.asarray(tzs), p, code_share=0.15)


#: Router customers whose app estimates its answers' uncertainty, as a share of its customers (at
#: least one): on part of its requests it samples several answers with log-probabilities (self-
#: consistency, "semantic entropy" hallucination checks) and answers the rest once (round 11).
_UNCERTAINTY_SHARE = 0.02


def sampling_app(
    w: World, rng: np.random.Generator, countries: tuple[str, ...], persona: str, tz_east: float
) -> tuple[int, int, I64, Bool]:
    """An aged router seat's app that samples on part of its requests: the seat, its request count
    (30-600 a day), their instants (a service's or an office's hours, UTC offset -8 to ``tz_east``) and
    which requests sample (a share drawn in 5-60%); the uncertainty apps' and the SDK users' own."""
    a = _aged_sub_account(w, rng, countries, persona)
    rate = float(np.exp(rng.uniform(np.log(30.0), np.log(600.0))))
    k = int(clock.counts(rng, np.array([rate * w.days]), minimum=1)[0])
    profile = clock.SERVICE if rng.random() < 0.5 else clock.OFFICE
    ts = clock.local_times(rng, k, w.start_ms, w.end_ms, float(rng.uniform(-8.0, tz_east)), profile)
    return a, k, ts, rng.random(k) < rng.uniform(0.05, 0.6)


def router_uncertainty(w: World, customers: int) -> Block:
    """A router customer's app that checks its answers' uncertainty: its own system prompt and questions
    around the clock, and on a share of them several samples with logprobs at a sampling temperature.
    Randomized per app: volume (30-600 a day), the sampled share (5-60%), ``n`` (2-10), ``top_logprobs``
    (none to 20), temperature (0.5-1.2), ``max_tokens`` and output size. Aged sub-accounts, persona
    ``router_uncertainty``; its own random stream (the other customers' traffic is unchanged)."""
    rng = w.rng("persona", "router_uncertainty")
    if customers <= 0:
        return empty_block()
    blocks = []
    for i in range(max(1, round(customers * _UNCERTAINTY_SHARE))):
        a, k, ts, sampled = sampling_app(w, rng, ("US", "GB", "DE", "FR", "IN"), "router_uncertainty", 2.0)
        top = int(rng.choice([0, 1, 5, 20]))
        wanted = int(rng.choice([128, 256, 512, 1024]))
        blocks.append(
            make_block(
                np.full(k, a),
                ts,
                w.base_models[int(rng.integers(len(w.base_models)))],
                w.bank.app(rng, int(rng.integers(w.bank.n_apps)) + i, k),
                "en",
                n=np.where(sampled, int(rng.integers(2, 11)), 1),
                logprobs=np.where(sampled, 1, 0),
                top_logprobs=np.where(sampled & (top > 0), top, -1),
                temperature=np.where(sampled, rng.uniform(0.5, 1.2), 0.3),
                max_tokens=wanted,
                sys_hash=w.new_id("sp", 8),
                out_median=float(rng.uniform(40.0, 0.6 * wanted)),
                history=0.0,
            )
        )
    return concat(blocks)
