"""Issue 17's simulator knobs and honest look-alikes: each knob value changes the traffic as it claims,
the look-alikes have their defining properties, the default run stays byte-for-byte the golden one."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from detector.lab.simulate import FAMILIES, SimParams, simulate, workshop
from detector.lab.simulate.asks import STOCK_PHRASES
from detector.lab.simulate.block import Block
from detector.lab.simulate.campaigns import run_families
from detector.lab.simulate.params import CONTENT_MODES, LOOKALIKE_PERSONAS, LOOKALIKE_SIZES, ContentMode
from detector.lab.simulate.prompts import PromptBank
from detector.lab.simulate.world import World

ROOT = Path(__file__).resolve().parents[1]
BANK = PromptBank.load(None)
ASKS: dict[str, Any] = BANK.d["asks"]


def _stock(text: str) -> bool:
    low = text.lower()
    return any(p in low for p in STOCK_PHRASES)


def _only(family: str, **knobs: Any) -> SimParams:
    """One campaign of ``family`` (20 accounts, no ordinary blend), no other family, given knobs."""
    base = SimParams()
    update: dict[str, Any] = {f: getattr(base, f).model_copy(update={"campaigns": 0}) for f in FAMILIES}
    update[family] = getattr(base, family).model_copy(
        update={"campaigns": 1, "cluster_size": 20, "blend_ratio": 0.0, "requests_per_account_day": 60.0}
        | knobs
    )
    return base.model_copy(update=update)


def _campaign(family: str, mode: ContentMode, seed: int = 3) -> tuple[World, Block]:
    params = _only(family, content=mode)
    w = World(seed, params, BANK, 1.0, 1.0)
    blocks = run_families(w, params)
    assert len(blocks) == 1 and len(blocks[0]) > 0
    return w, blocks[0]


def _asked_rows(family: str, b: Block) -> np.ndarray:
    """The rows that carry the campaign's ask: every request, or an agentic session's opening turn."""
    return np.flatnonzero(b.turns == 1) if family == "agentic_pivot" else np.arange(len(b))


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_content_mode_phrases_the_reasoning_ask_as_it_claims(family: str) -> None:
    # cot_hydra also sends identity probes (3%) and, with explicit asks, rubric grading (25%)
    floor = (
        {"explicit": 0.7, "multilingual": 0.95}
        if family == "cot_hydra"
        else {"explicit": 1.0, "multilingual": 1.0}
    )
    for mode in CONTENT_MODES:
        w, b = _campaign(family, mode)
        rows = _asked_rows(family, b)
        texts = [str(t) for t in b.text[rows]]
        langs = [str(x) for x in b.lang[rows]]
        sys_texts = {w.system_prompts.get(str(h)) for h in b.sys_hash[rows] if h is not None}
        if mode == "explicit":
            assert _share([_stock(t) for t in texts]) >= floor[mode], (family, mode)
            assert _share([x == "en" for x in langs]) >= floor[mode], (family, mode)
        elif mode == "paraphrased":
            assert not any(_stock(str(t)) for t in b.text), (family, mode)
            bodies = [s for s in ASKS["paraphrase"]["body"] if any(s in t for t in texts)]
            assert len(bodies) >= 5, "paraphrases vary from request to request"
        elif mode == "multilingual":
            asked = [
                any(q in t for q in ASKS["multilingual"].get(lang, []))
                for t, lang in zip(texts, langs, strict=True)
            ]
            assert _share(asked) >= floor[mode] and _share([x != "en" for x in langs]) >= floor[mode], family
            assert len(set(langs)) >= 3
        elif mode == "system_prompt_only":
            assert not any(_stock(str(t)) for t in b.text), (family, mode)
            assert all(h is not None for h in b.sys_hash[rows])
            assert sys_texts and all(t is not None and _stock(t) for t in sys_texts), sys_texts
        else:  # none: no ask in the prompt nor in any system prompt the campaign sets
            assert not any(_stock(str(t)) for t in b.text), (family, mode)
            assert all(t is None or not _stock(t) for t in sys_texts)


def test_the_same_task_differs_only_by_its_ask() -> None:
    """system_prompt_only and none keep the family's task as it is: the user prompt is the bare task."""
    _, bare = _campaign("logprob_harvest", "none")
    _, asked = _campaign("logprob_harvest", "explicit")
    instructions = [str(t) for t in bare.text]
    assert not any(_stock(t) for t in instructions)
    assert all(any(q in str(t) for q in ASKS["explicit"]) for t in asked.text)


