"""Users of a popular coding agent whose requests go through the router (issue 17, round 20).

A router (an OpenRouter-style reseller) carries many users of the same popular coding agents: each
user points the agent at the router, so on the gateway every request is a sub-account of the router's
tenant (its org, card, reseller id, tier, verification, egress and client build) carrying the agent's
**public** system prompt, identical across unrelated users, and the agent's tool-heavy turns. The users
signed up with the router all year, each their own person, and a few opened their seat within the month.

Persona ``router_agent_users`` (an honest row of the matrix of its own). Randomized per draw from the
draw's own random stream: how many users (a share of the router's customers), which agent or agents
(the agentic_coder's tool, whose direct users hold the same prompt, and another popular agent),
the seats' ages and the share opened within the month, each user's activity and the agent's tool count.
"""

from __future__ import annotations

import numpy as np

from detector.lab.simulate import clock
from detector.lab.simulate.block import Block, concat, empty_block
from detector.lab.simulate.clock import DAY_MS
from detector.lab.simulate.content import pick_langs
from detector.lab.simulate.habits import _country, _human_sessions, _tz
from detector.lab.simulate.intermediaries import _sub_account
from detector.lab.simulate.params import PersonaParams
from detector.lab.simulate.personas import CODING_TOOL_SYSTEM, agent_block
from detector.lab.simulate.world import World

#: The public system prompts of the popular coding agents the router's users run: the agentic_coder's
#: tool (its direct users hold the same hash) and another popular agent (an open-source one).
AGENT_SYSTEMS: tuple[str, ...] = (CODING_TOOL_SYSTEM, "sp_0pen4g3n7")
#: The other agent's own wrapper on a tool result it sends back (its turns' template skeletons are its
#: own: the agentic_coder's tool sends the bank's tool results bare).
_WRAPPERS = ("read_file", "write_to_file", "execute_command", "search_files", "list_files", "apply_diff")
#: The agent's users as a share of the router's customers (drawn per draw between these).
_SHARE = (0.1, 0.6)
#: Share of the users who opened their seat within the month (drawn per draw up to this).
_NEW_MAX = 0.3


def router_agent_users(w: World, p: PersonaParams) -> Block:
    """A popular coding agent's users through the router: the agent's public prompt and tool-heavy
    sessions on sub-accounts opened over the router's years (a drawn share within the month)."""
    rng = w.rng("persona", "router_agent_users")
    customers = w.scaled(p.accounts)
    if customers <= 0:
        return empty_block()
    n = max(2, round(customers * rng.uniform(*_SHARE)))
    pick = int(rng.integers(3))  # one agent, the other, or both
    agents = list(AGENT_SYSTEMS) if pick == 2 else [AGENT_SYSTEMS[pick]]
    r = w.router()
    new_share = float(rng.uniform(0.0, _NEW_MAX))
    accts, tzs, sys_of, tools_of = [], [], [], []
    for lang in pick_langs(rng, n, {"en": 0.6, "de": 0.1, "fr": 0.1, "ja": 0.1, "pt": 0.1}):
        country = _country(rng, lang)
        if rng.random() < new_share:
            created = w.start_ms - int(rng.uniform(0.5, 30.0) * DAY_MS)
        else:
            created = r.created_ms + int(rng.random() * (w.start_ms - 30 * DAY_MS - r.created_ms))
        accts.append(_sub_account(w, created, country, "router_agent_users"))
        tzs.append(_tz(rng, country))
        sys_of.append(agents[int(rng.integers(len(agents)))])
        tools_of.append(int(rng.choice([14, 18, 22, 26])))
    rates = clock.lognormal_rates(rng, float(rng.uniform(40.0, 160.0)), 0.8, n)
    owner, ts, pos = _human_sessions(w, rng, accts, rates, np.asarray(tzs), 25.0, 20.0, clock.HUMAN, 0.5)
    which = np.searchsorted(accts, owner)
    model = w.models(rng, ts, (0.1, 0.4, 0.5), p.new_model_adoption, 36.0)
    blocks = []
    for sp in agents:
        sel = np.asarray(sys_of, dtype=np.object_)[which] == sp
        if sel.any():
            b = agent_block(
                w,
                rng,
                owner[sel],
                ts[sel],
                pos[sel],
                model[sel],
                tools=np.asarray(tools_of)[which[sel]],
                thinking_share=0.5,
                throttle=p.throttle_rate,
                sys_hash=sp,
            )
            if sp != CODING_TOOL_SYSTEM:
                _wrap(rng, b.text, pos[sel])
            blocks.append(b)
    return concat(blocks)


def _wrap(rng: np.random.Generator, text: np.ndarray, pos: np.ndarray) -> None:
    """The other agent's turns after the task, in its own tool-result wrapper (in place)."""
    for j in np.flatnonzero(pos > 0):
        text[j] = f"[{_WRAPPERS[int(rng.integers(len(_WRAPPERS)))]}] Result:\n{text[j]}"
