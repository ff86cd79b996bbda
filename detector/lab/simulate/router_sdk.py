"""Users of one popular uncertainty SDK whose apps go through the router (issue 17, round 21).

An uncertainty or evaluation SDK (self-consistency, "semantic entropy" hallucination checks) is a
library many independent developers install: each builds their own app on it (their own system prompt,
task and traffic) and points it at the router, and on part of its requests the SDK samples several
answers with log-probabilities at **its defaults**: the same ``top_logprobs``, temperature 1.0 and the
same ``n`` on every user's seat. On the gateway every request is a sub-account of the router's tenant;
what the users share beyond the router is the SDK's parameters, nothing else. Their seats were opened
over the router's years, each by its own person. This is the honest side of a bought aged logprob farm
(round 21: the farm's seats send the same parameters too).

Persona ``router_sdk_defaults`` (an honest row of the matrix of its own). Randomized per draw from the
draw's own random stream: how many users (a share of the router's customers), the SDK's defaults (its
``top_logprobs``; its ``n`` is 1 on some draws and several samples on others), each app's volume,
hours, model, question set, system prompt, sampled share (5-60%), ``max_tokens`` and output size.
Generated after the campaigns (``lookalikes.after_families``), so no other account's id moves.
"""

from __future__ import annotations

import numpy as np

from detector.lab.simulate.block import Block, concat, empty_block, make_block
from detector.lab.simulate.intermediaries import sampling_app
from detector.lab.simulate.params import PersonaParams
from detector.lab.simulate.world import World

#: Where the SDK's users are.
_COUNTRIES = ("US", "GB", "DE", "FR", "IN", "JP", "BR")
#: The SDK's users as a share of the router's customers (drawn per draw between these).
_SHARE = (0.05, 0.15)
#: The SDK's default ``top_logprobs`` (one per draw) and its default ``n`` when it samples several.
_TOPS = (5, 10, 20)
_NS = (2, 4, 5, 8, 10)
#: Share of draws on which the SDK's default is one completion (logprobs only, no extra samples).
_ONE_SAMPLE = 0.5
#: The SDK's default sampling temperature.
SDK_TEMPERATURE = 1.0


def sdk_defaults(w: World) -> tuple[int, int]:
    """The draw's SDK defaults ``(top_logprobs, n)``, from the persona's own stream (first draws)."""
    rng = w.rng("persona", "router_sdk_defaults")
    top = int(rng.choice(_TOPS))
    n = 1 if rng.random() < _ONE_SAMPLE else int(rng.choice(_NS))
    return top, n


def router_sdk_defaults(w: World, p: PersonaParams) -> Block:
    """One SDK's users through the router: independent apps, each its own prompt and task, sending the
    SDK's sampled requests with its default parameters on 5-60% of their requests."""
    customers = w.scaled(p.accounts)
    if customers <= 0:
        return empty_block()
    top, n_samples = sdk_defaults(w)
    rng = w.rng("persona", "router_sdk_defaults", "users")
    users = max(2, round(customers * rng.uniform(*_SHARE)))
    blocks = []
    for _ in range(users):
        a, k, ts, sampled = sampling_app(w, rng, _COUNTRIES, "router_sdk_defaults", 9.0)
        wanted = int(rng.choice([128, 256, 512, 1024]))
        own_temperature = float(rng.choice([0.0, 0.2, 0.3, 0.7]))
        blocks.append(
            make_block(
                np.full(k, a),
                ts,
                w.base_models[int(rng.integers(len(w.base_models)))],
                w.bank.app(rng, int(rng.integers(w.bank.n_apps)), k),
                "en",
                n=np.where(sampled, n_samples, 1),
                logprobs=np.where(sampled, 1, 0),
                top_logprobs=np.where(sampled, top, -1),
                temperature=np.where(sampled, SDK_TEMPERATURE, own_temperature),
                max_tokens=wanted,
                sys_hash=w.new_id("sp", 8),
                out_median=float(rng.uniform(40.0, 0.6 * wanted)),
                history=0.0,
            )
        )
    return concat(blocks)