def _run(tmp: Path, params: SimParams, seed: int = 4, days: float = 1.0, scale: float = 0.25) -> pl.DataFrame:
    simulate(tmp, days=days, seed=seed, scale=scale, params=params)
    labels = json.loads((tmp / "labels.json").read_text())["accounts"]
    ev = pl.read_parquet(tmp / "events.parquet").unnest("client").unnest("account", "params")
    return ev.with_columns(
        pl.col("account_id").replace_strict({k: v["persona"] for k, v in labels.items()}).alias("persona")
    )


@pytest.mark.parametrize("family", ["cot_hydra", "low_and_slow"])
def test_split_best_of_k_sends_each_problem_once_from_k_seats(family: str) -> None:
    """Round 12's knob: each reasoning problem once from each of k seats, never twice from one, and no
    problem held by the whole cluster; without the knob each problem is one seat's."""
    holders: dict[int, dict[str, dict[int, int]]] = {}
    for k in (0, 5):
        params = _only(family, split_seats=k, content="explicit")
        b = run_families(World(3, params, BANK, 1.0, 1.0), params)[0]
        per: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for a, text in zip(b.acct.tolist(), b.text.tolist(), strict=True):
            per[text][a] += 1
        holders[k] = per
    # cot_hydra's identity probes are a fixed few texts every seat sends: only the problems are split
    split = [h for h in holders[5].values() if max(h.values()) == 1 and len(h) > 1]
    assert split and sum(len(h) > 5 for h in split) / len(split) < 0.05
    assert sum(len(h) == 5 for h in split) / len(split) > 0.8
    problems = [h for h in holders[0].values() if max(h.values()) == 1]
    assert sum(len(h) > 1 for h in problems) / len(problems) < 0.05


def test_agent_split_runs_each_task_once_from_k_seats() -> None:
    """Round 13: a best-of-k harvest of agent trajectories: each task (a session's opener) from k seats.
    The split's mark is that most openers' texts are held by exactly k seats, each once (round 19: the
    farm's tasks come from its procedural bank, so without the knob almost none is shared)."""

    def holders(k: int) -> list[dict[int, int]]:
        params = _only("agentic_pivot", split_seats=k, content="explicit", session_turns=3.0)
        b = run_families(World(3, params, BANK, 1.0, 1.0), params)[0]
        rows = _asked_rows("agentic_pivot", b)
        per: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for a, text in zip(b.acct[rows].tolist(), b.text[rows].tolist(), strict=True):
            per[text][a] += 1
        return [dict(h) for h in per.values()]

    def by_five_once(hs: list[dict[int, int]]) -> float:
        """The share of openers whose text five seats send, each once."""
        sent = sum(sum(h.values()) for h in hs)
        return sum(5 for h in hs if len(h) == 5 and max(h.values()) == 1) / sent

    on, off = holders(5), holders(0)
    assert by_five_once(on) > 0.6 and by_five_once(off) < 0.05
    assert max(len(h) for h in on) < 20, "no task held by the whole cluster"


def test_the_agent_split_changes_only_the_agent_farms_openers() -> None:
    """Round 13: the agentic split re-texts the farm's session openers and nothing else: the same
    requests at the same times, later turns as they were, every other family's traffic as it was."""
    base = SimParams()
    on = base.model_copy(update={"agentic_pivot": base.agentic_pivot.model_copy(update={"split_seats": 6})})
    blocks = {k: run_families(World(5, p, BANK, 1.0, 0.25), p) for k, p in (("off", base), ("on", on))}
    assert len(blocks["off"]) == len(blocks["on"]) >= len(FAMILIES)
    changed = 0
    for off, b in zip(blocks["off"], blocks["on"], strict=True):
        for name in ("acct", "ts", "turns"):
            assert np.array_equal(getattr(off, name), getattr(b, name))
        same = off.text == b.text
        if same.all():
            continue
        changed += 1
        assert (b.turns[~same] == 1).all(), "only session openers are re-texted"
    assert changed == 1, "the agent farm's block, no other"


