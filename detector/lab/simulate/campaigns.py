"""Attack campaigns, one generator per family, each a labelled cluster of accounts.

Members sign up in bursts before the campaign starts (``provision.py``); a share is banned during the
run and replaced at once by freshly created accounts, so sign-ups keep arriving. Each family mixes a
share of ordinary-looking requests (``blend_ratio``) into its extraction traffic. With ``content`` set,
each family phrases its reasoning ask as that mode says (``asks.py``) around its own task; ``None``
keeps the family's own content mix.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from detector.lab.simulate import asks, clock, net
from detector.lab.simulate.block import I64, Block, Bool, Obj, concat, make_block
from detector.lab.simulate.clock import DAY_MS
from detector.lab.simulate.content import casual_content, pick_langs
from detector.lab.simulate.params import CAMPAIGN_TYPES, FamilyParams, SimParams
from detector.lab.simulate.personas import agent_block
from detector.lab.simulate.provision import Infra, cards, independent, pool, provision, waves
from detector.lab.simulate.split import split_leaders, split_texts
from detector.lab.simulate.world import Campaign, World


def _blend(
    w: World,
    rng: np.random.Generator,
    acct: I64,
    ts: I64,
    ratio: float,
    langs: dict[str, float],
    main: Callable[[np.ndarray], Block],
) -> Block:
    """Split requests into ordinary-looking ones (share ``ratio``) and the campaign's own (``main``)."""
    mask: Bool = np.less(rng.random(acct.shape[0]), ratio)
    ordinary = casual_content(
        w, rng, acct[mask], ts[mask], w.models(rng, ts[mask]), pick_langs(rng, int(mask.sum()), langs)
    )
    return concat([main(~mask), ordinary])


def _own_langs(w: World, rng: np.random.Generator, p: FamilyParams, accounts: I64) -> dict[int, list[str]]:
    """Each account's ask languages in the multilingual mode (no draw otherwise)."""
    return asks.account_langs(w, rng, accounts.tolist()) if p.content == "multilingual" else {}


def _langs(rng: np.random.Generator, p: FamilyParams, acct: I64, own: dict[int, list[str]]) -> list[str]:
    """The ask language of each request: one of its account's in the multilingual mode, else English."""
    return asks.row_langs(rng, acct.tolist(), own) if p.content == "multilingual" else ["en"] * len(acct)


def _ask_first_turns(
    w: World, rng: np.random.Generator, p: FamilyParams, b: Block, pos: I64, own: dict[int, list[str]]
) -> Block:
    """Agentic sessions: the mode's ask goes with each session's opening instruction."""
    if p.content is None:
        return b
    first = np.flatnonzero(pos == 0)
    mode = p.content
    texts, langs = asks.wrap(w, rng, mode, b.text[first].tolist(), _langs(rng, p, b.acct[first], own))
    b.text[first] = np.asarray(texts, dtype=np.object_)
    b.lang[first] = np.asarray(langs, dtype=np.object_)
    return b


def _near_max(w: World, rng: np.random.Generator, model: Obj) -> I64:
    top = w.model_max(model)
    return np.where(rng.random(model.shape[0]) < 0.8, top, top - 192)


