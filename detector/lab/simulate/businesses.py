"""Honest businesses that look like attackers (issue 17): off in the default run, on in the evasion matrix.

- ``tutoring_backend``: one math tutoring platform. Like most such platforms it calls the API from its
  own backend under ONE verified business tenant (one org, one card, years of tenure, an enterprise
  contract, a few cloud NAT addresses): one big production account carries every student's question
  (the students are the platform's users, not ours), plus one QA account that re-runs the same
  regression set every night. Huge step-by-step volume ("show your work" is the product), the tutor
  system prompt on every request, homework problems that repeat (popular textbook exercises), short
  follow-ups in the same session, after-school hours.
- ``translation_company``: a language-services company's CAT-tool integration: an account per project
  team, one org and card, the office's addresses, working hours, one style-guide system prompt, segments
  of client documents in many languages, outputs about the size of the inputs.
- ``internal_tool_team``: a company team whose internal tool (SQL helper, support drafts or code review,
  one per team) sets one system prompt and one template: 10-60 accounts provisioned by an admin at
  rollout and as people join, one org and card, the office NAT plus home addresses, working hours.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detector.lab.simulate import clock, net
from detector.lab.simulate.block import Block, Bool, concat, empty_block, make_block
from detector.lab.simulate.clock import DAY_MS, HOUR_MS, MIN_MS
from detector.lab.simulate.content import LANG_WEIGHTS, casual_content, event_langs, pick_langs
from detector.lab.simulate.params import PersonaParams, SharedAccountsParams
from detector.lab.simulate.world import Account, World

#: Local-hour weights of students doing homework: school day, then a long after-school peak.
AFTER_SCHOOL = np.array(
    [
        *(0.3, 0.15, 0.1, 0.05, 0.05, 0.1, 0.3, 0.8, 1.2, 1.4, 1.5, 1.5),
        *(1.6, 1.8, 2.2, 3.2, 3.8, 3.6, 3.4, 3.8, 4.0, 3.4, 2.2, 1.0),
    ]
)
#: The platform's homework bank: problems drawn by popularity (students share textbooks).
_CURRICULUM = 600
_POPULARITY = 0.8
#: Problems in the QA account's nightly regression set (the same set every night).
_REGRESSION = 300
_LANG_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "ja": "Japanese"}
_LANG_NAMES |= {"pt": "Portuguese", "ko": "Korean", "zh": "Chinese (Simplified)", "ar": "Arabic"}


def _system(w: World, text: str) -> str:
    sp = w.new_id("sp", 8)
    w.system_prompts[sp] = text
    return sp


def _account(w: World, persona: str, created: int, org: str, card: str, country: str, **kw: Any) -> int:
    return w.add(
        Account(
            w.new_id("acct"),
            persona,
            created,
            org,
            [w.new_id("key", 12) for _ in range(kw.get("keys", 1))],
            card,
            country,
            kw["tier"],
            True,
            None,
            kw["ips"],
            kw["client"],
        )
    )


def tutoring_backend(w: World, p: PersonaParams) -> Block:
    """One tutoring platform: a production account with every student's question, a nightly QA account."""
    rng = w.rng("persona", "tutoring_backend")
    n = w.scaled(p.accounts)
    if n == 0:
        return empty_block()
    data = w.bank.d["tutoring"]
    org, card = w.new_id("org", 8), w.new_id("pf", 12)
    tenant_since = w.start_ms - int(rng.uniform(500, 1100) * DAY_MS)
    ips = [net.datacenter_ip(rng, ("aws",), 0.0) for _ in range(4)]  # the backend's NAT gateways
    kw = {"tier": "enterprise", "ips": ips, "client": net.COMMON_CLIENTS[0][0], "keys": 2}
    accts = [
        _account(w, "tutoring_backend", tenant_since + i * 3 * DAY_MS, org, card, "US", **kw)
        for i in range(n)
    ]
    sys_hash = _system(w, data["system"])
    bank = w.bank.problems(rng, _CURRICULUM)
    weights = 1.0 / np.arange(1, _CURRICULUM + 1) ** _POPULARITY
    grade = {"grade": [str(g) for g in range(6, 13)]}
    blocks = []
    # production: student sessions (a question, then follow-ups), students across US time zones
    mean_len = 2.6
    n_sess = int(clock.counts(rng, np.array([p.requests_per_day * w.days / mean_len]), minimum=1)[0])
    tz = rng.choice(np.array([-5.0, -6.0, -7.0, -8.0]), size=n_sess)
    starts = clock.local_times(rng, n_sess, w.start_ms, w.end_ms, tz, AFTER_SCHOOL, weekend=0.6)
    ts, _, pos = clock.sessions(rng, starts, rng.geometric(1.0 / mean_len, n_sess), 70.0, 15.0)
    first = pos == 0
    picks = rng.choice(_CURRICULUM, size=int(first.sum()), p=weights / weights.sum())
    texts = np.empty(ts.shape[0], dtype=np.object_)
    texts[first] = [
        w.bank.fill(
            rng,
            str(data["templates"][int(rng.integers(len(data["templates"])))]),
            "en",
            grade,
            problem=bank[i],
        )
        for i in picks
    ]
    texts[~first] = [
        w.bank.fill(rng, str(data["followups"][int(rng.integers(len(data["followups"])))]))
        for _ in range(int((~first).sum()))
    ]
    model = w.models(rng, ts, (0.0, 0.7, 0.3), p.new_model_adoption, p.adoption_hours)
    blocks.append(
        make_block(
            np.full(ts.shape[0], accts[0]),
            ts,
            model,
            texts,
            "en",
            turns=1 + 2 * pos,
            max_tokens=1500,
            temperature=0.4,
            stream=True,
            sys_hash=sys_hash,
            out_median=450.0,
            history=500.0,
            throttle=p.throttle_rate,
        )
    )
    # QA: the same regression set every night, at temperature 0, on the production model
    regression = [w.bank.fill(rng, data["templates"][0], "en", problem=bank[i]) for i in range(_REGRESSION)]
    for a in accts[1:]:
        for d in range(int(np.ceil(w.days)) + 1):
            night = w.start_ms + d * DAY_MS + 9 * HOUR_MS  # 3 am in the platform's time zone
            t = night + np.sort(rng.integers(0, 90 * MIN_MS, _REGRESSION))
            blocks.append(
                make_block(
                    np.full(_REGRESSION, a),
                    t,
                    w.base_models[1],
                    regression,
                    "en",
                    max_tokens=1500,
                    temperature=0.0,
                    sys_hash=sys_hash,
                    out_median=450.0,
                    history=0.0,
                    throttle=p.throttle_rate,
                )
            )
    return concat(blocks)


