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
from test_evidence import _verdict

from detector.app import build_engine
from detector.contracts import SEVERITY_RANK
from detector.detect.evidence import extraction_checks
from detector.engine import Engine
from detector.evidence_settings import EvidenceSettings
from detector.lab.simulate import SimParams
from detector.lab.simulate.intermediaries import router_calibration, router_judges, router_uncertainty
from detector.lab.simulate.prompts import PromptBank
from detector.lab.simulate.world import World
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


#: A router seat asking for logprobs with several completions on a quarter of 40 requests: draw 455's
#: aged logprob harvest under a 72% blend, and a customer's app checking its answers' uncertainty.
DILUTED_LOGPROBS: dict[str, Any] = {
    "requests_24h": 40,
    "requests_1h": 5,
    "logprob_share_24h": 0.25,
    "n_gt1_share_24h": 0.25,
    "out_in_ratio_24h": 21.7,
    "active_hours_24h": 4,
    "hosted_ip_share_24h": 0.0,
}


def test_logprobs_under_the_share_bar_keep_the_routers_trust(engine: Engine) -> None:
    """Round 11 tried the cluster's excess bars (10%, 5 requests) on the account: 13 more campaign seats
    named on draws 450-461, and 5 more of 36 ``router_uncertainty`` apps. Same keys, so the trust stays;
    at half the traffic the share bar takes it (and names such an app too: 10 of 36 on those draws)."""
    sev, reasons = _verdict(engine, "account", **(SUB_ACCOUNT | DILUTED_LOGPROBS))
    assert sev in ("none", "low") and "capped at low" in reasons["evidence:trust"], reasons
    half = DILUTED_LOGPROBS | {"logprob_share_24h": 0.5, "n_gt1_share_24h": 0.5}
    sev, reasons = _verdict(engine, "account", **(SUB_ACCOUNT | half))
    assert reasons["evidence:trust"].startswith("trust: none"), reasons