def test_rotating_proxy_sends_campaigns_through_exits_honest_users_send_from(tmp_path: Path) -> None:
    params = _only("cot_hydra", rotating_proxy=True).model_copy(
        update={"residential_vpn": SimParams().residential_vpn.model_copy(update={"accounts": 160})}
    )
    ev = _run(tmp_path, params)
    exits = set(World(4, params, BANK, 1.0, 0.25).proxy_exits())
    attack = set(ev.filter(pl.col("persona") == "cot_hydra")["ip"].to_list())
    honest = set(ev.filter(pl.col("persona") == "residential_vpn")["ip"].to_list())
    assert attack <= exits and len(attack) > 20, "the campaign leaves only through the network's exits"
    assert len(attack & honest) >= 5, "honest users really send from some of the same exits"
    owners = (
        ev.filter(pl.col("persona") == "residential_vpn").group_by("account_id").agg(pl.col("ip").unique())
    )
    # (an exit owner's few requests may all come from their phone, not from home)
    assert owners.height == 40 and _share([bool(set(x) & exits) for x in owners["ip"].to_list()]) > 0.9
    # without the knob the same family keeps its own addresses
    ev2 = _run(tmp_path / "off", _only("cot_hydra"))
    assert not set(ev2.filter(pl.col("persona") == "cot_hydra")["ip"].to_list()) & exits


@pytest.mark.parametrize("family", FAMILIES)
def test_verified_knob_verifies_every_member_and_changes_nothing_else(family: str) -> None:
    """Bought aged, verified accounts (round 12): ``verified_share=1.0`` verifies every member, churn
    replacements too; the traffic and every other account field are what they were without it."""

    def members(**knobs: Any) -> tuple[list[Any], Block]:
        w = World(3, _only(family, account_age_days=300.0, **knobs), BANK, 1.0, 1.0)
        (b,) = run_families(w, w.params)
        return [a for a in w.accounts if a.persona == family], b

    (on, b_on), (off, b_off) = members(verified_share=1.0), members()
    assert len(on) == len(off) >= 20 and all(a.verified for a in on)
    assert not all(a.verified for a in off), "the family's own share (0.3-0.8) leaves some unverified"
    assert [replace(a, verified=None) for a in on] == [replace(a, verified=None) for a in off]
    assert np.array_equal(b_on.ts, b_off.ts) and np.array_equal(b_on.acct, b_off.acct)


def test_router_campaign_shares_the_routers_keys_with_its_honest_customers(tmp_path: Path) -> None:
    params = _only("low_and_slow", via_router=True).model_copy(
        update={"router_customers": SimParams().router_customers.model_copy(update={"accounts": 400})}
    )
    ev = _run(tmp_path, params)
    keys = ("reseller_id", "org_id", "payment_fingerprint", "tls_fingerprint", "user_agent")
    attack, honest = (
        ev.filter(pl.col("persona") == "low_and_slow"),
        ev.filter(pl.col("persona") == "router_customers"),
    )
    # 100 customers and one company's team of 8-20 seats (``router_team``)
    assert 108 <= honest["account_id"].n_unique() <= 120 and attack["account_id"].n_unique() >= 5
    for key in keys:
        values = set(attack[key].to_list())
        assert len(values) == 1 and values == set(honest[key].to_list()), key
    assert set(attack["ip"].to_list()) <= set(honest["ip"].to_list())
    assert set(attack["tier"].to_list()) == set(honest["tier"].to_list()) == {"reseller"}
    # the router's customers have been with it for a long time; the campaign's sub-accounts are new
    created = honest.group_by("account_id").agg(pl.col("created_at").first())["created_at"].str.to_datetime()
    assert (created < datetime(2026, 2, 1, tzinfo=UTC)).mean() > 0.8  # type: ignore[operator]
    ev2 = _run(tmp_path / "off", _only("low_and_slow"))
    assert ev2.filter(pl.col("persona") == "low_and_slow")["reseller_id"].null_count() == len(
        ev2.filter(pl.col("persona") == "low_and_slow")
    )


