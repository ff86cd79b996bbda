"""The hackathon cohort (issue 17): an honest look-alike of a freshly provisioned farm.

A hackathon is many fresh free accounts, each its own person (own org, no card on record), that signed
up at the registration desk within an hour of the kick-off, sit behind the venue's NAT (a campus or a
co-working space), follow one tutorial's system prompt and starter template for their first requests,
then build their own projects for a day. What varies from one event to the next is drawn per draw from
the persona's own random stream:

- the tutorial: a reasoning workshop (the numbered-step template over math problems, sometimes with a
  thinking budget), an app tutorial (one app template) or an agent tutorial (tool-heavy sessions);
- how many starter requests each participant sends (1-8 on average), and how much of the later traffic
  still goes through the tutorial's system prompt and template (their app is built on it);
- timing: when the event opens, how long registration takes (20-90 minutes), a few late joiners
  within four hours, how long people hack (12-30 hours);
- the network: the venue's NAT (one or two addresses of one /24), and some participants who also send
  from their phone's tethering or, at night, from home; each participant calls from their own laptop
  with one of the popular SDKs (no private client build: that is an operator's software).

The cohort is coordinated (a sign-up burst, a shared system prompt and template, one room), but its
extraction evidence is what students do: a handful of worked examples each, then their own work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.lab.simulate import clock, net
from detector.lab.simulate.block import I64, Block, Obj, concat, empty_block, make_block
from detector.lab.simulate.clock import HOUR_MS, MIN_MS
from detector.lab.simulate.content import casual_content, event_langs
from detector.lab.simulate.params import PersonaParams
from detector.lab.simulate.world import Account, World

#: Tutorials a hackathon opens with, and how often (a reasoning workshop, an app, an agent).
TUTORIALS: dict[str, float] = {"reasoning": 0.45, "app": 0.4, "agent": 0.15}


@dataclass(frozen=True)
class Tutorial:
    """The tutorial the cohort follows: its kind, system prompt, template and parameters."""

    kind: str
    sys_hash: str
    tag: str
    app: int
    thinking: bool

    def texts(self, w: World, rng: np.random.Generator, k: int) -> list[str]:
        """``k`` requests through the tutorial's starter template."""
        if self.kind == "reasoning":
            return w.bank.skeleton(rng, k, self.tag)
        if self.kind == "app":
            return w.bank.app(rng, self.app, k)
        return w.bank.agent_first(rng, k)

    @classmethod
    def draw(cls, w: World, rng: np.random.Generator, kinds: dict[str, float], tag: str) -> Tutorial:
        """A tutorial of a kind drawn from ``kinds`` (weights), its own system prompt and template tag
        (``tag``: the template's prefix, one per look-alike), a sample app, thinking half the time."""
        kind = str(rng.choice(list(kinds), p=np.array(list(kinds.values()))))
        return cls(
            kind,
            sys_hash=w.new_id("sp", 8),
            tag=w.new_id(tag, 4).upper(),
            app=int(rng.integers(w.bank.n_apps)),
            thinking=bool(rng.random() < 0.5),
        )

    def block(
        self,
        w: World,
        rng: np.random.Generator,
        owner: I64,
        ts: I64,
        model: Obj,
        texts: list[str] | None = None,
    ) -> Block:
        """The tutorial's requests: its template, its parameters (``texts``: given exercises, else drawn)."""
        k = owner.shape[0]
        thinking = self.thinking and self.kind == "reasoning"
        agent = self.kind == "agent"
        return make_block(
            owner,
            ts,
            model,
            self.texts(w, rng, k) if texts is None else texts,
            "en",
            sys_hash=self.sys_hash,
            temperature=0.7,
            thinking=thinking,
            max_tokens=w.cap(model, np.full(k, 16000 if thinking else 2048)),
            tools=6 if agent else 0,
            tool_stop=0.5 if agent else 0.0,
            out_median=900.0 if thinking else 500.0,
        )


