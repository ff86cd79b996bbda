"""Issue 17, round 21: one uncertainty SDK's users through the router (``lab/simulate/router_sdk``).

Many independent apps built on one popular SDK send, on part of their requests, log-probabilities at the
SDK's defaults: the same ``top_logprobs``, temperature 1.0 and ``n`` on every user's seat (a bought aged
logprob farm's seats send one set of parameters too). Each app has its own system prompt and questions;
the seats were opened over the router's years. The persona is generated after the campaigns, so no other
account's id moves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest

import detector.lab.simulate.core as core
from detector.lab.simulate import SimParams, simulate
from detector.lab.simulate.block import Block
from detector.lab.simulate.clock import DAY_MS
from detector.lab.simulate.prompts import PromptBank
from detector.lab.simulate.router_sdk import SDK_TEMPERATURE, router_sdk_defaults, sdk_defaults
from detector.lab.simulate.world import World

PARAMS = SimParams()
CUSTOMERS = PARAMS.router_customers.model_copy(update={"accounts": 150})


def persona_block(
    seed: int, generate: Callable[[World], Block], cols: tuple[str, ...]
) -> tuple[World, dict[str, np.ndarray]]:
    """A persona's block on draw ``seed`` (scale 1.85), built twice: the same values (deterministic)."""
    out = []
    for _ in range(2):
        w = World(seed, PARAMS, PromptBank.load(), 1.0, 1.85)
        b = generate(w)
        out.append((w, {c: np.asarray(getattr(b, c)) for c in cols}))
    for col, values in out[0][1].items():
        assert np.array_equal(values, out[1][1][col]), col
    return out[0]


@pytest.mark.parametrize("seed", [916, 917, 918])
def test_the_sdks_users_share_its_defaults_and_nothing_else(seed: int) -> None:
    cols = ("acct", "n", "logprobs", "top_logprobs", "temperature", "sys_hash", "ts", "text")
    w, b = persona_block(seed, lambda w: router_sdk_defaults(w, CUSTOMERS), cols)
    seats = np.unique(b["acct"])
    assert len(seats) >= 5
    assert {w.accounts[int(a)].persona for a in seats} == {"router_sdk_defaults"}
    r = w.router()
    assert all(w.accounts[int(a)].org_id == r.org_id and w.accounts[int(a)].verified for a in seats)
    sampled = b["logprobs"] == 1
    top, n = sdk_defaults(w)
    # one parameter set over every seat's sampled requests
    assert set(b["top_logprobs"][sampled].tolist()) == {top}
    assert set(b["n"][sampled].tolist()) == {n}
    assert set(b["temperature"][sampled].tolist()) == {SDK_TEMPERATURE}
    shares = [sampled[b["acct"] == a].mean() for a in seats]
    assert min(shares) > 0.0 and max(shares) < 0.75  # part of each app's requests, not all
    # each app its own system prompt; seats opened over months, not in one batch
    assert len({str(b["sys_hash"][b["acct"] == a][0]) for a in seats}) == len(seats)
    created = np.array([w.accounts[int(a)].created_ms for a in seats])
    assert np.percentile(created, 75) - np.percentile(created, 25) > 60 * DAY_MS


def test_the_sdks_default_n_is_one_on_some_draws_and_several_on_others() -> None:
    ns = [sdk_defaults(World(seed, PARAMS, PromptBank.load(), 1.0, 1.0))[1] for seed in range(916, 936)]
    assert 1 in ns and any(n > 1 for n in ns)


def test_the_sdk_users_are_added_after_every_other_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day with the router's customers and the campaigns, with the persona and without it: every
    other account and campaign keeps its id, persona and sign-up, and every other event its bytes."""
    params = PARAMS.model_copy(update={"router_customers": CUSTOMERS})
    added_after_every_other_account(tmp_path, monkeypatch, params, "router_sdk_defaults")


def added_after_every_other_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: SimParams, persona: str
) -> None:
    """A day of ``params`` with ``persona`` (one of ``core.after_families``) and without it: the same
    campaigns, every other account's id and sign-up, every other row's bytes in the same order."""
    simulate(tmp_path / "with", 0.25, 11, 0.2, params=params)
    monkeypatch.setattr(core, "after_families", lambda w, p: [])
    simulate(tmp_path / "without", 0.25, 11, 0.2, params=params)
    with_ = orjson.loads((tmp_path / "with" / "labels.json").read_bytes())
    without = orjson.loads((tmp_path / "without" / "labels.json").read_bytes())
    added = {a for a, v in with_["accounts"].items() if v["persona"] == persona}
    assert added and without["campaigns"] and with_["campaigns"] == without["campaigns"]
    others = {a: v for a, v in with_["accounts"].items() if a not in added}
    assert {a: v["created_at"] for a, v in others.items()} == {
        a: v["created_at"] for a, v in without["accounts"].items()
    }
    # every other row keeps its bytes and its order (assembled apart, merged by time)
    rows = pl.read_parquet(tmp_path / "with" / "events.parquet")
    assert rows.filter(pl.col("account_id").is_in(sorted(added))).height > 0
    assert rows["ts"].is_sorted()
    kept = rows.filter(~pl.col("account_id").is_in(sorted(added)))
    assert kept.equals(pl.read_parquet(tmp_path / "without" / "events.parquet"))