@pytest.fixture(scope="module")
def lookalikes(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, World]:
    base = SimParams()
    sizes = {"tutoring_backend": 2, "translation_company": 6, "internal_tool_team": 30}
    sizes |= {"router_customers": 60, "residential_vpn": 20, "hackathon_cohort": 40, "eval_startup": 6}
    sizes["startup_build_team"] = 8
    sizes["remote_workshop"] = 20
    sizes["personal_tool_team"] = 12  # round 22: after the campaigns, its own streams
    update: dict[str, Any] = {f: getattr(base, f).model_copy(update={"campaigns": 0}) for f in FAMILIES}
    # persona counts are scaled: ask for size / scale to get the stated size
    update |= {n: getattr(base, n).model_copy(update={"accounts": round(k / 0.05)}) for n, k in sizes.items()}
    # every account ships its text: which accounts ship only the SimHash (``text_free_fraction``) is
    # drawn over all accounts, so a look-alike added would otherwise hide another's prompts
    update["text_free_fraction"] = 0.0
    params = base.model_copy(update=update)
    ev = _run(tmp_path_factory.mktemp("look"), params, seed=9, days=1.0, scale=0.05)
    return ev, World(9, params, BANK, 1.0, 0.05)


def _by_persona(ev: pl.DataFrame, persona: str) -> pl.DataFrame:
    return ev.filter(pl.col("persona") == persona)


def test_every_lookalike_is_present_and_none_is_in_the_default_run(
    lookalikes: tuple[pl.DataFrame, World],
) -> None:
    ev, _ = lookalikes
    assert set(LOOKALIKE_PERSONAS) <= set(ev["persona"].to_list())
    assert all(getattr(SimParams(), p).accounts == 0 for p in LOOKALIKE_PERSONAS)


def _tutoring_problem(text: str) -> str | None:
    """The homework problem inside a tutoring template (the template's other slots vary)."""
    for tpl in BANK.d["tutoring"]["templates"]:
        pattern = re.escape(tpl).replace(re.escape("{problem}"), "(?P<p>.+)")
        pattern = re.sub(r"\\\{\w+\\\}", ".*?", pattern)
        m = re.fullmatch(pattern, text, flags=re.S)
        if m:
            return m.group("p")
    return None


def test_tutoring_backend_is_one_verified_tenant_with_huge_repeated_step_by_step_volume(
    lookalikes: tuple[pl.DataFrame, World],
) -> None:
    t = _by_persona(lookalikes[0], "tutoring_backend")
    assert t["account_id"].n_unique() == 2
    for key in ("org_id", "payment_fingerprint", "system_prompt_hash"):
        assert t[key].n_unique() == 1, key
    assert t["verified"].all() and set(t["tier"].to_list()) == {"enterprise"}
    assert (t["created_at"].str.to_datetime() < datetime(2025, 6, 1, tzinfo=UTC)).all()
    per_account = t.group_by("account_id").len()["len"]
    assert per_account.max() > 5000  # type: ignore[operator]
    first = t.filter(pl.col("prompt").struct.field("turns") == 1)["prompt"].struct.field("text").drop_nulls()
    # "explain step by step", "show your work": the product's own words, in most templates
    assert (first.map_elements(_stock, return_dtype=pl.Boolean)).mean() > 0.3  # type: ignore[operator]
    assert _stock(BANK.d["tutoring"]["system"])
    problems = [_tutoring_problem(t) for t in first.to_list()]
    assert all(problems) and len(set(problems)) <= 600, "students ask the same homework problems"
    assert len(set(problems)) < 0.2 * len(problems)


def test_translation_company_is_multilingual_office_traffic_on_one_card(
    lookalikes: tuple[pl.DataFrame, World],
) -> None:
    t = _by_persona(lookalikes[0], "translation_company")
    assert (
        t["account_id"].n_unique() == 6 and t["org_id"].n_unique() == t["payment_fingerprint"].n_unique() == 1
    )
    assert t["ip"].n_unique() <= 2 and t["prompt"].struct.field("lang").n_unique() >= 6
    assert t.height > 6 * 300


