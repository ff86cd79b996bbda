"""A company team whose internal tool runs on its members' personal accounts (issue 17, round 22).

The honest side of a bought aged farm outside any router. Some companies give a team an internal tool
(a SQL helper, support drafts, a code reviewer; ``businesses.internal_tool_team``) but no company
account: each member points it at their own personal account ("bring your own key", or the org's
account was cut off). On the gateway the team is 6-24 aged accounts, each its own org and card, opened
over years by its own person, some verified and some not, that share one private system prompt and one
template (the tool's, held by no one else in the population), the vendor SDK, office hours and, for
about a third of the tools, reasoning through parameters with large outputs. A bought aged farm's seats
share the same: a private system prompt, unrelated payment, sign-ups spread over months. What the team
lacks is a harvest: its tool asks for the same kind of work every day at one temperature, without
logprobs, several samples or coercion.

Persona ``personal_tool_team`` (an honest row of the matrix). Randomized per draw from its own stream:
the team's size, its members' ages (60-1,500 days), verified share, how many work from the office NAT
(none, on a remote team) and the tool. Generated after the campaigns (``lookalikes.after_families``)
on streams of its own, so no other account's id or event moves.
"""

from __future__ import annotations

from detector.lab.simulate import net
from detector.lab.simulate.block import Block, empty_block
from detector.lab.simulate.businesses import tool_traffic
from detector.lab.simulate.clock import DAY_MS
from detector.lab.simulate.params import SharedAccountsParams
from detector.lab.simulate.world import Account, World

#: The members' personal accounts' ages in days (each opened by its person, years apart).
AGE_DAYS = (60.0, 1500.0)
#: The smallest team (the drawn size is between this and the persona's size).
MIN_MEMBERS = 6


def personal_tool_team(w: World, p: SharedAccountsParams) -> Block:
    """A team on its company's internal tool through its members' own personal accounts."""
    most = w.scaled(p.accounts)
    if most <= 0:
        return empty_block()
    rng = w.rng("persona", "personal_tool_team")
    n = int(rng.integers(min(MIN_MEMBERS, most), most + 1))
    country = ("US", "DE", "GB")[int(rng.integers(3))]
    office = f"{net.OFFICE_V4[int(rng.integers(len(net.OFFICE_V4)))]}.{rng.integers(0, 256)}"
    nat = [f"{office}.{rng.integers(2, 254)}" for _ in range(2)]
    in_office, verified = float(rng.uniform(0.0, 1.0)), float(rng.uniform(0.0, 1.0))
    tool = w.bank.d["internal_tools"][int(rng.integers(len(w.bank.d["internal_tools"])))]
    sys_hash = w.new_id("sp", 8)  # the tool's system prompt: the team's, held by no one else
    w.system_prompts[sys_hash] = tool["system"]
    accts = []
    for _ in range(n):
        created = w.start_ms - int(rng.uniform(*AGE_DAYS) * DAY_MS)
        home = [net.residential_ip(rng, country, w.params.ipv6_fraction)]
        ips = (nat if rng.random() < in_office else []) + home
        tier = "free" if rng.random() < 0.4 else "standard"
        accts.append(
            w.add(
                Account(
                    w.new_id("acct"),
                    "personal_tool_team",
                    created,
                    w.new_id("org", 8),
                    [w.new_id("key", 12)],
                    w.new_id("pf", 12),
                    country,
                    tier,
                    bool(rng.random() < verified),
                    None,
                    ips,
                    net.COMMON_CLIENTS[0][0],  # the tool ships with the vendor SDK
                )
            )
        )
    return tool_traffic(w, rng, accts, tool, sys_hash, country, p)
