"""Honest personas whose accounts share what a farm shares: a university behind one NAT, a company's
team on one card, a legitimate reseller's customers (false-positive traps; ``personas.GENERATORS``)."""

from __future__ import annotations

import numpy as np

from detector.lab.simulate import clock, net
from detector.lab.simulate.block import Block
from detector.lab.simulate.clock import DAY_MS, MIN_MS
from detector.lab.simulate.content import LANG_WEIGHTS, pick_langs
from detector.lab.simulate.habits import _age_created, _chatty, _country, _keys, _tz
from detector.lab.simulate.params import (
    SharedAccountsParams,
)
from detector.lab.simulate.world import Account, World


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
