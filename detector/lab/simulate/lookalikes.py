"""Honest look-alikes the evidence model must not accuse (issue 17): off in the default run
(``accounts=0``), turned on by the evasion matrix.

- ``hackathon_cohort`` (``hackathon.py``): fresh accounts signed up within one hour behind one venue
  NAT, each its own free account, sharing a tutorial's system prompt and starter template for the first
  requests, then their own projects; tutorial, size, timing and network drawn per draw.
- ``eval_startup``: a verified organisation (one org, one card, months of tenure) re-running the
  same chain-of-thought benchmark set every night from the cloud at temperature 0.
- ``startup_build_team``: a young startup's engineers who opened their accounts in one afternoon days
  ago (a drawn share of them, up to 80%, on the one to three days after: new hires, contractors) for
  the product they build, whose in-house client sends every request (its own TLS fingerprint and SDK
  string: nobody else holds it). Each is a personal account (their own org), paid with the company
  card or their own (a share drawn per run), unverified; the office NAT plus home addresses, working
  hours, everyday development traffic. The holders of a private build, most opened within one week: a
  sign-up cohort (issue 17, round 9), as a farm's.

- ``remote_workshop`` (``workshop.py``): a live online course's participants, opened in its first hour,
  each at home (or on the course's hosted notebook), on one tutorial's system prompt and template: a
  hackathon without the venue network.

The tutoring backend, translation company and internal-tool team are in ``businesses.py``; the router's
honest customers and the residential proxy network's honest users in ``intermediaries.py``; a popular
coding agent's users through the router (``router_agent_users``, round 20) in ``router_agents.py``;
one uncertainty SDK's users through the router (``router_sdk_defaults``, round 21) in ``router_sdk.py``,
generated after the campaigns (``after_families``: no earlier id moves), as is a team on its internal
tool through its members' personal accounts (``personal_tool_team``, round 22) in ``personal_team.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from detector.lab.simulate import clock, net
from detector.lab.simulate.block import Block, concat, empty_block, make_block
from detector.lab.simulate.businesses import internal_tool_team, translation_company, tutoring_backend
from detector.lab.simulate.clock import DAY_MS, HOUR_MS, MIN_MS
from detector.lab.simulate.content import casual_content, event_langs
from detector.lab.simulate.hackathon import hackathon_cohort
from detector.lab.simulate.intermediaries import residential_vpn, router_customers
from detector.lab.simulate.params import PersonaParams, SimParams
from detector.lab.simulate.personal_team import personal_tool_team
from detector.lab.simulate.router_agents import router_agent_users
from detector.lab.simulate.router_sdk import router_sdk_defaults
from detector.lab.simulate.workshop import remote_workshop
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
    "router_customers": lambda w, s: concat(
        [router_customers(w, s.router_customers), router_agent_users(w, s.router_customers)]
    ),
    "residential_vpn": lambda w, s: residential_vpn(w, s.residential_vpn),
    "startup_build_team": lambda w, s: startup_build_team(w, s.startup_build_team),
    "remote_workshop": lambda w, s: remote_workshop(w, s.remote_workshop),
}


def startup_build_team(w: World, p: PersonaParams) -> Block:
    """A startup's engineers on their own in-house client build, opened in one afternoon."""
    rng = w.rng("persona", "startup_build_team")
    n = w.scaled(p.accounts)
    if n == 0:
        return empty_block()
    country = ("US", "DE", "GB", "FR")[int(rng.integers(4))]
    office = f"{net.OFFICE_V4[int(rng.integers(len(net.OFFICE_V4)))]}.{rng.integers(0, 256)}"
    nat = [f"{office}.{rng.integers(2, 254)}"]
    build = net.custom_client(rng, "acme-agent/0.3.1 python-httpx/0.27.0", "vendor-python/0.39.0")
    afternoon = w.start_ms - int(rng.uniform(3.0, 8.0) * DAY_MS) - int(rng.uniform(0, 8) * HOUR_MS)
    company_card, on_card = w.new_id("pf", 12), float(rng.uniform(0.0, 1.0))
    later = float(rng.uniform(0.0, 0.8))  # the share who joined on the days after (new hires, contractors)
    accts = []
    for _ in range(n):
        home = [net.residential_ip(rng, country, w.params.ipv6_fraction)] if rng.random() < 0.5 else []
        accts.append(
            w.add(
                Account(
                    w.new_id("acct"),
                    "startup_build_team",
                    afternoon
                    + int(rng.random() * 4 * HOUR_MS)
                    + (int(rng.uniform(1.0, 3.0) * DAY_MS) if rng.random() < later else 0),
                    w.new_id("org", 8),
                    [w.new_id("key", 12)],
                    company_card if rng.random() < on_card else w.new_id("pf", 12),
                    country,
                    "free",
                    False,
                    None,
                    nat + home,
                    build,
                )
            )
        )
    span, rate, tz = (
        (w.start_ms, w.end_ms, w.days),
        (p.requests_per_day, p.rate_sigma),
        net.COUNTRIES[country].tz,
    )
    owner, ts, sess, pos = clock.office_sessions(rng, accts, span, rate, 4.0, tz, 0.2, 60.0)
    model = w.models(rng, ts, adopt=p.new_model_adoption, adopt_hours=p.adoption_hours)
    langs = event_langs(rng, ["en"] * ts.shape[0])
    return casual_content(w, rng, owner[sess], ts, model, langs, turns=1 + pos, code_share=0.5)


def lookalike_blocks(w: World, params: SimParams) -> list[Block]:
    """The look-alikes that ``params`` switches on (``accounts > 0``)."""
    return [gen(w, params) for name, gen in LOOKALIKES.items() if getattr(params, name).accounts > 0]


def after_families(w: World, params: SimParams) -> list[Block]:
    """Look-alikes added after round 20, generated after the campaigns so that the ids drawn before
    them (every other persona's and campaign's) stay as they were: one SDK's users through the router
    (on with ``router_customers``), then a team on its tool through personal accounts (round 22)."""
    blocks = [router_sdk_defaults(w, params.router_customers)] if params.router_customers.accounts > 0 else []
    if params.personal_tool_team.accounts > 0:
        blocks.append(personal_tool_team(w, params.personal_tool_team))
    return blocks