def cot_hydra(w: World, rng: np.random.Generator, camp: Campaign, p: FamilyParams) -> Block:
    """Chain-of-thought extraction through a reseller's hydra cluster: one reseller, a few cards, a proxy
    pool, one client build; synchronised 24h waves; CoT wrappers, rubric grading and identity probes."""
    infra = Infra(
        w.new_id("rs", 6),
        cards(w, p),
        pool(w, rng, p, ("aws", "digitalocean", "hetzner", "ovh", "vultr")),
        net.custom_client(rng, "python-httpx/0.27.0", "vendor-python/0.36.2"),
        {"reseller": 0.5, "startup": 0.2, "education": 0.15, "research": 0.15},
        ("SG", "HK", "US", "MY", "AE", "KZ"),
        0.3,
    )
    m = provision(w, rng, camp, "cot_hydra", p, infra)
    acct, ts = waves(w, rng, m, p.requests_per_account_day, p.wave_interval_s or 300.0)
    temperature = float(rng.choice([0.0, 0.0, 0.6]))
    sys_cot, sys_rubric = w.new_id("sp", 8), w.new_id("sp", 8)
    own = _own_langs(w, rng, p, m.idx)
    if p.content is not None:
        sys_cot = asks.system_prompt(w, rng, p.content, sys_cot)

    def main(sel: np.ndarray) -> Block:
        a, t = acct[sel], ts[sel]
        k = a.shape[0]
        model = w.models(rng, t, (0.0, 0.3, 0.7), p.pivot_share, p.pivot_ramp_hours)
        kind = rng.random(k)
        if p.content is None:
            texts, langs = w.bank.cot(rng, k)
            rub = kind >= 0.75
        else:  # rubric grading says "reasoning" in so many words: only with explicit asks
            texts, langs = asks.wrap(w, rng, p.content, w.bank.problems(rng, k, True), _langs(rng, p, a, own))
            rub = (kind >= 0.75) & (p.content == "explicit")
        for i, txt in zip(np.flatnonzero(rub), w.bank.rubric(rng, int(rub.sum())), strict=True):
            texts[i], langs[i] = txt, "en"
        ident = kind >= 0.97
        probes, plangs = w.bank.identity(rng, int(ident.sum()))
        for i, txt, lang in zip(np.flatnonzero(ident), probes, plangs, strict=True):
            texts[i], langs[i] = txt, lang
        if p.split_seats > 1:  # the reasoning problems, each from k seats (not the grading or probes)
            cot = np.flatnonzero(~rub & ~ident)
            lead = cot[split_leaders(rng, a[cot], t[cot], p.split_seats)]
            for i, j in zip(cot, lead, strict=True):
                texts[i], langs[i] = texts[j], langs[j]
        sys_hash = np.where(rub & ~ident, sys_rubric, sys_cot).astype(np.object_)
        return make_block(
            a,
            t,
            model,
            texts,
            langs,
            max_tokens=_near_max(w, rng, model),
            temperature=temperature,
            thinking=True,
            sys_hash=sys_hash,
            out_median=np.where(rub, 800.0, 4500.0),
            history=0.0,
        )

    return _blend(w, rng, acct, ts, p.blend_ratio, {"en": 0.7, "zh": 0.3}, main)


def agentic_pivot(w: World, rng: np.random.Generator, camp: Campaign, p: FamilyParams) -> Block:
    """Agentic coding / tool-use extraction: many tools, long fast sessions around the clock; after the
    new model launches, ``pivot_share`` of sessions move to it within ``pivot_ramp_hours``."""
    infra = Infra(
        None,
        cards(w, p),
        pool(w, rng, p, ("aws", "gcp", "alibaba", "tencent")),
        net.custom_client(rng, "node-fetch/3.3.2", "vendor-typescript/0.30.1"),
        {"startup": 0.6, "standard": 0.4},
        ("SG", "US", "HK", "GB"),
        0.5,
    )
    m = provision(w, rng, camp, "agentic_pivot", p, infra)
    mean_len = p.session_turns
    n_sess = clock.counts(rng, p.requests_per_account_day * (m.active_to - m.active_from) / DAY_MS / mean_len)
    owner = np.repeat(m.idx, n_sess)
    lo, hi = np.repeat(m.active_from, n_sess), np.repeat(m.active_to, n_sess)
    starts = lo + (rng.random(owner.shape[0]) * (hi - lo)).astype(np.int64)
    ts, sess, pos = clock.sessions(rng, starts, rng.geometric(1.0 / mean_len, owner.shape[0]), 6.0, 2.0)
    sess_model = w.models(rng, starts, (0.0, 0.4, 0.6), p.pivot_share, p.pivot_ramp_hours)
    acct, model = owner[sess], sess_model[sess]
    keep = ts < w.end_ms
    acct, ts, pos, model = acct[keep], ts[keep], pos[keep], model[keep]
    tools, sys_hash = int(rng.choice([38, 45])), w.new_id("sp", 8)
    own = _own_langs(w, rng, p, m.idx)
    # the openers from the procedural task bank, on a stream of their own (round 19: the rest as it was)
    tasks = w.rng("agent_tasks", camp.campaign_id)
    if p.content is not None:
        sys_hash = asks.system_prompt(w, rng, p.content, sys_hash)

    def main(sel: np.ndarray) -> Block:
        b = agent_block(
            w,
            rng,
            acct[sel],
            ts[sel],
            pos[sel],
            model[sel],
            tools=tools,
            thinking_share=0.6,
            throttle=0.01,
            max_tokens=32000,
            sys_hash=sys_hash,
            tasks=tasks,
        )
        b = _ask_first_turns(w, rng, p, b, pos[sel], own)
        if p.split_seats > 1:  # best-of-k trajectories: each task (a session's opener) from k seats
            first = np.flatnonzero(pos[sel] == 0)
            lead = first[split_leaders(rng, b.acct[first], b.ts[first], p.split_seats)]
            b.text[first], b.lang[first] = b.text[lead], b.lang[lead]
        return b

    return _blend(w, rng, acct, ts, p.blend_ratio, {"en": 1.0}, main)