def hackathon_cohort(w: World, p: PersonaParams) -> Block:
    """A hackathon: one venue NAT, one sign-up hour, a tutorial's system prompt and starter template."""
    rng = w.rng("persona", "hackathon_cohort")
    n = w.scaled(p.accounts)
    if n == 0:
        return empty_block()
    venues = net.UNIVERSITY_V4 + net.OFFICE_V4  # a campus or a co-working space
    subnet = net.v4(rng, venues[int(rng.integers(len(venues)))]).rsplit(".", 1)[0]
    hosts = rng.choice(np.arange(2, 254), int(rng.integers(1, 3)), replace=False)
    nat = [f"{subnet}.{int(h)}" for h in hosts]
    kickoff = w.start_ms + int(rng.uniform(0.05, 0.4) * (w.end_ms - w.start_ms))
    registration = rng.uniform(20.0, 90.0) * MIN_MS
    late, tether, home = rng.uniform(0.0, 0.15), rng.uniform(0.0, 0.25), rng.uniform(0.0, 0.4)
    created = np.where(
        rng.random(n) < late,
        kickoff + (rng.random(n) * 4 * HOUR_MS),
        kickoff - registration + rng.random(n) * registration,
    ).astype(np.int64)
    accts = []
    for c in created:
        ips = nat * 3  # most requests leave through the venue
        if rng.random() < tether:
            ips.append(net.residential_ip(rng, "US", w.params.ipv6_fraction))
        if rng.random() < home:
            ips.append(net.residential_ip(rng, "US", w.params.ipv6_fraction))
        acct_id, org, key = w.new_id("acct"), w.new_id("org", 8), w.new_id("key", 12)
        # each participant is their own free account: own org, no card on record, unverified
        client = net.common_client(rng)  # their own laptop's SDK: the popular ones, not one build
        person = Account(
            acct_id, "hackathon_cohort", int(c), org, [key], None, "US", "free", False, None, ips, client
        )
        accts.append(w.add(person))
    tutorial = Tutorial.draw(w, rng, TUTORIALS, "H")
    starters = rng.uniform(1.0, 8.0)  # worked examples per participant, on average
    keep_sys, demo = rng.uniform(0.3, 1.0), rng.uniform(0.0, 0.2)
    hack_ms = rng.uniform(12.0, 30.0) * HOUR_MS
    first = np.maximum(created, kickoff)
    rates = clock.lognormal_rates(rng, p.requests_per_day, p.rate_sigma, n)
    n_start = 1 + rng.poisson(starters - 1.0, n)
    per = np.maximum(clock.counts(rng, rates * hack_ms / (24 * HOUR_MS)), n_start + 1)
    owner = np.repeat(np.asarray(accts, dtype=np.int64), per)
    span = np.repeat(kickoff + hack_ms - first, per).astype(np.float64)
    ts = np.repeat(first, per) + (rng.random(owner.shape[0]) * span).astype(np.int64)
    order = np.lexsort((ts, owner))
    owner, ts = owner[order], ts[order]
    rank = np.arange(owner.shape[0]) - np.repeat(np.cumsum(per) - per, per)
    starter = (rank < np.repeat(n_start, per)) | (rng.random(owner.shape[0]) < demo)
    model = w.models(rng, ts, adopt=p.new_model_adoption, adopt_hours=p.adoption_hours)
    tpl = tutorial.block(w, rng, owner[starter], ts[starter], model[starter])
    own = ~starter
    langs = event_langs(rng, ["en"] * int(own.sum()))
    code_share = rng.uniform(0.3, 0.8)
    rest = casual_content(w, rng, owner[own], ts[own], model[own], langs, turns=1, code_share=code_share)
    keep = rng.random(len(rest)) < keep_sys  # their apps keep the tutorial's system prompt
    rest.sys_hash[keep] = tutorial.sys_hash
    return concat([tpl, rest])