def translation_company(w: World, p: PersonaParams) -> Block:
    """A translation company: document jobs of segments in many languages, office hours, one office."""
    rng = w.rng("persona", "translation_company")
    n = w.scaled(p.accounts)
    if n == 0:
        return empty_block()
    data = w.bank.d["translation"]
    country = ("DE", "FR", "ES", "IT")[int(rng.integers(4))]
    office = f"{net.OFFICE_V4[int(rng.integers(len(net.OFFICE_V4)))]}.{rng.integers(0, 256)}"
    ips = [f"{office}.{rng.integers(2, 254)}" for _ in range(2)]
    org, card = w.new_id("org", 8), w.new_id("pf", 12)
    since = w.start_ms - int(rng.uniform(300, 1200) * DAY_MS)
    client = net.COMMON_CLIENTS[4][0]  # the CAT tool's plugin talks through litellm
    accts = [
        _account(
            w,
            "translation_company",
            since + int(rng.random() * (w.start_ms - 30 * DAY_MS - since)),
            org,
            card,
            country,
            tier="enterprise",
            ips=ips,
            client=client,
        )
        for _ in range(n)
    ]
    sys_hash = _system(w, data["system"])
    rates = clock.lognormal_rates(rng, p.requests_per_day, p.rate_sigma, n)
    mean_len = 40.0  # segments per document job
    n_jobs = clock.counts(rng, rates * w.days / mean_len, minimum=1)
    owner = np.repeat(np.asarray(accts, dtype=np.int64), n_jobs)
    tz = net.COUNTRIES[country].tz
    starts = clock.local_times(rng, owner.shape[0], w.start_ms, w.end_ms, tz, clock.OFFICE, weekend=0.1)
    ts, sess, _ = clock.sessions(rng, starts, rng.geometric(1.0 / mean_len, owner.shape[0]), 4.0, 1.0)
    job_lang = pick_langs(rng, owner.shape[0], LANG_WEIGHTS)
    targets = list(data["targets"])
    job_target = [
        str(targets[int(rng.integers(len(targets)))]) if lang != "en" else "German" for lang in job_lang
    ]
    job_domain = [str(data["domains"][int(rng.integers(len(data["domains"])))]) for _ in job_lang]
    langs = [job_lang[int(s)] for s in sess]
    segments = w.bank.benign(rng, langs)
    texts = [
        w.bank.fill(
            rng,
            str(data["templates"][int(rng.integers(len(data["templates"])))]),
            "en",
            segment=seg,
            target=job_target[int(s)] if job_target[int(s)] != _LANG_NAMES.get(lang) else "English",
            domain=job_domain[int(s)],
        )
        for seg, s, lang in zip(segments, sess, langs, strict=True)
    ]
    model = w.models(rng, ts, (0.2, 0.6, 0.2), p.new_model_adoption, p.adoption_hours)
    return make_block(
        owner[sess],
        ts,
        model,
        texts,
        langs,
        max_tokens=2048,
        temperature=0.2,
        sys_hash=sys_hash,
        out_median=220.0,
        history=0.0,
        throttle=p.throttle_rate,
    )


