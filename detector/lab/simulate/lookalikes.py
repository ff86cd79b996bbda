"""Honest look-alikes the evidence model must not accuse (issue 17): off in the default run
(``accounts=0``), turned on by the evasion matrix.

- ``hackathon_cohort``: fresh accounts signed up within one hour behind one venue NAT, each its own
  free account, sharing a tutorial's system prompt and starter template for the first requests, then
  their own projects; a day of activity.
- ``eval_startup``: a verified organisation (one org, one card, months of tenure) re-running the
  same chain-of-thought benchmark set every night from the cloud at temperature 0.

The tutoring backend, translation company and internal-tool team are in ``businesses.py``; the router's
honest customers and the residential proxy network's honest users in ``intermediaries.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from detector.lab.simulate import clock, net
from detector.lab.simulate.block import Block, concat, empty_block, make_block
from detector.lab.simulate.businesses import internal_tool_team, translation_company, tutoring_backend
from detector.lab.simulate.clock import DAY_MS, HOUR_MS, MIN_MS
from detector.lab.simulate.content import casual_content, event_langs
from detector.lab.simulate.intermediaries import residential_vpn, router_customers
from detector.lab.simulate.params import PersonaParams, SimParams
from detector.lab.simulate.world import Account, World


def hackathon_cohort(w: World, p: PersonaParams) -> Block:
    """A hackathon: one NAT, one sign-up hour, a tutorial's system prompt and starter template."""
    rng = w.rng("persona", "hackathon_cohort")
    n = w.scaled(p.accounts)
    if n == 0:
        return empty_block()
    nat = net.v4(rng, net.UNIVERSITY_V4[int(rng.integers(len(net.UNIVERSITY_V4)))])
    opens = w.start_ms + int(rng.uniform(0.05, 0.3) * (w.end_ms - w.start_ms))
    client = net.common_client(rng)
    accts = [
        w.add(
            Account(
                w.new_id("acct"),
                "hackathon_cohort",
                opens + int(rng.random() * HOUR_MS),
                w.new_id("org", 8),
                [w.new_id("key", 12)],
                None,
                "US",
                "free",
                False,
                None,
                [nat],
                client,
            )
        )
        for _ in range(n)
    ]
    tutorial_sys, tag = w.new_id("sp", 8), w.new_id("H", 4).upper()
    rates = clock.lognormal_rates(rng, p.requests_per_day, p.rate_sigma, n)
    per = clock.counts(rng, rates, minimum=3)  # a day of hacking
    owner = np.repeat(np.asarray(accts, dtype=np.int64), per)
    ts = opens + HOUR_MS + (rng.random(owner.shape[0]) * 20 * HOUR_MS).astype(np.int64)
    order = np.argsort(ts, kind="stable")
    owner, ts = owner[order], ts[order]
    # the first requests of each account follow the tutorial's starter template; later ones are theirs
    rank = np.zeros(owner.shape[0], np.int64)
    for a in np.unique(owner):
        idx = np.flatnonzero(owner == a)
        rank[idx] = np.arange(idx.shape[0])
    starter = rank < 3
    model = w.models(rng, ts, adopt=p.new_model_adoption, adopt_hours=p.adoption_hours)
    tpl = make_block(
        owner[starter],
        ts[starter],
        model[starter],
        w.bank.skeleton(rng, int(starter.sum()), tag),
        "en",
        sys_hash=tutorial_sys,
        temperature=0.7,
        out_median=500.0,
    )
    own = ~starter
    langs = event_langs(rng, ["en"] * int(own.sum()))
    rest = casual_content(w, rng, owner[own], ts[own], model[own], langs, turns=1, code_share=0.6)
    rest.sys_hash[:] = tutorial_sys  # the app they build sets the tutorial's system prompt
    return concat([tpl, rest])


def eval_startup(w: World, p: PersonaParams) -> Block:
    """A verified org re-running the same CoT benchmark set every night from the cloud."""
    rng = w.rng("persona", "eval_startup")
    n = w.scaled(p.accounts)
    if n == 0:
        return empty_block()
    org, card = w.new_id("org", 8), w.new_id("pf", 12)
    ips = [net.datacenter_ip(rng, ("aws", "gcp"), w.params.ipv6_fraction) for _ in range(3)]
    accts = [
        w.add(
            Account(
                w.new_id("acct"),
                "eval_startup",
                w.start_ms - int(rng.uniform(60, 400) * DAY_MS),
                org,
                [w.new_id("key", 12)],
                card,
                "US",
                "startup",
                True,
                None,
                ips,
                net.COMMON_CLIENTS[0][0],
            )
        )
        for _ in range(n)
    ]
    bank = w.bank.eval_prompts(rng, 0, 200)  # one fixed problem set, re-run every night
    blocks = []
    days = int(np.ceil(w.days)) + 1
    for i, a in enumerate(accts):
        for d in range(days):
            night = w.start_ms + d * DAY_MS + 2 * HOUR_MS + i * 20 * MIN_MS
            k = int(p.requests_per_day)
            ts = night + np.sort(rng.integers(0, 2 * HOUR_MS, k))
            model = w.models(rng, ts, adopt=p.new_model_adoption, adopt_hours=p.adoption_hours)
            blocks.append(
                make_block(
                    np.full(k, a),
                    ts,
                    model,
                    [bank[j % len(bank)] for j in range(k)],
                    "en",
                    max_tokens=w.cap(model, np.full(k, 32000)),
                    temperature=0.0,
                    thinking=True,
                    out_median=1800.0,
                    history=0.0,
                )
            )
    return concat(blocks)


#: Look-alike generators, run after the default personas (they draw ids only when switched on).
LOOKALIKES: dict[str, Callable[[World, SimParams], Block]] = {
    "hackathon_cohort": lambda w, s: hackathon_cohort(w, s.hackathon_cohort),
    "eval_startup": lambda w, s: eval_startup(w, s.eval_startup),
    "tutoring_backend": lambda w, s: tutoring_backend(w, s.tutoring_backend),
    "translation_company": lambda w, s: translation_company(w, s.translation_company),
    "internal_tool_team": lambda w, s: internal_tool_team(w, s.internal_tool_team),
    "router_customers": lambda w, s: router_customers(w, s.router_customers),
    "residential_vpn": lambda w, s: residential_vpn(w, s.residential_vpn),
}


def lookalike_blocks(w: World, params: SimParams) -> list[Block]:
    """The look-alikes that ``params`` switches on (``accounts > 0``)."""
    return [gen(w, params) for name, gen in LOOKALIKES.items() if getattr(params, name).accounts > 0]
