"""Agent-course openers: which tool-heavy sessions a cluster's members open alike (issue 17, round 12).

An agent course's participants run a coding agent on the sheet's exercises: each exercise opens a short
agent loop (the sheet's instruction, then a few tool results), so the cluster's traffic is tool-heavy,
like an agentic farm's. What a farm cannot choose away is the yield: a course opens its sessions with
the sheet's few tasks, each about once per participant, and runs short loops on them; a farm opens each
session with another task of its bank (a harvest of distinct trajectories). A farm that opened its
sessions with a few shared tasks, once each, in short loops, would harvest a course's few trajectories.

The sample is the sheet table's (``window/sheets.py``) carried to tool-heavy openers: per (account,
bucket) the **smallest** ``text_fp`` among its tool-heavy requests that open a session
(``prompt.turns`` <= 1; a request whose turns are unknown opens nothing), how many tool-heavy requests
the bucket held (``turns``, every turn), how many of them opened a session (``opens``), and how many
carried the smallest text (``sends``). Minima, sums and the sends of the minimum are the same in any
order and slicing (``tests/test_slicing.py``) and expire with the buckets; no prompt text, only the
64-bit hash. An account with no tool-heavy request holds no row; a busy one at most one a bucket.

Per cluster (``cluster_openers``), over the members that sent tool-heavy requests in the window (its
agents): a sampled opener is **shared** when at least ``opener_holder_share`` of them, and at least
``opener_min_holders``, hold it. Features (counts only): ``opener_shared_share_24h``, the share of the
sampled openers (account, bucket) that are shared; ``tools_heavy_turns_per_open_24h``, the pool's
tool-heavy turns per opener; ``tools_heavy_per_agent_24h``, its tool-heavy turns per agent; and
``opener_sends_per_text_24h``, the sampled sends of shared openers per distinct (account, text); and
``openers_per_agent_24h``, the sampled openers per agent (below a few, the share cannot be read yet).
``detect/openers.py`` reads them. Since round 22 each row says whether its sample is a SimHash
(``SIMHASH``), and the share, the holders and the openers per agent are read within the cluster's one
hash space (``window/hashspace.py``): a text-free agent's openers can share nothing with a texted one's.
"""

from __future__ import annotations

import polars as pl

from detector.evidence_settings import EvidenceSettings
from detector.schema import UTC_US, make_schema
from detector.window import hashspace
from detector.window.hashspace import COMPARABLE, PEERS, SIMHASH, sampled_space, simhash_request, spaced

_ROW = {
    "bucket": UTC_US,
    "text_fp": pl.UInt64,
    "turns": pl.UInt32,
    "opens": pl.UInt32,
    "sends": pl.UInt32,
    SIMHASH: pl.Boolean,
}
OPENER_SCHEMA = make_schema({"account_id": pl.String, **_ROW})
OPENER_STORE = make_schema({"account_code": pl.UInt32, **_ROW})
#: The features this module adds to a cluster (kept out of the models: ``detect/models/spec.py``).
OPENER_FEATURES: dict[str, pl.DataType] = {
    "opener_shared_share_24h": pl.Float64(),
    "tools_heavy_turns_per_open_24h": pl.Float64(),
    "tools_heavy_per_agent_24h": pl.Float64(),
    "opener_sends_per_text_24h": pl.Float64(),
    "openers_per_agent_24h": pl.Float64(),
}
#: Features of a cluster with no tool-heavy request: nothing shared, nothing sent.
_NONE = {name: 0.0 for name in OPENER_FEATURES}


