"""Best-of-k split across seats (issue 17, round 12): a reasoning farm's way to look like a course.

Distillation wants several reasoning traces of each problem (best-of-k, rejection sampling). A farm that
sends each problem k times from one seat shows k sends of one text (``sheet_sends_per_text_24h``); one
that sends it once from each of k seats shows one send per text per account, and each text held by k
accounts: by a fixed count of holders, an exercise sheet. What it cannot show is a course's shape: a
course's exercises are each sent by most of its participants, a split farm's problems by k of its N.
"""

from __future__ import annotations

import numpy as np

from detector.lab.simulate.block import I64


def split_leaders(rng: np.random.Generator, acct: I64, ts: I64, k: int) -> I64:
    """Per request (``acct``, ``ts``): the index of the request whose text it sends. A seat's requests in
    time order are its rounds; each round's seats are shuffled and cut into groups of ``k``, and a group
    sends one problem, once from each of its seats (the group's first request carries the text)."""
    n = acct.shape[0]
    leader = np.arange(n, dtype=np.int64)
    if n == 0 or k <= 1:
        return leader
    order = np.lexsort((ts, acct))
    a = acct[order]
    starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    for j in range(int(rank.max()) + 1):
        rows = order[rank == j]  # one request per seat that sends a j-th
        rows = rows[rng.permutation(rows.shape[0])]
        group = np.arange(rows.shape[0]) // k
        leader[rows] = rows[group * k]
    return leader


def split_texts(leader: I64, texts: list[str], langs: list[str]) -> tuple[list[str], list[str]]:
    """Each request's text and language replaced by its group leader's (``split_leaders``)."""
    return [texts[int(i)] for i in leader], [langs[int(i)] for i in leader]
