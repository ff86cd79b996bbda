"""Harvest a blend cannot hide: a cluster's extraction requests beyond what ordinary traffic holds.

A campaign that mixes ordinary requests into each account (60-90% of them, the disclosed hydras'
"mixing extraction traffic with ordinary customers' requests") divides every share the extraction
axis reads (``cot_share_24h``, ``max_tokens_high_share_24h``, ...) until none reaches its bar, while the
harvest itself is unchanged: the same reasoning traces, logprob samples and coerced traces, with
ordinary chat around them. What the blend cannot remove is the *excess*: the cluster sends these
requests far more often than ordinary traffic does. Ordinary traffic is the typical account's mix
(each active account one vote, so a tutoring backend's 9,000 requests a day do not set the bar), and
the excess of a kind is the cluster's share less the typical share; its count is that excess times the
cluster's requests (issue 17, round 8).

The kinds are the ones a tool's step-by-step ask does not explain (``detect.evidence.tenant_explains``
names the same: coercion, rubric grading, logprob harvesting with several samples, a thinking budget
with extraction-sized outputs, reasoning elicited with extraction-sized outputs); a kind that is a pair
of counters is in excess by the smaller of the two.
"""

from __future__ import annotations

import polars as pl

#: Harvest kind -> the per-request counters (``window.tables.SIGNAL_COUNTS``) that must all be in excess.
HARVEST_KINDS: dict[str, tuple[str, ...]] = {
    "reasoning trace coerced": ("coercion",),
    "rubric grading": ("rubric",),
    "logprob harvest": ("logprob", "n_gt1"),
    "reasoning via parameters": ("thinking", "max_tokens_high"),
    "reasoning elicited with extraction-sized outputs": ("cot", "max_tokens_high"),
}
_COUNTERS = sorted({c for kind in HARVEST_KINDS.values() for c in kind})
#: The kinds no team's tool needs, whatever model it runs on: a tool on a reasoning model asks for the
#: reasoning on every use (a thinking budget, which needs near-maximum outputs, and perhaps "step by
#: step"), so inside a reseller tenant only these kinds' excess is harvest (cluster axis,
#: ``tenant_explains``).
BEYOND_A_TOOL = ("reasoning trace coerced", "rubric grading", "logprob harvest")
#: The kinds a router's verification does not vouch for on one sub-account (account axis,
#: ``evidence._reseller_vouches_not``): ``BEYOND_A_TOOL`` less rubric grading. Kept apart on purpose
#: (issue 17, round 10): a router customer's LLM-as-judge evaluation pipeline grades with rubrics
#: honestly (``lab.simulate.intermediaries.router_judges``), and on a reasoning model its thinking
#: budget and near-maximum ``max_tokens`` put it at medium through ``account_gb-v2`` once the router's
#: trust is gone: in a scratch check (five look-alike days, 225 judge-days) the shared list accused
#: three aged judges the router's trust keeps at low (docs/detection.md, "Round 10"). On the cluster
#: axis rubric grading stays: a judge pipeline is one sub-account, and a group sharing a private system
#: prompt inside the router that grades with rubrics is no team's tool the simulator knows.
BEYOND_ROUTER_TRUST = tuple(k for k in BEYOND_A_TOOL if k != "rubric grading")


def typical_mix(buckets: pl.DataFrame) -> pl.DataFrame:
    """One row: the typical account's share of requests carrying each harvest counter over ``buckets``
    (the window's buckets of every account): the mean of the accounts' own shares."""
    per_account = buckets.group_by("account_id").agg(
        pl.col("requests").sum().cast(pl.Float64).alias("_r"),
        *[pl.col(c).sum().cast(pl.Float64) for c in _COUNTERS],
    )
    # a fixed order: a float mean depends on summation order, and features must not depend on how the
    # input was sliced into batches (tests/test_slicing.py)
    return (
        per_account.filter(pl.col("_r") > 0)
        .sort("account_id")
        .rechunk()
        .select([(pl.col(c) / pl.col("_r")).mean().fill_null(0.0).alias(f"_typical_{c}") for c in _COUNTERS])
    )


def harvest_excess(typical: pl.DataFrame) -> list[pl.Expr]:
    """Expressions over a cluster frame (pooled ``<counter>_share_24h`` and ``requests_24h``) giving
    ``harvest_excess_share_24h`` (the largest excess of a kind over the typical account's share, at
    least 0), ``harvest_excess_requests_24h`` (that excess as requests) and
    ``harvest_beyond_tool_excess_share_24h`` (the same over ``BEYOND_A_TOOL`` only)."""
    row = typical.row(0, named=True) if typical.height else {}

    def over(c: str) -> pl.Expr:
        return pl.col(f"{c}_share_24h").fill_null(0.0) - pl.lit(float(row.get(f"_typical_{c}") or 0.0))

    kinds = {k: pl.min_horizontal([over(c) for c in counters]) for k, counters in HARVEST_KINDS.items()}
    share = pl.max_horizontal(list(kinds.values())).clip(lower_bound=0.0)
    beyond = pl.max_horizontal([kinds[k] for k in BEYOND_A_TOOL]).clip(lower_bound=0.0)
    return [
        share.alias("harvest_excess_share_24h"),
        (share * pl.col("requests_24h").fill_null(0).cast(pl.Float64)).alias("harvest_excess_requests_24h"),
        beyond.alias("harvest_beyond_tool_excess_share_24h"),
    ]
