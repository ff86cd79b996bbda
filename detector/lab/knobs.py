"""The evasion matrix's knobs: what a draw is (issue 17).

A draw's seed is ``SEED_BASE + index``. Every campaign family draws the shared knobs (``KNOBS``:
``draw_knobs``) from that seed's stream, then knobs added later each from a stream of their own
(``draw_split``, ``draw_family_knobs``, ``draw_verified``, ``draw_aged_signups``), so adding one leaves
every earlier knob of every draw as it was (``aged_signups``, round 21, changes the sign-up instants of
the seats of the aged campaigns it draws ``bought``, nothing else). ``draw_params`` turns a draw's knobs
into the simulator's parameters, the honest look-alikes at realistic sizes whatever the scale.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from detector.lab.simulate import FAMILIES, SimParams
from detector.lab.simulate.params import CONTENT_MODES, with_lookalikes

SEED_BASE = 7_000_000

#: Knob -> its values (categorical knobs) as reported; continuous knobs are drawn, then bucketed.
KNOBS: dict[str, tuple[str, ...]] = {
    "rate": ("5-20/day", "20-80/day", "80-300/day"),
    "age": ("fresh", "aged"),
    "payment": ("shared", "unique"),
    "network": ("cloud", "residential", "rotating_proxy"),
    "signups": ("burst", "spread"),
    "blend": ("0-30%", "30-60%", "60-90%"),
    "content": CONTENT_MODES,
    "reseller": ("none", "router"),
}
#: Best-of-k split across seats (round 12, ``simulate/split.py``): the reasoning families that may
#: send each problem once from each of k of their seats, on this share of draws, k drawn in this range,
#: from the draw's own stream (``draw_split``: the other knobs' draws stay as they were). Round 13:
#: ``agentic_pivot`` too (each task, a session's opener, run once by each of k seats: a best-of-k harvest
#: of agent trajectories), drawn from a stream of its own so the reasoning families' draws stay as they were.
SPLIT_FAMILIES = ("cot_hydra", "low_and_slow", "agentic_pivot")
#: Each split family's stream name (``draw_split``); families sharing one draw from it in this order.
_SPLIT_STREAMS = {"cot_hydra": b"split", "low_and_slow": b"split", "agentic_pivot": b"agent_split"}
SPLIT_SHARE = 0.5
SPLIT_SEATS = (3, 8)
#: The split knob's reported values.
SPLIT_CELLS = ("off", "k3-5", "k6-8")
#: Knobs of one family only, each drawn from its own random stream (``draw_params``), so that adding one
#: leaves the other knobs, and the other families' traffic, of every draw as they were. ``session``: the
#: mean turns of an ``agentic_pivot`` session, log-uniform in ``SESSION_TURNS`` (a farm chooses its loop:
#: a few turns of short tasks or a long agent run; issue 17, round 12).
FAMILY_KNOBS: dict[str, dict[str, tuple[str, ...]]] = {
    "agentic_pivot": {"session": ("2-6 turns", "6-15 turns", "15-40 turns")},
}
SESSION_TURNS = (2.0, 40.0)
#: Verified campaign accounts (round 12): on this share of draws all of a family's accounts are verified
#: (bought aged, verified accounts), else the family's own share (``draw_verified``, its own stream).
VERIFIED_SHARE, VERIFIED_CELLS = 0.5, ("default", "all")
#: Aged campaigns' sign-up shape (issue 17, round 21), drawn per family from its own stream
#: (``draw_aged_signups``) and read only where ``age`` is aged: ``bursts`` (the ``signups`` knob's
#: bursts, 1-96 h before the start, shifted ``account_age_days`` back) or ``bought`` (each seat bought
#: on its own: its age uniform in ``BOUGHT_AGE_DAYS``, sign-ups spread over months), on this share.
BOUGHT_SHARE, AGED_SIGNUP_CELLS, BOUGHT_AGE_DAYS = 0.5, ("bursts", "bought"), (60.0, 700.0)
#: A company team with one internal tool: 10-60 accounts, drawn per draw.
TEAM_SIZES = (10, 60)
#: A hackathon cohort: 12-120 participants, drawn per draw (a class-sized workshop to a big event).
HACKATHON_SIZES = (12, 120)
#: A startup's engineers on their in-house client build: 3-12 (round 9).
STARTUP_SIZES = (3, 12)
#: A remote course's participants: 10-80 (round 10).
WORKSHOP_SIZES = (10, 80)


def _bucket(value: float, edges: tuple[float, ...], names: tuple[str, ...]) -> str:
    for edge, name in zip(edges, names, strict=False):
        if value < edge:
            return name
    return names[-1]


def draw_knobs(rng: np.random.Generator) -> dict[str, Any]:
    """One family's knobs: raw values (``rate``, ``blend`` numbers; the rest categorical)."""
    return {
        "rate": float(math.exp(rng.uniform(math.log(5.0), math.log(300.0)))),
        "age": str(rng.choice(KNOBS["age"])),
        "payment": str(rng.choice(KNOBS["payment"])),
        "network": str(rng.choice(KNOBS["network"])),
        "signups": str(rng.choice(KNOBS["signups"])),
        "blend": float(rng.uniform(0.0, 0.9)),
        "content": str(rng.choice(KNOBS["content"])),
        "reseller": str(rng.choice(KNOBS["reseller"])),
    }