def internal_tool_team(w: World, p: SharedAccountsParams) -> Block:
    """A team using its company's internal tool: one system prompt, one template, office hours."""
    rng = w.rng("persona", "internal_tool_team")
    n = w.scaled(p.accounts)
    if n == 0:
        return empty_block()
    country = ("US", "DE", "GB")[int(rng.integers(3))]
    office = f"{net.OFFICE_V4[int(rng.integers(len(net.OFFICE_V4)))]}.{rng.integers(0, 256)}"
    nat = [f"{office}.{rng.integers(2, 254)}" for _ in range(2)]
    org, card = w.new_id("org", 8), w.new_id("pf", 12)
    rollout = w.start_ms - int(rng.uniform(20, 200) * DAY_MS)
    tool = w.bank.d["internal_tools"][int(rng.integers(len(w.bank.d["internal_tools"])))]
    sys_hash = _system(w, tool["system"])
    client = net.COMMON_CLIENTS[0][0]  # the tool ships with the vendor SDK
    accts = []
    for _ in range(n):
        created = rollout_created(w, rng, rollout, p)
        home = [net.residential_ip(rng, country, w.params.ipv6_fraction)] if rng.random() < 0.6 else []
        accts.append(
            _account(
                w,
                "internal_tool_team",
                created,
                org,
                card,
                country,
                tier=("standard", "enterprise")[int(rng.integers(2))],
                ips=nat + home,
                client=client,
            )
        )
    return tool_traffic(w, rng, accts, tool, sys_hash, country, p)


def rollout_created(w: World, rng: np.random.Generator, rollout: int, p: SharedAccountsParams) -> int:
    """When a team member's account was opened: in the admin's batch at rollout (a share of the team),
    or later, as people joined."""
    burst = rng.random() < p.signup_burst_share  # the admin provisions the team at rollout
    return rollout + int(
        rng.random() * (p.signup_burst_minutes * MIN_MS if burst else (w.start_ms - DAY_MS - rollout))
    )


#: Share of teams whose internal tool asks for the model's reasoning through parameters (``tool_traffic``).
_REASONING_TOOL_SHARE = 0.35


def tool_traffic(
    w: World,
    rng: np.random.Generator,
    accts: list[int],
    tool: dict[str, Any],
    sys_hash: str,
    country: str,
    p: SharedAccountsParams,
) -> Block:
    """A team's requests through its internal tool (its system prompt and template) in office hours,
    and now and then someone asking the model directly. About a third of the tools run on a reasoning
    model with a thinking budget and outputs up to the model's maximum (a code reviewer, an analyst's
    tool): the parameter shape of a harvest, on every one of the tool's requests (its own stream, drawn
    per tool: the other teams' traffic is unchanged)."""
    reasoning = bool(w.rng("tool_reasoning", sys_hash).random() < _REASONING_TOOL_SHARE)
    span, rate, tz = (
        (w.start_ms, w.end_ms, w.days),
        (p.requests_per_day, p.rate_sigma),
        net.COUNTRIES[country].tz,
    )
    owner, ts, sess, _ = clock.office_sessions(rng, accts, span, rate, 3.0, tz, 0.1, 90.0)
    acct = owner[sess]
    model = w.models(rng, ts, (0.0, 1.0, 0.0), p.new_model_adoption, p.adoption_hours)
    via_tool: Bool = np.less(
        rng.random(ts.shape[0]), 0.9
    )  # now and then someone asks the model something directly
    k = int(via_tool.sum())
    tool_block = make_block(
        acct[via_tool],
        ts[via_tool],
        model[via_tool],
        [w.bank.fill(rng, tool["template"], "en", tool["slots"]) for _ in range(k)],
        "en",
        max_tokens=w.cap(model[via_tool], np.full(k, 16000)) if reasoning else 2048,
        temperature=0.2,
        sys_hash=sys_hash,
        thinking=reasoning,
        out_median=900.0 if reasoning else 350.0,
        history=0.0,
        throttle=p.throttle_rate,
    )
    own = ~via_tool
    langs = event_langs(rng, ["en"] * int(own.sum()))
    direct = casual_content(w, rng, acct[own], ts[own], model[own], langs, code_share=0.4)
    return concat([tool_block, direct])
