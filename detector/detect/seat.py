"""A team's seat on the account axis: a router sub-account's reasoning is its team's tool's.

A company's team reaching the model through a router sends its internal tool's requests from a
sub-account per seat. When the tool runs on a reasoning model, every use sends a thinking budget with
the near-maximum ``max_tokens`` thinking needs, and perhaps "step by step". The cluster axis knows the
seats as one of the router's customers (``evidence.tenant_explains``); the account axis did not, so a
freshly opened seat (no tenure, so no trust) was a fresh account harvesting reasoning and reached high
(held-out draw 1133, round 9; issue 17).

A router sub-account point is **its team's seat** when (1) its own extraction evidence is only what a
tool needs (``evidence.beyond_a_tool`` false: a thinking budget, outputs no larger than thinking needs,
an elicited ask with ordinary output sizes; no coercion, rubric grading, logprobs, agentic transcripts
or pivot), and (2) it holds a system prompt or template that at least ``team_min_seats`` accounts hold
and whose holders, as a group, ``tenant_explains`` explains (most of them the tenant's sub-accounts, no
scheduler waves, no harvest beyond a tool, diluted or not) and which is an established customer's:
fewer than ``team_new_seat_share`` (0.8) of them opened within the month, the bar below which the farm
rules leave an explained group alone. Such a point is capped at **low** whatever fired, rule or model,
with an ``evidence:team`` reason: its account-axis evidence is its team's tool's, all of it, and the
team is one the cluster axis explains. A farm whose seats are all new is no established team, so its
seats keep their account-axis verdicts (round 10's first try spared those too, and lost a third of
the fresh router campaigns' accounts the account axis had named).

What it gives up is the round-9 "no signal" row: a farm inside a router harvesting only through thinking
budgets, behind a private system prompt, is a team's reasoning tool on every key the gateway sees.
State: none of its own; the key table as of each accused point's tick and the window's buckets.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from detector.detect.evidence import RESELLER_TIER, beyond_a_tool, tenant_explains
from detector.detect.room import RoomContext, accused_points, cap_at_low
from detector.settings import EvidenceSettings
from detector.window.features import cluster_features
from detector.window.link import tenant_subaccounts
from detector.window.sheets import cluster_sheets, with_sheets
from detector.window.state import WindowState

#: The key families a team's tool leaves on its seats.
TOOL_FAMILIES = ("sysprompt", "template")


def team_groups(
    keys: pl.DataFrame,
    ctx: RoomContext,
    state: WindowState,
    s: EvidenceSettings,
    now: datetime,
    long: timedelta,
    wanted: pl.DataFrame,
) -> pl.DataFrame:
    """(account_id, tool) of the holders of every tool key in ``wanted`` (family, key) whose holders, at
    least ``team_min_seats``, ``tenant_explains`` explains as a group of an established customer (fewer
    than ``team_new_seat_share`` opened within the month), from the key table at ``now``."""
    tool = pl.concat_str([pl.col("family").cast(pl.String), pl.col("key").cast(pl.String)], separator="|")
    held = keys.join(wanted, on=["family", "key"], how="semi").select("account_id", tool.alias("cluster_id"))
    size = held.group_by("cluster_id").agg(pl.col("account_id").n_unique().alias("_n"))
    members = held.join(size.filter(pl.col("_n") >= s.team_min_seats).select("cluster_id"), on="cluster_id")
    if members.height == 0:
        return pl.DataFrame(schema={"account_id": pl.String, "tool": pl.String})
    sub = tenant_subaccounts(keys.filter(pl.col("family") == "reseller"), ctx.accounts, ctx.min_overlap)
    links = pl.DataFrame(schema={"cluster_id": pl.String})  # tenant_explains reads no linkage column
    feats = cluster_features(state, members.unique(), links, ctx.accounts, now, long, sub, keys=keys)
    # the group's shared exercise sheet, as the cluster axis reads it (``tenant_explains`` does)
    rows = state.sheet_rows(now - long, now)
    sheets = cluster_sheets(rows, members.unique(), now, long, s.sheet_min_accounts)
    feats = with_sheets(feats, sheets, ["cluster_id"])
    established = pl.col("new_account_share").fill_null(1.0) < s.team_new_seat_share
    explained = feats.filter(tenant_explains(s).fill_null(False) & established).select("cluster_id")
    return members.join(explained, on="cluster_id").select("account_id", pl.col("cluster_id").alias("tool"))


def spare_team_seats(
    hits: pl.DataFrame,
    frame: pl.DataFrame,
    ctx: RoomContext,
    state: WindowState,
    s: EvidenceSettings,
    long: timedelta,
) -> pl.DataFrame:
    """Account hits (key ``_point``) capped at low where the point is its team's seat (module docstring),
    with an ``evidence:team`` reason saying so."""
    if hits.height == 0:
        return hits
    seats = (
        frame.join(accused_points(hits), on="_point", how="semi")
        .filter((pl.col("tier") == RESELLER_TIER).fill_null(False) & ~beyond_a_tool(s, "account"))
        .select("_point", "account_id", "tick_end")
    )
    if seats.height == 0:
        return hits
    timeline = ctx.timeline.fresh()
    spared = []
    for (tick,), pts in seats.sort("tick_end").group_by("tick_end", maintain_order=True):
        assert isinstance(tick, datetime)
        since = ctx.since.filter(pl.col("tick_end") == tick)["since"]
        keys = timeline.at(tick, since[0] if since.len() else None)
        own = keys.join(pts.select("account_id"), on="account_id", how="semi").filter(
            pl.col("family").cast(pl.String).is_in(TOOL_FAMILIES)
        )
        if own.height == 0:
            continue
        groups = team_groups(keys, ctx, state, s, tick, long, own.select("family", "key").unique())
        mine = own.select("account_id").unique().join(groups, on="account_id")
        spared.append(pts.join(mine.group_by("account_id").agg(pl.col("tool").min()), on="account_id"))
    if not spared:
        return hits
    detail = pl.lit(
        "team: a router sub-account whose only extraction is what a tool needs (a thinking budget, "
        "outputs sized as thinking needs, an ask for steps with ordinary outputs), on the system "
        "prompt or template of a group inside the router that one of its customers' teams explains: "
        "capped at low (the group is judged on the cluster axis)"
    )
    return cap_at_low(hits, pl.concat(spared), "team", detail)
