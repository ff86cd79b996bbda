"""The remote workshop (issue 17): a hackathon's look-alike without the room.

A live online course (a vendor's agent workshop, a university extension class, a bootcamp's week on
LLM apps) opens with "now create your account": many fresh free accounts, each its own person (own org,
most with no card on record), opened within the first session's hour, with a few who registered from
the invitation in the days before. They follow the course's system prompt and starter template, as a
hackathon does, but **each from home**: their own residential address (in a few countries for an
international course), and, where the course hands out a hosted notebook, from the notebook's cloud
address. No venue network holds them, so the room test (``detect/room.py``) cannot explain them.

What varies from one course to the next is drawn per draw from the persona's own random stream:

- the tutorial (``hackathon.Tutorial``), weighted toward agents (tool-heavy sessions of a few turns
  each: the agentic farm's shape at 4-6 tool turns a seat a day);
- how many of the sheet's exercises each participant works through (2-12 on average, never more than
  the sheet holds), how often an exercise is tried again (``RETRY``), how much of the rest of the day
  still goes through the course's system prompt, and how many participants run a hosted notebook;
- when the session starts, how long it lasts (1.5-4 hours), how many registered ahead (0-40%), the
  countries, and how many keep building after the session.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detector.lab.simulate import clock, net
from detector.lab.simulate.block import I64, Block, Obj, concat, empty_block
from detector.lab.simulate.clock import DAY_MS, HOUR_MS, MIN_MS
from detector.lab.simulate.content import casual_content, event_langs
from detector.lab.simulate.hackathon import Tutorial
from detector.lab.simulate.params import PersonaParams
from detector.lab.simulate.world import Account, World

#: Tutorials a workshop teaches, and how often (an agent course is the look-alike that matters).
COURSES: dict[str, float] = {"agent": 0.55, "reasoning": 0.3, "app": 0.15}
#: How often a course's participants send an exercise again (the same cell re-run after an error, a
#: typo or a changed parameter), drawn per course: the share of (participant, exercise) pairs tried
#: again, and of those the share tried a third time. A participant following a live session wants one
#: working answer per exercise: most are sent once, a few twice or three times, never more. (Best-of-n
#: and rejection sampling, what distillation does with a problem, need four or more samples of it.)
RETRY: tuple[tuple[float, float], float] = ((0.05, 0.3), 0.35)
#: An agent course's exercise runs the agent loop (round 11): the sheet's instruction opens a session,
#: then the tool results and short follow-ups come back as its later turns (``prompt.turns`` 3, 5, ...).
#: The mean requests an exercise takes is drawn per course from this range, at most ``AGENT_LOOP_MAX``:
#: a tutorial's agent calls a tool or a few; a coding task or a harvesting farm's session runs dozens.
AGENT_LOOP: tuple[float, float] = (1.5, 5.0)
AGENT_LOOP_MAX = 12
#: Countries an international course draws its participants from.
COUNTRIES: tuple[str, ...] = ("US", "GB", "DE", "FR")


def remote_workshop(w: World, p: PersonaParams) -> Block:
    """A remote course: sign-ups in the first session's hour, participants at home, one tutorial."""
    rng = w.rng("persona", "remote_workshop")
    n = w.scaled(p.accounts)
    if n == 0:
        return empty_block()
    start = w.start_ms + int(rng.uniform(0.05, 0.6) * (w.end_ms - w.start_ms))
    session = rng.uniform(1.5, 4.0) * HOUR_MS
    ahead, notebook = rng.uniform(0.0, 0.4), rng.uniform(0.0, 0.6)
    k = int(rng.integers(1, len(COUNTRIES) + 1))
    countries = list(rng.choice(COUNTRIES, k, replace=False))
    created = np.where(
        rng.random(n) < ahead,
        start - (rng.uniform(0.1, 5.0, n) * DAY_MS),
        start + rng.random(n) * 60 * MIN_MS,
    ).astype(np.int64)
    accts, hosted = [], rng.random(n) < notebook
    for c, cloud in zip(created, hosted, strict=True):
        country = str(countries[int(rng.integers(len(countries)))])
        ips = [net.residential_ip(rng, country, w.params.ipv6_fraction)]
        if cloud:  # the course's hosted notebook: a cloud address, the python SDK
            ips = [net.datacenter_ip(rng, ("gcp", "aws"), w.params.ipv6_fraction), *ips]
        client = net.COMMON_CLIENTS[0][0] if cloud else net.common_client(rng)
        person = Account(
            w.new_id("acct"),
            "remote_workshop",
            int(c),
            w.new_id("org", 8),
            [w.new_id("key", 12)],
            w.new_id("pf", 12) if rng.random() < 0.3 else None,
            country,
            "free",
            False,
            None,
            ips,
            client,
        )
        accts.append(w.add(person))
    tutorial = Tutorial.draw(w, rng, COURSES, "W")
    exercises = rng.uniform(2.0, 12.0)  # exercises per participant during the session, on average
    keep_sys, after = rng.uniform(0.2, 0.9), rng.uniform(2.0, 16.0) * HOUR_MS
    first = np.maximum(created, start)
    n_sheet = int(rng.integers(4, 16))  # the sheet's exercises
    done = np.minimum(1 + rng.poisson(exercises - 1.0, n), n_sheet)  # the exercises each works through
    tries = _attempts(rng, int(done.sum()))  # per (participant, exercise), in participant order
    n_ex = np.bincount(np.repeat(np.arange(n), done), weights=tries, minlength=n).astype(np.int64)
    # after the session: their own experiments at the persona's rate, over the hours they keep at it
    rates = clock.lognormal_rates(rng, p.requests_per_day, p.rate_sigma, n)
    n_own = clock.counts(rng, rates * after / (24 * HOUR_MS))
    per = n_ex + n_own
    owner = np.repeat(np.asarray(accts, dtype=np.int64), per)
    rank = np.arange(owner.shape[0]) - np.repeat(np.cumsum(per) - per, per)
    exercise = rank < np.repeat(n_ex, per)
    in_session = np.repeat(first, per) + (rng.random(owner.shape[0]) * session).astype(np.int64)
    later = np.repeat(first + int(session), per) + (rng.random(owner.shape[0]) * after).astype(np.int64)
    ts = np.where(exercise, in_session, later).astype(np.int64)
    order = np.lexsort((ts, owner))
    owner, ts, exercise = owner[order], ts[order], exercise[order]
    model = w.models(rng, ts, adopt=p.new_model_adoption, adopt_hours=p.adoption_hours)
    # the course's exercise sheet: every participant works through the same exercises in order, each
    # attempt of one exercise after the last (its requests are sorted by owner, then time), a few with
    # their own variant (another problem through the template, the same text again on a retry)
    sheet = tutorial.texts(w, rng, n_sheet)
    step = np.concatenate([np.arange(k) for k in done])  # per (participant, exercise): its place
    own_variant: npt.NDArray[np.bool_] = np.asarray(rng.random(step.shape[0]) < rng.uniform(0.0, 0.3))
    variants = iter(tutorial.texts(w, rng, int(own_variant.sum())))
    chosen = [next(variants) if v else sheet[int(i)] for i, v in zip(step, own_variant, strict=True)]
    texts = [t for t, k in zip(chosen, tries, strict=True) for _ in range(int(k))]
    tpl = _exercises(w, rng, tutorial, owner[exercise], ts[exercise], model[exercise], texts)
    own = ~exercise
    langs = event_langs(rng, ["en"] * int(own.sum()))
    rest = casual_content(w, rng, owner[own], ts[own], model[own], langs, turns=1, code_share=0.6)
    keep = rng.random(len(rest)) < keep_sys  # their own experiments keep the course's system prompt
    rest.sys_hash[keep] = tutorial.sys_hash
    return concat([tpl, rest])