def draw_split(index: int) -> dict[str, int]:
    """Draw ``index``'s split knob per ``SPLIT_FAMILIES``: k seats per problem, or 0 (off)."""
    names = set(_SPLIT_STREAMS.values())
    streams = {n: np.random.default_rng([SEED_BASE + index, zlib.crc32(n)]) for n in names}
    out = {}
    for f in SPLIT_FAMILIES:
        rng = streams[_SPLIT_STREAMS[f]]
        on, k = rng.random() < SPLIT_SHARE, int(rng.integers(SPLIT_SEATS[0], SPLIT_SEATS[1] + 1))
        out[f] = k if on else 0
    return out


def draw_family_knobs(family: str, rng: np.random.Generator) -> dict[str, Any]:
    """``family``'s own knobs (``FAMILY_KNOBS``), raw values; none for most families."""
    if family == "agentic_pivot":
        lo, hi = SESSION_TURNS
        return {"session": float(math.exp(rng.uniform(math.log(lo), math.log(hi))))}
    return {}


def draw_verified(index: int) -> dict[str, str]:
    """Draw ``index``'s verified knob per family (``VERIFIED_CELLS``), from its own stream."""
    rng = np.random.default_rng([SEED_BASE + index, zlib.crc32(b"verified")])
    return {f: VERIFIED_CELLS[int(rng.random() < VERIFIED_SHARE)] for f in FAMILIES}


def draw_aged_signups(index: int) -> dict[str, tuple[str, int]]:
    """Draw ``index``'s aged sign-up shape per family (``AGED_SIGNUP_CELLS``) and the seed of its
    seats' ages, from its own stream."""
    rng = np.random.default_rng([SEED_BASE + index, zlib.crc32(b"aged_signups")])
    out = {}
    for f in FAMILIES:
        bought, seed = rng.random() < BOUGHT_SHARE, int(rng.integers(0, 2**31))
        out[f] = (AGED_SIGNUP_CELLS[int(bought)], seed)
    return out


def knob_cells(knobs: dict[str, Any]) -> dict[str, str]:
    """The reported value of each knob (continuous knobs bucketed; ``split``, ``session`` and ``verified``
    where drawn)."""
    cells = {
        **{k: str(knobs[k]) for k in ("age", "payment", "network", "signups", "content", "reseller")},
        "rate": _bucket(knobs["rate"], (20.0, 80.0), KNOBS["rate"]),
        "blend": _bucket(knobs["blend"], (0.3, 0.6), KNOBS["blend"]),
    }
    if "split" in knobs:
        k = int(knobs["split"])
        cells["split"] = SPLIT_CELLS[0] if k == 0 else _bucket(k, (6.0,), SPLIT_CELLS[1:])
    if "session" in knobs:
        cells["session"] = _bucket(knobs["session"], (6.0, 15.0), FAMILY_KNOBS["agentic_pivot"]["session"])
    cells |= {"verified": str(knobs["verified"])} if "verified" in knobs else {}
    if knobs["age"] == "aged" and "aged_signups" in knobs:
        cells["aged_signups"] = str(knobs["aged_signups"])
    return cells


