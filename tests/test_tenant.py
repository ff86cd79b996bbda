"""Aged sub-accounts of a router on the account axis (issue 17, round 8).

A router's sub-account carries the router's verification and its own tenure with the router: on the
account axis that trust covers what the router's customers do at volume (chat, apps, comparing models on
benchmarks that ask for steps), not coercing the model's hidden reasoning or harvesting its
distribution. Through the shipped rules, models and fusion (``test_evidence._verdict``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_evidence import _frame, _verdict

from detector.app import build_engine
from detector.contracts import SEVERITY_RANK
from detector.detect.evidence import add_axes, extraction_checks
from detector.engine import Engine
from detector.lab.simulate import SimParams
from detector.lab.simulate.intermediaries import router_calibration, router_judges, router_uncertainty
from detector.lab.simulate.prompts import PromptBank
from detector.lab.simulate.world import World
from detector.settings import EvidenceSettings
from detector.window.dilution import BEYOND_A_TOOL, BEYOND_ROUTER_TRUST

ROOT = Path(__file__).resolve().parents[1]

#: A sub-account of the router (its tier, its verification), opened with the router 300 days ago.
SUB_ACCOUNT: dict[str, Any] = {
    "tier": "reseller",
    "verified": True,
    "account_age_days": 300.0,
    "active_hours_24h": 20,
    "hosted_ip_share_24h": 1.0,
}
#: An aged campaign account behind the router harvesting the distribution (draw 450's logprob_harvest,
#: blend 0-30%: 137 requests a day, logprobs with several completions on most).
LOGPROB_HARVEST: dict[str, Any] = {
    "requests_24h": 137,
    "logprob_share_24h": 0.85,
    "n_gt1_share_24h": 0.85,
    "temp0_share_24h": 0.0,
}
#: An aged campaign account behind the router coercing reasoning traces in its languages with
#: extraction-sized outputs (draw 301's multilingual_coercion: each account in one or two languages).
COERCION: dict[str, Any] = {
    "requests_24h": 30,
    "cot_share_24h": 0.7,
    "coercion_share_24h": 0.35,
    "thinking_share_24h": 0.45,
    "max_tokens_high_share_24h": 0.8,
}
#: One of the router's customers comparing models: a benchmark at temperature 0 asking for steps, 8192
#: output tokens (the router's ``_model_comparison``), on the new model's launch day.
MODEL_COMPARISON: dict[str, Any] = {
    "requests_24h": 110,
    "requests_1h": 100,
    "cot_share_24h": 0.95,
    "max_tokens_high_share_24h": 0.9,
    "temp0_share_24h": 1.0,
    "new_model_share_24h": 0.5,
    "active_hours_24h": 2,
}
#: One of the router's customers studying calibration: log-probabilities of a few answer tokens, one
#: completion, benchmark questions at temperature 0 (``intermediaries.router_calibration``).
CALIBRATION: dict[str, Any] = {
    "requests_24h": 120,
    "cot_share_24h": 0.9,
    "logprob_share_24h": 1.0,
    "n_gt1_share_24h": 0.0,
    "temp0_share_24h": 1.0,
    "active_hours_24h": 3,
}


@pytest.fixture(scope="module")
def engine() -> Engine:
    return build_engine(ROOT / "rules")


@pytest.mark.parametrize("traffic", [LOGPROB_HARVEST, COERCION], ids=["logprobs", "coercion"])
def test_an_aged_router_sub_account_harvesting_is_accused(engine: Engine, traffic: dict[str, Any]) -> None:
    sev, reasons = _verdict(engine, "account", **(SUB_ACCOUNT | traffic))
    assert SEVERITY_RANK[sev] >= SEVERITY_RANK["medium"], reasons
    assert reasons["evidence:trust"].startswith("trust: none")
    # a direct customer's own verification and tenure still cover it (an established research account)
    sev, reasons = _verdict(engine, "account", **(SUB_ACCOUNT | traffic | {"tier": "research"}))
    assert sev == "low"
    assert "capped at low" in reasons["evidence:trust"]


def test_a_router_customer_comparing_models_keeps_the_routers_trust(engine: Engine) -> None:
    sev, reasons = _verdict(engine, "account", **(SUB_ACCOUNT | MODEL_COMPARISON))
    assert sev in ("none", "low"), reasons


def test_a_router_customer_studying_calibration_is_not_accused(engine: Engine) -> None:
    sev, reasons = _verdict(engine, "account", **(SUB_ACCOUNT | CALIBRATION))
    assert sev in ("none", "low"), reasons


def test_the_routers_calibration_researchers_ask_for_a_few_tokens_logprobs_one_completion() -> None:
    w = World(7_000_450, SimParams(), PromptBank.load(), 1.0, 1.0)
    b = router_calibration(w, 150)
    accounts = {int(a) for a in b.acct}
    assert len(accounts) == 3
    assert all(w.accounts[a].tier == "reseller" and w.accounts[a].verified for a in accounts)
    assert b.acct.shape[0] >= 20 * len(accounts)
    assert np.all(b.logprobs == 1) and np.all(b.n == 1) and np.all(b.max_tokens <= 16)


#: One of the router's customers grading answers with a model as judge on a reasoning model (draw-like
#: values from ``intermediaries.router_judges`` replayed: half its rubric prompts carry the markers,
#: a thinking budget and near-maximum ``max_tokens`` on every request, temperature 0, one batch run).
REASONING_JUDGE: dict[str, Any] = {
    "requests_24h": 301,
    "requests_1h": 19,
    "rubric_share_24h": 0.49,
    "thinking_share_24h": 1.0,
    "max_tokens_high_share_24h": 1.0,
    "temp0_share_24h": 1.0,
    "out_in_ratio_24h": 2.83,
    "interarrival_cv_24h": 16.6,
    "template_top_share_24h": 0.29,
    "active_hours_24h": 3,
    "hosted_ip_share_24h": 0.0,
}


def test_a_router_customers_judge_pipeline_keeps_the_routers_trust(engine: Engine) -> None:
    """Rubric grading is on the cluster axis's list of what no team's tool needs, not on the router
    trust's (``dilution.BEYOND_ROUTER_TRUST``): with it, this judge on a reasoning model reached medium
    through the account model (round 10's scratch check)."""
    sev, reasons = _verdict(engine, "account", **(SUB_ACCOUNT | REASONING_JUDGE))
    assert sev in ("none", "low"), reasons
    # the same traffic coercing the reasoning trace as well is no judge's: the trust goes
    coercing = REASONING_JUDGE | {"coercion_share_24h": 0.4}
    sev, reasons = _verdict(engine, "account", **(SUB_ACCOUNT | coercing))
    assert SEVERITY_RANK[sev] >= SEVERITY_RANK["medium"], reasons
    assert reasons["evidence:trust"].startswith("trust: none")


def test_the_two_lists_of_extraction_beyond_a_tool_differ_by_rubric_grading_only() -> None:
    names = set(extraction_checks(EvidenceSettings()))
    assert set(BEYOND_ROUTER_TRUST) < set(BEYOND_A_TOOL) <= names
    assert set(BEYOND_A_TOOL) - set(BEYOND_ROUTER_TRUST) == {"rubric grading"}


def test_the_routers_judge_pipelines_grade_with_rubrics_at_temperature_0() -> None:
    w = World(7_000_451, SimParams(), PromptBank.load(), 1.0, 1.0)
    b = router_judges(w, 400)
    accounts = sorted({int(a) for a in b.acct})
    assert len(accounts) == 8
    assert all(w.accounts[a].tier == "reseller" and w.accounts[a].verified for a in accounts)
    assert all(w.accounts[a].persona == "router_judges" for a in accounts)
    assert np.all(b.temperature == 0.0) and b.acct.shape[0] >= 50 * len(accounts)
    thinking = [bool(b.thinking[b.acct == a].all()) for a in accounts]
    # randomized per pipeline: some on a reasoning model (every request), some not (none)
    assert all(bool(b.thinking[b.acct == a].any()) == t for a, t in zip(accounts, thinking, strict=True))
    assert 0 < sum(thinking) < len(accounts)
    graded = sum(any(w in str(t).lower() for w in ("grade", "judge", "score")) for t in b.text)
    assert graded >= 0.5 * b.acct.shape[0]


#: An aged campaign account behind the router harvesting the distribution under a 72% blend of
#: ordinary requests (development draw 455's logprob_harvest, one of the nine seats round 10 left at
#: low): a quarter of its requests ask for logprobs with several completions, under every share bar.
DILUTED_LOGPROB_HARVEST: dict[str, Any] = {
    "requests_24h": 40,
    "requests_1h": 5,
    "logprob_share_24h": 0.25,
    "n_gt1_share_24h": 0.25,
    "out_in_ratio_24h": 21.7,
    "interarrival_cv_24h": 0.8,
    "template_top_share_24h": 0.125,
    "active_hours_24h": 4,
    "hosted_ip_share_24h": 0.0,
}


def _trusted(**features: Any) -> bool:
    frame = add_axes(_frame("account", **features), "account", EvidenceSettings())
    return bool(frame["trusted_customer"][0])


def test_a_router_sub_account_diluting_its_harvest_loses_the_routers_trust(engine: Engine) -> None:
    """Round 11: the router's trust does not cover coercion or logprob harvesting a blend divides under
    the shares: the cluster's excess bars (``harvest_excess_share``, ``harvest_excess_requests``) on
    the sub-account. Round 10's code kept this seat trusted, so capped at low."""
    assert not _trusted(**(SUB_ACCOUNT | DILUTED_LOGPROB_HARVEST))
    sev, reasons = _verdict(engine, "account", **(SUB_ACCOUNT | DILUTED_LOGPROB_HARVEST))
    assert SEVERITY_RANK[sev] >= SEVERITY_RANK["medium"], reasons
    assert reasons["evidence:trust"].startswith("trust: none")
    # a direct customer's own verification still covers it
    assert _trusted(**(SUB_ACCOUNT | DILUTED_LOGPROB_HARVEST | {"tier": "research"}))


@pytest.mark.parametrize(
    ("change", "trusted"),
    [
        ({}, False),
        # four such requests in a day: under the count bar, chance
        ({"requests_24h": 16}, True),
        # 5% of its requests: under the share bar, however busy the seat
        ({"requests_24h": 400, "logprob_share_24h": 0.05, "n_gt1_share_24h": 0.05}, True),
        # logprobs of one completion (a calibration study blended with chat): the pair counts by the smaller
        ({"n_gt1_share_24h": 0.0}, True),
        # several completions without logprobs: no distribution harvested
        ({"logprob_share_24h": 0.0}, True),
        # coercion diluted under its share bar (0.2) but over both excess bars
        ({"logprob_share_24h": 0.0, "coercion_share_24h": 0.15}, False),
        ({"logprob_share_24h": 0.0, "coercion_share_24h": 0.15, "requests_24h": 20}, True),
    ],
    ids=["harvest", "few", "sliver", "one_completion", "no_logprobs", "coercion", "coercion_few"],
)
def test_the_diluted_harvest_bars_on_a_router_sub_account(change: dict[str, Any], trusted: bool) -> None:
    assert _trusted(**(SUB_ACCOUNT | DILUTED_LOGPROB_HARVEST | change)) is trusted


def test_the_diluted_bars_are_the_clusters_excess_bars() -> None:
    s = EvidenceSettings(harvest_excess_share=0.3)
    frame = add_axes(_frame("account", **(SUB_ACCOUNT | DILUTED_LOGPROB_HARVEST)), "account", s)
    assert bool(frame["trusted_customer"][0])
    s = EvidenceSettings(harvest_excess_requests=11.0)
    frame = add_axes(_frame("account", **(SUB_ACCOUNT | DILUTED_LOGPROB_HARVEST)), "account", s)
    assert bool(frame["trusted_customer"][0])


def test_the_routers_uncertainty_apps_sample_several_answers_with_logprobs_on_part_of_their_traffic() -> None:
    """The honest look-alike of a diluted logprob harvest inside the router (round 11)."""
    w = World(7_000_452, SimParams(), PromptBank.load(), 1.0, 1.0)
    b = router_uncertainty(w, 400)
    accounts = sorted({int(a) for a in b.acct})
    assert len(accounts) == 8
    assert all(w.accounts[a].tier == "reseller" and w.accounts[a].verified for a in accounts)
    assert all(w.accounts[a].persona == "router_uncertainty" for a in accounts)
    sampled = b.logprobs == 1
    assert np.all(b.n[sampled] >= 2) and np.all(b.n[~sampled] == 1)
    shares = [float(sampled[b.acct == a].mean()) for a in accounts]
    assert min(shares) > 0.0 and max(shares) < 0.8
