"""How honest people use the API: ages of accounts, countries and time zones, sessions and chats (the
habits every honest persona draws from; ``personas``, ``shared_accounts``, ``intermediaries``)."""

from __future__ import annotations

import numpy as np

from detector.lab.simulate import clock, net
from detector.lab.simulate.block import I64, Block
from detector.lab.simulate.clock import DAY_MS
from detector.lab.simulate.content import casual_content, event_langs
from detector.lab.simulate.params import (
    PersonaParams,
)
from detector.lab.simulate.world import World


def _age_created(rng: np.random.Generator, w: World, median_days: float = 200.0) -> int:
    age = float(np.clip(rng.lognormal(np.log(median_days), 0.9), 1.0, 1500.0))
    return w.start_ms - int(age * DAY_MS) - int(rng.integers(0, DAY_MS))


#: Share of ordinary users who signed up in the last month: a growing service has many, and a detector
#: that learns "new account = attacker" must be caught out here, not in production.
NEW_SIGNUP_SHARE = 0.2


def _casual_created(rng: np.random.Generator, w: World) -> int:
    if rng.random() < NEW_SIGNUP_SHARE:
        return w.start_ms - int(rng.uniform(0.2, 30.0) * DAY_MS)
    return _age_created(rng, w)


def _keys(w: World, k: int) -> list[str]:
    return [w.new_id("key", 12) for _ in range(k)]


def _country(rng: np.random.Generator, lang: str) -> str:
    codes, weights = net.LANG_COUNTRIES[lang]
    p = np.asarray(weights)
    return codes[int(rng.choice(len(codes), p=p / p.sum()))]


def _tz(rng: np.random.Generator, country: str) -> float:
    if country == "US":
        return float(rng.choice([-5.0, -6.0, -7.0, -8.0]))
    return net.COUNTRIES[country].tz


def _human_sessions(
    w: World,
    rng: np.random.Generator,
    accts: list[int],
    rates: np.ndarray,
    tzs: np.ndarray,
    mean_len: float,
    gap_s: float,
    profile: np.ndarray = clock.HUMAN,
    weekend: float = 1.0,
) -> tuple[I64, I64, I64]:
    """Sessions of requests at human hours; returns (acct, ts, position in session)."""
    n_sess = clock.counts(rng, rates * w.days / mean_len, minimum=1)
    owner = np.repeat(np.asarray(accts, dtype=np.int64), n_sess)
    tz = np.repeat(tzs, n_sess)
    starts = clock.local_times(rng, owner.shape[0], w.start_ms, w.end_ms, tz, profile, weekend)
    lengths = rng.geometric(1.0 / mean_len, owner.shape[0])
    ts, sess, pos = clock.sessions(rng, starts, lengths, gap_s, gap_min_s=5.0)
    return owner[sess], ts, pos


def _chatty(
    w: World,
    rng: np.random.Generator,
    accts: list[int],
    primary: list[str],
    rates: np.ndarray,
    tzs: np.ndarray,
    p: PersonaParams,
    code_share: float,
    profile: np.ndarray = clock.HUMAN,
    weekend: float = 1.0,
) -> Block:
    """Everyday chat sessions for a group of accounts with the given primary languages."""
    owner, ts, pos = _human_sessions(w, rng, accts, rates, tzs, 3.0, 60.0, profile, weekend)
    lang_of = dict(zip(accts, primary, strict=True))
    langs = event_langs(rng, [lang_of[int(a)] for a in owner])
    model = w.models(rng, ts, adopt=p.new_model_adoption, adopt_hours=p.adoption_hours)
    return casual_content(
        w, rng, owner, ts, model, langs, turns=1 + 2 * pos, code_share=code_share, throttle=p.throttle_rate
    )