def _exercises(
    w: World, rng: np.random.Generator, tutorial: Tutorial, owner: I64, ts: I64, model: Obj, texts: list[str]
) -> Block:
    """The exercises' requests: one per attempt, or (an agent course) an agent loop per attempt, the
    sheet's text as its opening turn and the tool results after it, seconds apart."""
    if tutorial.kind != "agent":
        return tutorial.block(w, rng, owner, ts, model, texts)
    mean = rng.uniform(*AGENT_LOOP)
    lengths = np.minimum(1 + rng.poisson(mean - 1.0, owner.shape[0]), AGENT_LOOP_MAX)
    t, session, pos = clock.sessions(rng, ts, lengths, 8.0, 2.0)
    opener = pos == 0
    steps = np.empty(t.shape[0], dtype=np.object_)
    steps[opener] = texts
    steps[~opener] = w.bank.agent_next(rng, int((~opener).sum()))
    block = tutorial.block(w, rng, owner[session], t, model[session], list(steps))
    block.turns[:] = 1 + 2 * pos
    return block


def _attempts(rng: np.random.Generator, k: int) -> npt.NDArray[np.int64]:
    """How many times each of ``k`` (participant, exercise) pairs is sent: 1, or 2-3 on a retry."""
    (lo, hi), third = RETRY
    again = rng.random(k) < rng.uniform(lo, hi)
    return (1 + again * (1 + (rng.random(k) < third))).astype(np.int64)
