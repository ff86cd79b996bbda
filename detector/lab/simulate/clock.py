"""Timing: diurnal rhythms in local time, sessions of closely spaced requests, bursts.

All times are integer milliseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from detector.lab.simulate.block import I64

MIN_MS = 60_000
HOUR_MS = 60 * MIN_MS
DAY_MS = 24 * HOUR_MS

#: Local-hour weights of a person: asleep at night, peaks late morning and evening.
HUMAN = np.array(
    [
        0.6,
        0.3,
        0.15,
        0.1,
        0.1,
        0.15,
        0.4,
        1.0,
        2.0,
        3.0,
        3.6,
        3.8,
        3.2,
        3.4,
        3.6,
        3.5,
        3.2,
        3.0,
        2.8,
        3.0,
        3.2,
        3.0,
        2.2,
        1.2,
    ]
)
#: Office hours.
OFFICE = np.array(
    [
        0.05,
        0.02,
        0.02,
        0.02,
        0.02,
        0.05,
        0.2,
        0.8,
        3.0,
        4.0,
        4.2,
        4.0,
        2.8,
        3.6,
        4.0,
        3.9,
        3.5,
        2.6,
        1.2,
        0.6,
        0.4,
        0.3,
        0.2,
        0.1,
    ]
)
#: A service with its own users' mild daily swing.
SERVICE = np.array(
    [
        0.6,
        0.5,
        0.45,
        0.45,
        0.5,
        0.6,
        0.75,
        0.9,
        1.05,
        1.15,
        1.2,
        1.2,
        1.2,
        1.2,
        1.2,
        1.2,
        1.15,
        1.1,
        1.05,
        1.0,
        0.95,
        0.9,
        0.8,
        0.7,
    ]
)
FLAT = np.ones(24)


def _vec(x: Any, n: int, dtype: Any) -> npt.NDArray[Any]:
    arr = np.asarray(x, dtype=dtype)
    return np.broadcast_to(arr, (n,)).copy() if arr.ndim == 0 else arr.astype(dtype)


def local_times(
    rng: np.random.Generator,
    n: int,
    lo: Any,
    hi: Any,
    tz_h: Any,
    profile: npt.NDArray[np.float64],
    weekend: float = 1.0,
) -> I64:
    """``n`` times in ``[lo, hi)`` whose hour of day in UTC offset ``tz_h`` follows ``profile``.

    ``lo``, ``hi`` and ``tz_h`` are scalars or per-sample arrays. ``weekend`` is the acceptance
    probability of a Saturday or Sunday (local), 1.0 for no weekly rhythm.
    """
    lo_a = _vec(lo, n, np.int64)
    hi_a = np.maximum(_vec(hi, n, np.int64), lo_a + 1)
    tz_ms = (_vec(tz_h, n, np.float64) * HOUR_MS).astype(np.int64)
    p = profile / profile.sum()
    out = np.empty(n, dtype=np.int64)
    todo = np.arange(n)
    for _ in range(40):
        m = todo.shape[0]
        if m == 0:
            break
        off = tz_ms[todo]
        d0 = (lo_a[todo] + off) // DAY_MS
        d1 = (hi_a[todo] - 1 + off) // DAY_MS
        day = d0 + (rng.random(m) * (d1 - d0 + 1)).astype(np.int64)
        hour = rng.choice(24, size=m, p=p).astype(np.int64)
        t = day * DAY_MS + hour * HOUR_MS + rng.integers(0, HOUR_MS, m) - off
        ok = (t >= lo_a[todo]) & (t < hi_a[todo])
        if weekend < 1.0:
            ok &= ((day + 3) % 7 < 5) | (rng.random(m) < weekend)
        out[todo[ok]] = t[ok]
        todo = todo[~ok]
    if todo.shape[0]:
        out[todo] = lo_a[todo] + (rng.random(todo.shape[0]) * (hi_a[todo] - lo_a[todo])).astype(np.int64)
    return out


def sessions(
    rng: np.random.Generator, starts: I64, lengths: I64, gap_mean_s: float, gap_min_s: float = 1.0
) -> tuple[I64, I64, I64]:
    """Expand session starts into request times.

    Returns ``(ts, session, position)``: each session ``i`` yields ``lengths[i]`` requests, the first
    at ``starts[i]`` and the next ones ``gap_min_s`` plus an exponential gap of mean ``gap_mean_s`` apart.
    """
    lengths = np.maximum(lengths.astype(np.int64), 1)
    total = int(lengths.sum())
    session = np.repeat(np.arange(lengths.shape[0], dtype=np.int64), lengths)
    first = np.cumsum(lengths) - lengths
    position = np.arange(total, dtype=np.int64) - np.repeat(first, lengths)
    gaps = ((gap_min_s + rng.exponential(gap_mean_s, total)) * 1000).astype(np.int64)
    gaps[position == 0] = 0
    csum = np.cumsum(gaps)
    ts = np.repeat(starts.astype(np.int64), lengths) + csum - np.repeat(csum[first], lengths)
    return ts.astype(np.int64), session, position


def counts(rng: np.random.Generator, expected: npt.NDArray[np.float64], minimum: int = 0) -> I64:
    """Poisson counts with the given means, at least ``minimum`` each."""
    return np.maximum(rng.poisson(np.maximum(expected, 0.0)), minimum).astype(np.int64)


def lognormal_rates(rng: np.random.Generator, mean: float, sigma: float, n: int) -> npt.NDArray[np.float64]:
    """Per-account rates whose mean is ``mean`` and spread is lognormal ``sigma``."""
    return mean * rng.lognormal(-0.5 * sigma * sigma, sigma, n) if sigma > 0 else np.full(n, mean)


def office_sessions(
    rng: np.random.Generator,
    accts: list[int],
    span: tuple[int, int, float],
    rate: tuple[float, float],
    per_session: float,
    tz: float,
    weekend: float,
    gap_mean_s: float,
) -> tuple[I64, I64, I64, I64]:
    """A team's sessions in office hours: each account's daily ``rate`` (mean, lognormal sigma) over
    ``span`` (start ms, end ms, days), in sessions of ``per_session`` requests on average (geometric), at
    least 10 s apart. Returns ``(owner, ts, session, position)``: ``owner[session]`` is each request's
    account."""
    start_ms, end_ms, days = span
    rates = lognormal_rates(rng, rate[0], rate[1], len(accts))
    n_sess = counts(rng, rates * days / per_session, minimum=1)
    owner: I64 = np.repeat(np.asarray(accts, dtype=np.int64), n_sess)
    starts = local_times(rng, owner.shape[0], start_ms, end_ms, tz, OFFICE, weekend=weekend)
    lengths: I64 = np.asarray(rng.geometric(1.0 / per_session, owner.shape[0]), dtype=np.int64)
    ts, sess, pos = sessions(rng, starts, lengths, gap_mean_s, 10.0)
    return owner, ts, sess, pos
