"""When a product's honest users opened their accounts: one by one over years, and in adoption waves.

A popular tool's users do not arrive evenly: its launch, a viral week or a conference brings many
developers to open an API account within a day or two, each on their own (their own card, org and
network). Within such a wave two or three of them land in the same half hour by chance, at any size
of the user base; a detector that reads "opened in the same half hour" as "provisioned in bulk" must be
caught out here, not in production (issue 17, round 6: a coincidental pair of a coding agent's
verified developers put 18 of them at high).

Nor do they all pay alone: a startup's engineers each open a personal account (their own org) and pay
with the company card. A detector that reads one card across a few orgs as a farm's cards must be
caught out here too (issue 17, round 8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.lab.simulate.block import I64
from detector.lab.simulate.clock import DAY_MS, HOUR_MS
from detector.lab.simulate.world import World

#: A wave is one of the product's adoption moments, this many days before the run (launched within the
#: last two years; its wave users are established customers by now).
WAVE_DAYS_AGO = (60.0, 700.0)
#: Waves per run (a launch, a major release, a viral week).
WAVES = (1, 3)
#: A wave's sign-ups decay over its first days: exponential, with this scale in hours.
WAVE_HOURS = 24.0


@dataclass(frozen=True)
class Waves:
    """The run's adoption waves: the share of users who came in one, and when each wave began."""

    share: float
    starts: I64


def adoption_waves(rng: np.random.Generator, w: World, max_share: float) -> Waves | None:
    """The product's waves, the share of its users in them drawn in [0, ``max_share``]; ``None`` (and no
    random draw) when ``max_share`` is 0, so a run without waves is the same run as before."""
    if max_share <= 0.0:
        return None
    share = float(rng.uniform(0.0, max_share))
    k = int(rng.integers(WAVES[0], WAVES[1] + 1))
    starts = w.start_ms - (rng.uniform(WAVE_DAYS_AGO[0], WAVE_DAYS_AGO[1], k) * DAY_MS).astype(np.int64)
    return Waves(share, starts)


def wave_created(rng: np.random.Generator, waves: Waves) -> int | None:
    """A wave user's sign-up time (ms), or ``None`` for a user who came on their own."""
    if rng.random() >= waves.share:
        return None
    start = int(waves.starts[int(rng.integers(waves.starts.shape[0]))])
    return start + int(rng.exponential(WAVE_HOURS) * HOUR_MS)


@dataclass(frozen=True)
class CardTeam:
    """One startup's engineers among the product's users: how many, and the company card they pay with."""

    size: int
    card: str


def card_team(rng: np.random.Generator, w: World, max_size: int) -> CardTeam | None:
    """The startup's team, 3 to ``max_size`` engineers; ``None`` (and no random draw) when ``max_size`` is
    below 3, so a run without it is the same run as before."""
    if max_size < 3:
        return None
    return CardTeam(int(rng.integers(3, max_size + 1)), w.new_id("pf", 12))


#: Where a product's regional community can sit: developer hubs whose working hours fall in the first
#: hours of the UTC day (Tokyo, Seoul, Bengaluru, Sydney, Shenzhen, Hanoi).
HUB_COUNTRIES = ("JP", "KR", "IN", "AU", "CN", "VN")
#: At most this share of the hub's users came in the product's regional launch (its localised release, a
#: local conference), drawn per run.
HUB_LAUNCH_MAX_SHARE = 0.6
#: The regional launch is an event (a local conference's keynote, a localised release's launch day):
#: its sign-ups decay over its first hours, exponential with this scale.
HUB_LAUNCH_HOURS = 4.0


@dataclass(frozen=True)
class Hub:
    """The product's regional community: the share of its users in it, their country, and its launch."""

    share: float
    country: str
    launch_share: float
    launch_start: int


def regional_hub(rng: np.random.Generator, w: World, max_share: float) -> Hub | None:
    """The product's regional hub, holding a share of its users drawn in [0, ``max_share``], in a country
    drawn from ``HUB_COUNTRIES``; ``None`` (and no random draw) when ``max_share`` is 0, so a run without
    it is the same run as before. Its users work while the rest of the world sleeps, so the first hours
    of a UTC day hold mostly them; a share of them opened their accounts in the hub's regional launch
    (``WAVE_DAYS_AGO``, ``WAVE_HOURS``: a wave like the product's own), each on their own card and org
    (issue 17, round 11: a one-day replay's 02:00 held a coding agent's thirty developers of one time
    zone and nobody else of its build)."""
    if max_share <= 0.0:
        return None
    share = float(rng.uniform(0.0, max_share))
    country = str(HUB_COUNTRIES[int(rng.integers(len(HUB_COUNTRIES)))])
    launch_share = float(rng.uniform(0.0, HUB_LAUNCH_MAX_SHARE))
    start = w.start_ms - int(rng.uniform(WAVE_DAYS_AGO[0], WAVE_DAYS_AGO[1]) * DAY_MS)
    return Hub(share, country, launch_share, start)


def hub_member(rng: np.random.Generator, hub: Hub | None) -> tuple[bool, int | None]:
    """Whether a user is in ``hub``, and their sign-up time (ms) if they came in its regional launch
    (``None``: on their own, or by the product's waves). No random draw without a hub."""
    if hub is None or rng.random() >= hub.share:
        return False, None
    if rng.random() >= hub.launch_share:
        return True, None
    return True, hub.launch_start + int(rng.exponential(HUB_LAUNCH_HOURS) * HOUR_MS)