def _family_params(base: Any, knobs: dict[str, Any], accounts: int, scale: float) -> Any:
    size = max(2, round(accounts / scale))  # the simulator scales it back to ``accounts``
    bought = knobs["age"] == "aged" and knobs.get("aged_signups") == "bought"
    # cards and proxy addresses are counted on the accounts the campaign really has (a card per ten
    # accounts), not on the pre-scale size: at scale 1.85 that gave 20 accounts one card
    return base.model_copy(
        update={
            "campaigns": 1,
            "cluster_size": size,
            "requests_per_account_day": knobs["rate"],
            "blend_ratio": knobs["blend"],
            "cards_per_cluster": max(2, accounts // 10) if knobs["payment"] == "shared" else None,
            "ip_pool_size": max(8, accounts // 3) if knobs["network"] == "cloud" else 0,
            "signup_bursts": 1 if knobs["signups"] == "burst" else 8,
            "signup_spread_minutes": 30.0 if knobs["signups"] == "burst" else 720.0,
            "account_age_days": 300.0 if knobs["age"] == "aged" else 0.0,
            "bought_age_days": BOUGHT_AGE_DAYS if bought else None,
            "bought_seed": int(knobs.get("aged_seed", 0)),
            "start_offsets": [0.1],
            "content": knobs["content"],
            "rotating_proxy": knobs["network"] == "rotating_proxy",
            "via_router": knobs["reseller"] == "router",
            "split_seats": int(knobs.get("split", 0)),
            "session_turns": knobs.get("session", base.session_turns),
            "verified_share": 1.0 if knobs.get("verified") == "all" else None,
        }
    )


def draw_params(
    index: int, attack_accounts: int, scale: float, verified: str | None = None
) -> tuple[dict[str, dict[str, Any]], SimParams]:
    """Draw ``index``'s knobs per family and the simulator parameters they give (the seed is
    ``SEED_BASE + index``; ``verified`` forces that knob). Also used by ``detector train``."""
    rng = np.random.default_rng(SEED_BASE + index)
    base = SimParams()
    knobs = {f: draw_knobs(rng) for f in FAMILIES}
    for f, k in draw_split(index).items():
        knobs[f]["split"] = k
    own = np.random.default_rng([SEED_BASE + index, 1])  # family knobs: their own stream
    for f in FAMILIES:
        knobs[f] |= draw_family_knobs(f, own)
    for f, v in draw_verified(index).items():
        knobs[f]["verified"] = verified or v
    for f, (shape, seed) in draw_aged_signups(index).items():
        knobs[f] |= {"aged_signups": shape, "aged_seed": seed}
    update: dict[str, Any] = {
        f: _family_params(getattr(base, f), knobs[f], attack_accounts, scale) for f in FAMILIES
    }
    # the look-alikes at a realistic size whatever the scale
    sizes = {"internal_tool_team": int(rng.integers(TEAM_SIZES[0], TEAM_SIZES[1] + 1))}
    sizes["hackathon_cohort"] = int(rng.integers(HACKATHON_SIZES[0], HACKATHON_SIZES[1] + 1))
    sizes["startup_build_team"] = int(rng.integers(STARTUP_SIZES[0], STARTUP_SIZES[1] + 1))
    sizes["remote_workshop"] = int(rng.integers(WORKSHOP_SIZES[0], WORKSHOP_SIZES[1] + 1))
    return knobs, with_lookalikes(base.model_copy(update=update), scale, sizes)
