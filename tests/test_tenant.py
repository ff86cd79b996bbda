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
from detector.engine import Engine
from detector.lab.simulate import SimParams
from detector.lab.simulate.intermediaries import router_calibration
from detector.lab.simulate.prompts import PromptBank
from detector.lab.simulate.world import World

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