def opener_rows(ev: pl.DataFrame, codes: pl.DataFrame) -> pl.DataFrame:
    """Per (account, bucket) of ``ev`` (enriched events with ``bucket``) with a tool-heavy request: the
    smallest ``text_fp`` of those that open a session, the tool-heavy turns, the openers and the
    smallest text's sends (``OPENER_STORE``; ``codes``: account_id -> account_code)."""
    if not {"is_tools_heavy", "text_fp", "prompt_turns"} <= set(ev.columns):
        return pl.DataFrame(schema=OPENER_STORE)
    opens = (pl.col("prompt_turns").fill_null(2) <= 1) & pl.col("text_fp").is_not_null()
    fp = pl.when(opens).then(pl.col("text_fp"))
    least = (fp == fp.min()).fill_null(False)
    return (
        ev.filter(pl.col("is_tools_heavy").fill_null(False))
        .with_columns(simhash_request(ev.columns).alias(SIMHASH))
        .group_by("account_id", "bucket")
        .agg(
            fp.min().alias("text_fp"),
            pl.len().cast(pl.UInt32).alias("turns"),
            opens.sum().cast(pl.UInt32).alias("opens"),
            least.sum().cast(pl.UInt32).alias("sends"),
            sampled_space(least, pl.col(SIMHASH)).alias(SIMHASH),
        )
        .join(codes, on="account_id")
        .select(OPENER_STORE.keys())
        .cast(OPENER_STORE)
    )


def merge_openers(rows: pl.DataFrame, account: str = "account_code") -> pl.DataFrame:
    """One row per (account, bucket): the smallest opener, turns and openers summed, and the sends of
    the smallest opener summed over the rows that sampled it (any order: the same)."""
    least = pl.col("text_fp") == pl.col("text_fp").min()
    return (
        spaced(rows)
        .group_by(account, "bucket")
        .agg(
            pl.col("text_fp").min(),
            pl.col("turns").sum().cast(pl.UInt32),
            pl.col("opens").sum().cast(pl.UInt32),
            pl.col("sends").filter(least).sum().cast(pl.UInt32),
            sampled_space(least, pl.col(SIMHASH)),
        )
        .select(account, *_ROW)
        .sort(account, "bucket")
    )


def cluster_openers(rows: pl.DataFrame, members: pl.DataFrame, s: EvidenceSettings) -> pl.DataFrame:
    """Per cluster (``members``: account_id, cluster_id) with a tool-heavy request in ``rows`` (every
    account's opener rows, ``OPENER_SCHEMA``, of the window): ``OPENER_FEATURES``."""
    # a late event's row beside its bucket's: merged as the state's compaction would
    w = merge_openers(rows, "account_id").join(members.select("account_id", "cluster_id"), on="account_id")
    c = pl.col
    agents = w.group_by("cluster_id").agg(c("account_id").n_unique().alias("_agents"))
    # read within one hash space (round 22): the holders and the bar count the agents read there
    share, least = s.opener_holder_share, s.opener_min_holders
    w = hashspace.held_in_space(w, "cluster_id", share, least, "_shared").join(agents, on="cluster_id")
    sampled, shared = c(COMPARABLE), c("_shared")
    turns, opens = c("turns").cast(pl.Float64).sum(), c("opens").cast(pl.Float64).sum()
    texts = pl.struct("account_id", "text_fp").filter(shared).n_unique()
    sends = c("sends").cast(pl.Float64).filter(shared).sum()
    return w.group_by("cluster_id").agg(
        pl.when(sampled.sum() > 0)
        .then(shared.sum() / sampled.sum())
        .otherwise(0.0)
        .alias("opener_shared_share_24h"),
        # no opener at all: as many turns a session as it sent (no short loop is seen)
        (turns / pl.max_horizontal(opens, pl.lit(1.0))).alias("tools_heavy_turns_per_open_24h"),
        (turns / c("_agents").first()).alias("tools_heavy_per_agent_24h"),
        pl.when(texts > 0).then(sends / texts).otherwise(0.0).alias("opener_sends_per_text_24h"),
        (sampled.sum().cast(pl.Float64) / c(PEERS).first()).alias("openers_per_agent_24h"),
    )


def with_openers(frame: pl.DataFrame, openers: pl.DataFrame, on: list[str]) -> pl.DataFrame:
    """``frame`` with ``OPENER_FEATURES`` joined (no tool-heavy request: zeros)."""
    return frame.join(openers, on=on, how="left").with_columns(
        pl.col(name).fill_null(value) for name, value in _NONE.items()
    )


def opener_defaults(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with any missing ``OPENER_FEATURES`` column as if no tool-heavy request was sampled."""
    missing = [c for c in OPENER_FEATURES if c not in frame.columns]
    return frame.with_columns(pl.lit(_NONE[c], OPENER_FEATURES[c]).alias(c) for c in missing)