def multilingual_coercion(w: World, rng: np.random.Generator, camp: Campaign, p: FamilyParams) -> Block:
    """Reasoning-trace coercion, largely non-English: each account works in one or two languages."""
    infra = Infra(
        None,
        cards(w, p),
        pool(w, rng, p, ("alibaba", "tencent", "hetzner", "digitalocean")),
        net.custom_client(rng, "Vendor/Python 0.38.0", "vendor-python/0.38.0"),
        {"free": 0.4, "standard": 0.4, "education": 0.2},
        ("HK", "SG", "RU", "KR", "VN", "KZ"),
        0.4,
    )
    m = provision(w, rng, camp, "multilingual_coercion", p, infra)
    langs_pool = [x for x in w.bank.coercion_langs if x != "en"]
    own = {int(a): list(rng.choice(langs_pool, size=int(rng.integers(1, 3)), replace=False)) for a in m.idx}
    acct, ts = independent(w, rng, m, p.requests_per_account_day)
    temperature = float(rng.choice([0.6, 0.7]))
    sys_hash = None if p.content is None else asks.system_prompt(w, rng, p.content, None)

    def main(sel: np.ndarray) -> Block:
        a, t = acct[sel], ts[sel]
        k = a.shape[0]
        langs = [str(own[int(x)][int(rng.integers(len(own[int(x)])))]) for x in a]
        model = w.models(rng, t, (0.2, 0.3, 0.5), p.pivot_share, p.pivot_ramp_hours)
        if p.content is None:
            texts = w.bank.coercion(rng, langs)
        else:  # the accounts' own languages carry the ask only in the multilingual mode
            native = p.content == "multilingual"
            tasks = asks.native_tasks(w, rng, langs) if native else w.bank.problems(rng, k, True)
            texts, langs = asks.wrap(w, rng, p.content, tasks, langs)
        return make_block(
            a,
            t,
            model,
            texts,
            langs,
            max_tokens=w.cap(model, np.full(k, 16384)),
            temperature=temperature,
            thinking=rng.random(k) < 0.5,
            # the model refuses to reveal its hidden reasoning, not to solve a problem with a plain CoT ask
            refusal_p=0.25 if p.content in (None, "multilingual") else 0.003,
            out_median=2500.0,
            history=0.0,
            sys_hash=sys_hash,
        )

    return _blend(w, rng, acct, ts, p.blend_ratio, {"zh": 0.4, "ru": 0.3, "ko": 0.3}, main)


