"""Issue 17, round 22: a company team on its internal tool through its members' personal accounts
(``lab/simulate/personal_team``), the honest side of a bought aged farm outside any router.

Its members' accounts are aged, opened over years, each its own org and card; they share one private
system prompt (the tool's, held by no one else) and no harvest: no logprobs, no several samples. The
persona is generated after the campaigns, so no other account's id or event moves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_router_sdk import added_after_every_other_account, persona_block

from detector.lab.simulate import SimParams
from detector.lab.simulate.clock import DAY_MS
from detector.lab.simulate.params import LOOKALIKE_SIZES
from detector.lab.simulate.personal_team import AGE_DAYS, personal_tool_team

PARAMS = SimParams()
TEAM = PARAMS.personal_tool_team.model_copy(update={"accounts": 13})


@pytest.mark.parametrize("seed", [952, 953, 954])
def test_the_team_shares_its_tools_prompt_on_unrelated_aged_accounts(seed: int) -> None:
    cols = ("acct", "n", "logprobs", "sys_hash", "ts", "text")
    w, b = persona_block(seed, lambda w: personal_tool_team(w, TEAM), cols)  # deterministic per draw
    members = [w.accounts[int(a)] for a in np.unique(b["acct"])]
    assert len(members) >= 6
    assert {m.persona for m in members} == {"personal_tool_team"}
    # personal accounts: each its own org and card, no router, opened over years
    assert len({m.org_id for m in members}) == len({m.payment for m in members}) == len(members)
    assert all(m.reseller_id is None for m in members)
    ages = np.array([(w.start_ms - m.created_ms) / DAY_MS for m in members])
    assert ages.min() >= AGE_DAYS[0] and ages.max() <= AGE_DAYS[1]
    assert np.percentile(ages, 75) - np.percentile(ages, 25) > 60
    # one private system prompt over most of every member's requests, and no harvest
    tool = pl.Series(b["sys_hash"]).mode()[0]
    assert all((b["sys_hash"][b["acct"] == a] == tool).mean() > 0.5 for a in np.unique(b["acct"]))
    assert (b["logprobs"] < 1).all() and (b["n"] <= 1).all()  # -1: unset, 0: asked off


def test_the_team_is_a_matrix_look_alike() -> None:
    assert LOOKALIKE_SIZES["personal_tool_team"] > 0 == PARAMS.personal_tool_team.accounts


def test_the_team_is_added_after_every_other_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A day with the campaigns, with the team and without it: every other account and campaign keeps
    its id, persona and sign-up, and every other event its bytes."""
    params = PARAMS.model_copy(update={"personal_tool_team": TEAM})
    added_after_every_other_account(tmp_path, monkeypatch, params, "personal_tool_team")