def test_internal_tool_team_shares_one_system_prompt_template_and_office(
    lookalikes: tuple[pl.DataFrame, World],
) -> None:
    ev, _ = lookalikes
    t = _by_persona(ev, "internal_tool_team")
    assert 10 <= t["account_id"].n_unique() <= 60
    assert t["org_id"].n_unique() == t["payment_fingerprint"].n_unique() == 1
    tool = t.filter(pl.col("system_prompt_hash").is_not_null())
    assert tool["system_prompt_hash"].n_unique() == 1 and tool.height > 0.8 * t.height
    # the office NAT: the team's two most used addresses (each request picks one of a member's addresses,
    # so a member with enough requests has used one of them whatever else it has; a plain intersection
    # over members depends on which of the two each happened to use)
    nat = set(t.group_by("ip").agg(pl.col("account_id").n_unique().alias("n")).sort("n")["ip"][-2:])
    ips = t.group_by("account_id").agg(pl.col("ip").unique(), pl.len().alias("k")).filter(pl.col("k") >= 10)
    assert ips.height >= 5 and all(nat & set(x) for x in ips["ip"].to_list()), (
        "every member sends from the office NAT"
    )
    hours = t["ts"].str.to_datetime().dt.hour()
    assert hours.is_between(6, 18).mean() > 0.8  # type: ignore[operator]


def test_startup_build_team_opened_within_days_on_a_build_nobody_else_holds(
    lookalikes: tuple[pl.DataFrame, World],
) -> None:
    """Round 9: the honest shape of a sign-up cohort: a private build, most of its holders opened
    together, each a personal account (own org), unverified, with no extraction in its traffic."""
    ev, _ = lookalikes
    t = _by_persona(ev, "startup_build_team")
    assert t["account_id"].n_unique() == 8 and t["org_id"].n_unique() == 8
    build = set(zip(t["tls_fingerprint"], t["sdk"], strict=True))
    assert len(build) == 1, "every request through the in-house build"
    others = ev.filter(pl.col("persona") != "startup_build_team")
    assert not build & set(zip(others["tls_fingerprint"], others["sdk"], strict=True)), "nobody else holds it"
    created = t["created_at"].str.to_datetime()
    assert (created.max() - created.min()).total_seconds() <= 4 * 86400  # type: ignore[operator,union-attr]
    assert created.max() < t["ts"].str.to_datetime().min()  # type: ignore[operator]
    assert not t["verified"].any()
    assert (t["logprobs"].fill_null(False)).mean() < 0.2  # type: ignore[operator]


def test_remote_workshop_is_a_course_at_home_on_one_exercise_sheet(
    lookalikes: tuple[pl.DataFrame, World],
) -> None:
    """Round 10: a hackathon without the room: fresh personal accounts (own org, unverified) on one
    course's system prompt, each from its own home or the course's hosted notebook (no venue network
    holds most of them), working through the same exercises: the texts repeat across participants."""
    t = _by_persona(lookalikes[0], "remote_workshop")
    assert t["account_id"].n_unique() == 20 and t["org_id"].n_unique() == 20
    assert not t["verified"].any()
    prefixes = t.group_by("account_id").agg(pl.col("ip").first().str.replace(r"[.:][^.:]+$", ""))
    assert prefixes["ip"].n_unique() >= 15, "no venue network: their own homes"
    sys = t.filter(pl.col("system_prompt_hash").is_not_null())
    assert sys["system_prompt_hash"].n_unique() == 1 and sys["account_id"].n_unique() == 20
    # (an agent course's later turns are its tool results, the same literal outputs for everyone: the
    # sheet is what opens a session, ``test_an_agent_courses_exercise_runs_the_agent_loop``)
    text = t.filter(pl.col("prompt").struct.field("turns").fill_null(1) <= 1)
    text = text.with_columns(pl.col("prompt").struct.field("text").alias("text"))
    holders = text.group_by("text").agg(
        pl.col("account_id").n_unique().alias("n"), pl.col("system_prompt_hash").null_count().alias("bare")
    )
    # texts five participants sent, always through the course's system prompt: the exercise sheet (their
    # own experiments after it draw common questions too, a few of them also five participants')
    sheet = holders.filter((pl.col("n") >= 5) & (pl.col("bare") == 0))
    assert 4 <= sheet.height <= 16 and sheet["n"].max() >= 10, "the same exercises from many participants"
    # each participant sends an exercise once, a few twice or three times (a retry), never more: a
    # course wants one working answer, not the many samples of a problem that best-of-n needs
    sends = text.join(sheet, on="text").group_by("account_id", "text").len()["len"]
    assert sends.max() == 3 or sends.max() == 2, "some retries"  # type: ignore[operator]
    assert (sends == 1).mean() > 0.6  # type: ignore[operator]