def low_and_slow(w: World, rng: np.random.Generator, camp: Campaign, p: FamilyParams) -> Block:
    """Careful chain-of-thought harvesting: own card and residential IP per account, human hours, heavy
    blending, low rate; linked only by a template skeleton, a sign-up burst and one client build."""
    infra = Infra(
        None,
        cards(w, p),
        pool(w, rng, p, ("aws", "gcp", "hetzner")),
        net.custom_client(rng, "aiohttp/3.9.5 Python/3.11", "vendor-python/0.37.1"),
        {"standard": 0.6, "free": 0.4},
        ("US", "US", "GB"),
        0.8,
    )
    m = provision(w, rng, camp, "low_and_slow", p, infra)
    mean_len = 3.0
    n_sess = clock.counts(rng, p.requests_per_account_day * (m.active_to - m.active_from) / DAY_MS / mean_len)
    owner = np.repeat(m.idx, n_sess)
    tz = np.array([net.COUNTRIES[w.accounts[int(a)].country or "US"].tz for a in owner])
    starts = clock.local_times(
        rng,
        owner.shape[0],
        np.repeat(m.active_from, n_sess),
        np.repeat(m.active_to, n_sess),
        tz,
        clock.HUMAN,
        weekend=0.6,
    )
    ts, sess, pos = clock.sessions(rng, starts, rng.geometric(1.0 / mean_len, owner.shape[0]), 90.0, 10.0)
    acct = owner[sess]
    keep = ts < w.end_ms
    acct, ts, pos = acct[keep], ts[keep], pos[keep]
    tag = w.new_id("T", 4).upper()
    own = _own_langs(w, rng, p, m.idx)
    sys_hash = None if p.content is None else asks.system_prompt(w, rng, p.content, None)

    def main(sel: np.ndarray) -> Block:
        a, t = acct[sel], ts[sel]
        model = w.models(rng, t, (0.0, 0.4, 0.6), p.pivot_share, p.pivot_ramp_hours)
        if p.content is None:
            texts, langs = w.bank.skeleton(rng, a.shape[0], tag), ["en"] * a.shape[0]
        else:
            texts, langs = asks.skeleton(w, rng, p.content, tag, _langs(rng, p, a, own))
        if p.split_seats > 1:
            texts, langs = split_texts(split_leaders(rng, a, t, p.split_seats), texts, langs)
        return make_block(
            a,
            t,
            model,
            texts,
            langs,
            sys_hash=sys_hash,
            turns=1 + 2 * pos[sel],
            max_tokens=w.cap(model, np.full(a.shape[0], 4096)),
            temperature=0.7,
            stream=True,
            out_median=1100.0,
            history=250.0,
        )

    return _blend(w, rng, acct, ts, p.blend_ratio, {"en": 1.0}, main)


def logprob_harvest(w: World, rng: np.random.Generator, camp: Campaign, p: FamilyParams) -> Block:
    """Distribution harvesting: logprobs with high top_logprobs, n > 1, fixed temperature, shared infra."""
    infra = Infra(
        None,
        cards(w, p),
        pool(w, rng, p, ("aws", "gcp")),
        net.custom_client(rng, "OpenAI/Python 1.40.0", "openai-python/1.40.0", "/v1/chat/completions"),
        {"research": 0.5, "startup": 0.5},
        ("US", "SG"),
        0.5,
    )
    m = provision(w, rng, camp, "logprob_harvest", p, infra)
    if p.wave_interval_s > 0:
        acct, ts = waves(w, rng, m, p.requests_per_account_day, p.wave_interval_s)
    else:
        acct, ts = independent(w, rng, m, p.requests_per_account_day)
    own = _own_langs(w, rng, p, m.idx)
    sys_hash = None if p.content is None else asks.system_prompt(w, rng, p.content, None)

    def main(sel: np.ndarray) -> Block:
        a, t = acct[sel], ts[sel]
        k = a.shape[0]
        model = w.models(rng, t, (0.5, 0.3, 0.2), p.pivot_share, p.pivot_ramp_hours)
        texts, langs = w.bank.instructions(rng, k), ["en"] * k
        if p.content is not None:
            texts, langs = asks.wrap(w, rng, p.content, texts, _langs(rng, p, a, own))
        return make_block(
            a,
            t,
            model,
            texts,
            langs,
            sys_hash=sys_hash,
            n=rng.choice(np.array([4, 8]), size=k),
            logprobs=1,
            top_logprobs=20,
            temperature=1.0,
            max_tokens=rng.choice(np.array([256, 512]), size=k),
            out_median=120.0,
            history=0.0,
        )

    return _blend(w, rng, acct, ts, p.blend_ratio, {"en": 1.0}, main)


FAMILY_GENERATORS: dict[str, Callable[[World, np.random.Generator, Campaign, FamilyParams], Block]] = {
    "cot_hydra": cot_hydra,
    "agentic_pivot": agentic_pivot,
    "multilingual_coercion": multilingual_coercion,
    "low_and_slow": low_and_slow,
    "logprob_harvest": logprob_harvest,
}


def run_families(w: World, params: SimParams) -> list[Block]:
    """Every campaign of every family, in a fixed order."""
    blocks = []
    for family, gen in FAMILY_GENERATORS.items():
        fp: FamilyParams = getattr(params, family)
        for i in range(fp.campaigns):
            offset = fp.start_offsets[i % len(fp.start_offsets)] if fp.start_offsets else 0.0
            start = w.start_ms + int(offset * (w.end_ms - w.start_ms))
            camp = w.new_campaign(family, CAMPAIGN_TYPES[family], start)
            blocks.append(gen(w, w.rng("campaign", family, str(i)), camp, fp))
    return blocks
