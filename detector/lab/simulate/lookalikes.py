"""Honest look-alikes the evidence model must not accuse (issue 17): off in the default run
(``accounts=0``), turned on by the evasion matrix.

- ``hackathon_cohort`` (``hackathon.py``): fresh accounts signed up within one hour behind one venue
  NAT, each its own free account, sharing a tutorial's system prompt and starter template for the first
  requests, then their own projects; tutorial, size, timing and network drawn per draw.
- ``eval_startup``: a verified organisation (one org, one card, months of tenure) re-running the
  same chain-of-thought benchmark set every night from the cloud at temperature 0.

The tutoring backend, translation company and internal-tool team are in ``businesses.py``; the router's
honest customers and the residential proxy network's honest users in ``intermediaries.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from detector.lab.simulate import net
from detector.lab.simulate.block import Block, concat, empty_block, make_block
from detector.lab.simulate.businesses import internal_tool_team, translation_company, tutoring_backend
from detector.lab.simulate.clock import DAY_MS, HOUR_MS, MIN_MS
from detector.lab.simulate.hackathon import hackathon_cohort
from detector.lab.simulate.intermediaries import residential_vpn, router_customers
from detector.lab.simulate.params import PersonaParams, SimParams
from detector.lab.simulate.world import Account, World


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