def test_an_agent_courses_exercise_runs_the_agent_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Round 11: an agent course's exercise is a short agent loop, not one request: the sheet's
    instruction opens a session (turn 1, the same texts from many participants), the tool results come
    back as its later turns (3, 5, ...), a few requests an exercise, never a farm's 30-turn sessions."""
    monkeypatch.setattr(workshop, "COURSES", {"agent": 1.0})
    params = SimParams()
    w = World(5, params, BANK, 1.0, 1.0)
    b = workshop.remote_workshop(w, params.remote_workshop.model_copy(update={"accounts": 30}))
    tool = b.tools >= 5  # the exercises (their own experiments after the session carry no tools)
    opener, later = tool & (b.turns == 1), tool & (b.turns > 1)
    assert opener.sum() >= 30 and later.sum() > 0 and (b.turns[tool] % 2 == 1).all()
    assert b.turns[tool].max() <= 1 + 2 * (workshop.AGENT_LOOP_MAX - 1)
    assert 1.2 <= tool.sum() / opener.sum() <= workshop.AGENT_LOOP[1] + 1.0
    holders: dict[str, set[int]] = defaultdict(set)
    for a, text in zip(b.acct[opener], b.text[opener], strict=True):
        holders[str(text)].add(int(a))
    assert max(len(v) for v in holders.values()) >= 10, "the sheet's exercises open the sessions"


def test_router_customers_are_sub_accounts_of_one_verified_router(
    lookalikes: tuple[pl.DataFrame, World],
) -> None:
    t = _by_persona(lookalikes[0], "router_customers")
    # 60 customers and one company's team of 8-20 seats (``router_team``)
    assert 68 <= t["account_id"].n_unique() <= 80 and t["verified"].all()
    for key in ("reseller_id", "org_id", "payment_fingerprint", "tls_fingerprint"):
        assert t[key].n_unique() == 1 and t[key].null_count() == 0, key
    assert t["ip"].n_unique() <= 24, "the router's egress addresses"
    assert t["prompt"].struct.field("lang").n_unique() >= 5


def test_one_company_team_among_the_router_customers_shares_its_tools_system_prompt(
    lookalikes: tuple[pl.DataFrame, World],
) -> None:
    """Round 7 (issue 17): among the router's customers, one company's team reaches the model through
    the router from its internal tool: 8-20 seats sharing one system prompt (and the router's org, card,
    egress and client build, like every customer), most opened in the admin's batch at rollout, used
    in office hours. It is what a campaign through the router shares beyond the router."""
    t = _by_persona(lookalikes[0], "router_customers").filter(pl.col("system_prompt_hash").is_not_null())
    seats = t.group_by("system_prompt_hash").agg(pl.col("account_id").n_unique().alias("n")).sort("n")
    assert 8 <= seats["n"][-1] <= 20, "one system prompt on the team's seats"
    assert seats["n"][-2] == 1, "every other customer's system prompt is its own"
    team = t.filter(pl.col("system_prompt_hash") == seats["system_prompt_hash"][-1])
    assert team["org_id"].n_unique() == 1 and team["reseller_id"].n_unique() == 1
    hours = team["ts"].str.to_datetime().dt.hour()
    assert hours.is_between(5, 20).mean() > 0.8  # type: ignore[operator]


