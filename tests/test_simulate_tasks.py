"""Issue 17, round 19: the simulator's agent-task bank. A farm harvesting agent trajectories opens each
session with a task of its own procedural bank (almost never a repeat across its seats); the honest agent
users (a course's sheet, a coding tool's users) keep the fixed set, whose tasks repeat across seats."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from detector.lab.simulate import FAMILIES, SimParams, personas, workshop
from detector.lab.simulate.block import Block
from detector.lab.simulate.campaigns import run_families
from detector.lab.simulate.prompts import PromptBank
from detector.lab.simulate.world import World

BANK = PromptBank.load(None)


def _farm(**knobs: Any) -> Block:
    """One agentic farm of 20 seats, short loops (many openers), no ordinary blend, no other family."""
    base = SimParams()
    update: dict[str, Any] = {f: getattr(base, f).model_copy(update={"campaigns": 0}) for f in FAMILIES}
    update["agentic_pivot"] = base.agentic_pivot.model_copy(
        update={"campaigns": 1, "cluster_size": 20, "blend_ratio": 0.0, "requests_per_account_day": 60.0}
        | {"session_turns": 3.0}
        | knobs
    )
    params = base.model_copy(update=update)
    return run_families(World(3, params, BANK, 1.0, 1.0), params)[0]


def _holders(acct: np.ndarray, text: np.ndarray) -> dict[str, set[int]]:
    out: dict[str, set[int]] = defaultdict(set)
    for a, t in zip(acct.tolist(), text.tolist(), strict=True):
        out[str(t)].add(int(a))
    return out


def _repeated(acct: np.ndarray, text: np.ndarray) -> float:
    """The share of openers whose text more than one seat sends."""
    held = _holders(acct, text)
    return float(np.mean([len(held[str(t)]) > 1 for t in text.tolist()]))


@pytest.mark.parametrize("content", [None, "explicit"])
def test_an_agent_farm_opens_its_sessions_with_almost_no_repeat(content: str | None) -> None:
    """Each session's opener is another task of the farm's bank: across its seats and hundreds of
    sessions, almost every opener is a text no other seat sends (the fixed ten tasks with a fill, before
    round 19: most openers were held by several seats, a course's sheet by the look of it)."""
    b = _farm(content=content)
    first = b.turns == 1
    assert first.sum() >= 200 and len(np.unique(b.acct[first])) >= 15
    assert _repeated(b.acct[first], b.text[first]) < 0.03
    assert len(set(b.text[first].tolist())) >= 0.97 * first.sum()


def test_an_honest_agent_course_and_a_coding_tools_users_keep_repeating_tasks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The honest agent users keep the fixed set: an agent course's sheet opens most of its sessions from
    many participants, and a coding tool's users open theirs with tasks other users open too."""
    monkeypatch.setattr(workshop, "COURSES", {"agent": 1.0})
    params = SimParams()
    w = World(5, params, BANK, 1.0, 1.0)
    course = workshop.remote_workshop(w, params.remote_workshop.model_copy(update={"accounts": 30}))
    opener = (course.tools >= 5) & (course.turns == 1)
    assert _repeated(course.acct[opener], course.text[opener]) > 0.8
    assert max(len(v) for v in _holders(course.acct[opener], course.text[opener]).values()) >= 10
    coder = personas.agentic_coder(World(5, params, BANK, 1.0, 0.5), params.agentic_coder)
    first = coder.turns == 1
    assert first.sum() >= 100 and _repeated(coder.acct[first], coder.text[first]) > 0.5


def test_the_task_bank_changes_only_the_farms_openers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bank's draws come from a stream of their own: with the fixed set put back, the same requests,
    times, turns and later turns; only the session openers differ."""
    new = _farm(content="explicit", split_seats=0)
    fixed = PromptBank.agent_first

    def old(self: PromptBank, rng: np.random.Generator, n: int, sweep: bool = False) -> list[str]:
        return fixed(self, rng, n)

    monkeypatch.setattr(PromptBank, "agent_first", old)
    was = _farm(content="explicit", split_seats=0)
    for name in ("acct", "ts", "turns", "tools", "model"):
        assert np.array_equal(getattr(was, name), getattr(new, name)), name
    first = new.turns == 1
    assert np.array_equal(was.text[~first], new.text[~first])
    assert (was.text[first] != new.text[first]).mean() > 0.9


def test_a_best_of_k_farm_still_shares_each_task_among_k_seats() -> None:
    """``agent_split`` (round 13) is the attacker's choice to repeat a task: each bank task is sent by
    exactly k seats, once each, and no task by the whole farm."""
    b = _farm(content="explicit", split_seats=5)
    first = np.flatnonzero(b.turns == 1)
    sends: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for a, t in zip(b.acct[first].tolist(), b.text[first].tolist(), strict=True):
        sends[str(t)][int(a)] += 1
    by_five = sum(5 for h in sends.values() if len(h) == 5 and max(h.values()) == 1) / first.shape[0]
    assert by_five > 0.6 and max(len(h) for h in sends.values()) < 20