def test_simulation_with_every_knob_is_deterministic(tmp_path: Path) -> None:
    base = SimParams()
    update: dict[str, Any] = {
        f: getattr(base, f).model_copy(
            update={"content": CONTENT_MODES[i], "rotating_proxy": i % 2 == 0, "via_router": i % 2 == 1}
        )
        for i, f in enumerate(FAMILIES)
    }
    update |= {n: getattr(base, n).model_copy(update={"accounts": 3}) for n in LOOKALIKE_PERSONAS}
    params = base.model_copy(update=update)
    for name in ("a", "b"):
        simulate(tmp_path / name, days=0.5, seed=12, scale=0.05, params=params)
    for name in ("events.jsonl", "labels.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    personas = defaultdict(int)
    for a in json.loads((tmp_path / "a" / "labels.json").read_text())["accounts"].values():
        personas[a["persona"]] += 1
    assert set(LOOKALIKE_PERSONAS) <= set(personas)


def test_the_default_run_still_makes_the_golden_scenarios_byte_for_byte(tmp_path: Path) -> None:
    """The knobs and look-alikes are off by default: regenerating the golden scenarios changes no event."""
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_scenarios.py"), "--out", str(tmp_path)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    cases = sorted(
        p.name for p in (ROOT / "tests" / "scenarios").iterdir() if (p / "events.jsonl.gz").is_file()
    )
    assert cases and cases == sorted(p.name for p in tmp_path.iterdir())
    for case in cases:
        new = gzip.decompress((tmp_path / case / "events.jsonl.gz").read_bytes())
        assert new == gzip.decompress(
            (ROOT / "tests" / "scenarios" / case / "events.jsonl.gz").read_bytes()
        ), case


def test_simulate_cli_adds_the_lookalikes_at_their_sizes_whatever_the_scale(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from detector.cli.main import app

    # half a day: the tutoring QA account runs at 09:00 UTC
    args = ["simulate", "--out", str(tmp_path), "--days", "0.5", "--scale", "0.05", "--json", "--lookalikes"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    labels = json.loads((tmp_path / "labels.json").read_text())["accounts"]
    counts: dict[str, int] = defaultdict(int)
    for a in labels.values():
        counts[a["persona"]] += 1
    # the router's customers and one company's team of 8-20 seats among them (``router_team``)
    assert 8 <= counts["router_customers"] - LOOKALIKE_SIZES["router_customers"] <= 20
    assert counts["tutoring_backend"] == LOOKALIKE_SIZES["tutoring_backend"]
    assert set(LOOKALIKE_PERSONAS) <= set(counts)


def test_a_popular_tools_users_open_their_accounts_partly_in_adoption_waves() -> None:
    """The coding tool's users: with the look-alikes on, up to 30% came in its adoption waves (months
    ago: established customers now), where two or three land in one half hour by chance; off by
    default, without a random draw (the default run is byte-for-byte the golden one)."""
    from collections import Counter

    from detector.lab.simulate import signups
    from detector.lab.simulate.clock import DAY_MS, MIN_MS
    from detector.lab.simulate.params import CODER_WAVE_SHARE, with_lookalikes

    assert SimParams().agentic_coder.adoption_wave_share == 0.0
    assert with_lookalikes(SimParams(), 1.0).agentic_coder.adoption_wave_share == CODER_WAVE_SHARE > 0
    w = World(5, SimParams(), BANK, 1.0, 1.0)
    rng = np.random.default_rng(5)
    assert signups.adoption_waves(rng, w, 0.0) is None
    assert rng.random() == np.random.default_rng(5).random(), "no draw when the waves are off"
    start = w.start_ms - 200 * DAY_MS
    waves = signups.Waves(0.3, np.asarray([start], dtype=np.int64))
    created = [signups.wave_created(rng, waves) for _ in range(1000)]
    in_wave = [c for c in created if c is not None]
    assert 0.25 < len(in_wave) / len(created) < 0.35
    assert all(start <= c < w.start_ms - 30 * DAY_MS for c in in_wave), "established by now"
    windows = Counter((c - start) // (30 * MIN_MS) for c in in_wave)
    assert max(windows.values()) >= 3, "several open in one half hour of a wave, each on their own"


def test_a_popular_tools_users_may_sit_in_one_regional_hub_with_its_own_launch() -> None:
    """Round 11: with the look-alikes on, up to half of the coding tool's users sit in one regional hub
    (a country whose working day is the UTC night), some of whom opened their accounts in its regional
    launch event (hours, months ago); off by default, without a random draw."""
    from collections import Counter

    from detector.lab.simulate import signups
    from detector.lab.simulate.clock import DAY_MS, MIN_MS
    from detector.lab.simulate.params import CODER_HUB_MAX_SHARE, with_lookalikes

    assert SimParams().agentic_coder.regional_hub_max_share == 0.0
    assert with_lookalikes(SimParams(), 1.0).agentic_coder.regional_hub_max_share == CODER_HUB_MAX_SHARE > 0
    w = World(5, SimParams(), BANK, 1.0, 1.0)
    rng = np.random.default_rng(5)
    assert signups.regional_hub(rng, w, 0.0) is None
    assert signups.hub_member(rng, None) == (False, None)
    assert rng.random() == np.random.default_rng(5).random(), "no draw when the hub is off"
    hubs = [signups.regional_hub(rng, w, CODER_HUB_MAX_SHARE) for _ in range(200)]
    assert all(h is not None and 0 <= h.share <= CODER_HUB_MAX_SHARE for h in hubs)
    assert {h.country for h in hubs if h is not None} == set(signups.HUB_COUNTRIES)
    hub = signups.Hub(0.5, "JP", 0.5, w.start_ms - 200 * DAY_MS)
    members = [signups.hub_member(rng, hub) for _ in range(2000)]
    launched = [c for inside, c in members if inside and c is not None]
    assert 0.45 < sum(inside for inside, _ in members) / 2000 < 0.55
    assert 0.2 < len(launched) / 2000 < 0.3
    assert all(hub.launch_start <= c < w.start_ms - 30 * DAY_MS for c in launched), "established by now"
    windows = Counter((c - hub.launch_start) // (30 * MIN_MS) for c in launched)
    assert max(windows.values()) >= 5, "a launch event: many open in one half hour, each on their own"


def test_about_a_third_of_teams_tools_run_on_a_reasoning_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Round 9: a team's tool either runs on a reasoning model (a thinking budget on every tool request,
    ``max_tokens`` up to the model's maximum, which the budget needs, and reasoning-sized outputs) or
    sends neither; drawn per tool from its own stream, about a third of tools do."""
    from detector.lab.simulate import businesses

    params = SimParams().model_copy(
        update={"internal_tool_team": SimParams().internal_tool_team.model_copy(update={"accounts": 20})}
    )
    assert 0.25 <= businesses._REASONING_TOOL_SHARE <= 0.45  # about a third of tools
    for share, thinking in ((1.0, True), (0.0, False)):
        monkeypatch.setattr(businesses, "_REASONING_TOOL_SHARE", share)
        block = businesses.internal_tool_team(World(9, params, BANK, 1.0, 1.0), params.internal_tool_team)
        tool = np.asarray([h is not None for h in block.sys_hash])
        assert tool.sum() > 50
        assert bool(np.all(block.thinking[tool] == thinking))
        assert bool(np.all(block.max_tokens[tool] > 2048)) == thinking
        assert not block.thinking[~tool].all()  # someone asking the model directly: its own habits


def test_an_agentic_farm_chooses_its_session_length() -> None:
    """``session_turns`` (the matrix's ``session`` knob) sets an agentic farm's requests a session: a farm
    of short loops is simulated, not only ~30-turn runs (issue 17, round 12); its volume stays."""
    sizes = {}
    for turns in (3.0, 30.0):
        params = _only("agentic_pivot", session_turns=turns)
        b = run_families(World(3, params, BANK, 1.0, 1.0), params)[0]
        per_session = len(b) / int((b.turns == 1).sum())
        assert 0.7 * turns <= per_session <= 1.3 * turns, turns
        sizes[turns] = len(b)
    assert 0.6 <= sizes[3.0] / sizes[30.0] <= 1.6
