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
the fresh router campaigns' accounts the account axis had named), **capped at medium** (round 15): the
cluster axis accuses such a group at medium at most (``require_both_axes``: a tenant's customer may
explain it), and a seat whose own evidence is only its group's tool's adds nothing to lift it past its
group. A team that adopted its reasoning tool through the router within the month (dev draw 210: ten
seats, all 3-25 days old) had three seats at high on the account axis; a fresh farm with the same keys
stays accused, at medium.

What it gives up is the round-9 "no signal" row: a farm inside a router harvesting only through thinking
budgets, behind a private system prompt, is a team's reasoning tool on every key the gateway sees.
State: none of its own; the key table as of each accused point's tick and the window's buckets.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from detector.contracts import SEVERITY_RANK, Severity
from detector.detect.evidence import RESELLER_TIER, beyond_a_tool, tenant_explains
from detector.detect.lone import LoneWalk
from detector.detect.provenance import in_tenant
from detector.detect.room import RoomContext, accused_points, cap_at, cap_at_low
from detector.evidence_settings import EvidenceSettings
from detector.window.features import cluster_features
from detector.window.members import is_subaccount, new_account_share
from detector.window.samples import with_cluster_samples
from detector.window.state import WindowState

#: Severities above medium: the points a group of new seats can lower (round 15).
_ABOVE_MEDIUM = [v for v, rank in SEVERITY_RANK.items() if rank > Severity.MEDIUM.rank]

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
    new_too: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """(account_id, tool, established) of the holders of every tool key in ``wanted`` (family, key) whose
    holders, at least ``team_min_seats``, ``tenant_explains`` explains as a group, from the key table at
    ``now``, of an established customer (``established``: fewer than ``team_new_seat_share`` opened
    within the month), or, for the keys in ``new_too`` (family, key), of new seats as well."""
    held = keys.join(wanted, on=["family", "key"], how="semi").select(
        "account_id", _tool().alias("cluster_id")
    )
    fresh = (new_too if new_too is not None else wanted.clear()).select(_tool().alias("cluster_id"))
    size = held.group_by("cluster_id").agg(pl.col("account_id").n_unique().alias("_n"))
    members = held.join(size.filter(pl.col("_n") >= s.team_min_seats).select("cluster_id"), on="cluster_id")
    none = pl.DataFrame(schema={"account_id": pl.String, "tool": pl.String, "established": pl.Boolean})
    if members.height == 0:
        return none
    sub = ctx.subaccounts(now, keys)  # the room test's at this tick (issue 13)
    members = members.unique()
    kept = may_be_team(members, sub, ctx.accounts, now, s, fresh)
    members = members.join(kept, on="cluster_id", how="semi")
    if members.height == 0:
        return none
    links = pl.DataFrame(schema={"cluster_id": pl.String})  # tenant_explains reads no linkage column
    feats = cluster_features(state, members, links, ctx.accounts, now, long, sub, keys=keys)
    # the group's shared exercise sheet and agents' openers, as the cluster axis reads them
    # (``tenant_explains`` does)
    feats = with_cluster_samples(feats, state, members, now, long, s)
    wanted_new = pl.col("cluster_id").is_in(fresh["cluster_id"].implode())
    explained = feats.filter(tenant_explains(s).fill_null(False) & (established(s) | wanted_new))
    return members.join(explained.select("cluster_id", established(s)), on="cluster_id").select(
        "account_id", pl.col("cluster_id").alias("tool"), "established"
    )


def established(s: EvidenceSettings) -> pl.Expr:
    """An established customer's group: fewer than ``team_new_seat_share`` of it opened within the month."""
    return (pl.col("new_account_share").fill_null(1.0) < s.team_new_seat_share).alias("established")


def may_be_team(
    members: pl.DataFrame,
    sub: pl.DataFrame,
    accounts: pl.DataFrame,
    now: datetime,
    s: EvidenceSettings,
    fresh: pl.DataFrame,
) -> pl.DataFrame:
    """The groups (``cluster_id``) of ``members`` that can pass ``team_groups``' bar, read from the account
    table alone before any feature is built (issue 13): most holders the tenant's sub-accounts
    (``in_tenant``) and an established customer's (``established``) unless ``fresh`` names it
    (``cluster_id``: a group of new seats is read for the medium cap, round 15), the same shares of the
    same rows ``cluster_features`` gives (``window.members``). Exact: every feature row of a group reads
    only its own members (and the whole window's typical mix), so the groups kept get the rows they had.
    A popular system prompt's thousands of holders are no router's team, and are never summed."""
    shares = (
        accounts.join(members, on="account_id", how="inner")
        .group_by("cluster_id")
        .agg(
            is_subaccount(sub).mean().alias("tenant_share"),
            new_account_share(now).alias("new_account_share"),
        )
    )
    wanted_new = pl.col("cluster_id").is_in(fresh["cluster_id"].implode())
    return shares.filter(in_tenant(s) & (established(s) | wanted_new)).select("cluster_id")


def spare_team_seats(
    hits: pl.DataFrame,
    frame: pl.DataFrame,
    ctx: RoomContext,
    state: WindowState,
    s: EvidenceSettings,
    long: timedelta,
) -> pl.DataFrame:
    """Account hits (key ``_point``) capped at low where the point is its team's seat (module docstring),
    with an ``evidence:team`` reason saying so; the ticks walked on a timeline of its own (the engine
    walks them with the room test's instead: ``SeatWalk``)."""
    walk = SeatWalk(hits, frame, ctx, state, s, long)
    timeline = ctx.timeline.fresh()
    for tick in walk.ticks:
        walk.visit(tick, ctx.population(timeline, tick)[1])
    return walk.spare(hits)


class SeatWalk:
    """The seat test over one pass, fed the key table at each tick by a walk it shares (issue 13).

    The room test (``room.room_requests``) walks the ticks of the accused points and builds the key
    table as of each; the seat points are accused points too, so the seat test reads the same tables
    in the same walk (``visit``) instead of building them again. Built from the hits before the room
    test, its points are a superset of the seat points after it (the room only lowers points to low);
    ``spare`` keeps only the points still accused, which is exact: a point's team is read from its own
    account's keys at its tick, whatever other points are walked with it."""

    def __init__(
        self,
        hits: pl.DataFrame,
        frame: pl.DataFrame,
        ctx: RoomContext,
        state: WindowState,
        s: EvidenceSettings,
        long: timedelta,
    ) -> None:
        self.frame, self.ctx, self.state, self.s, self.long = frame, ctx, state, s, long
        self.lone = LoneWalk(hits, frame, ctx, s)  # one customer of the router's many (round 17)
        self.points = _seat_points(hits, frame, s)
        self._by_tick = {
            tick: pts
            for (tick,), pts in self.points.sort("tick_end").group_by("tick_end", maintain_order=True)
            if isinstance(tick, datetime)
        }
        self.ticks = sorted(set(self._by_tick) | set(self.lone.ticks))
        self._spared: list[pl.DataFrame] = []

    def visit(self, tick: datetime, keys: pl.DataFrame) -> None:
        """The seats among this tick's points (``keys``: the key table as it stood at ``tick``, or
        ``RoomContext.lag`` before it: the groups are read then, the points' own keys at ``tick``)."""
        self.lone.visit(tick, keys)
        pts = self._by_tick.get(tick)
        if pts is None:
            return
        own = self.ctx.own(tick, pts.select("account_id"), keys)
        own = own.filter(pl.col("family").cast(pl.String).is_in(TOOL_FAMILIES))
        if own.height == 0:
            return
        then, wanted = tick - self.ctx.lag, own.select("family", "key").unique()
        # a group of new seats can only lower a point above medium: read for those points' keys only
        high = own.join(pts.filter(pl.col("_high")).select("account_id"), on="account_id", how="semi")
        new_too = high.select("family", "key").unique()
        if self.ctx.contexts is None:
            groups = team_groups(keys, self.ctx, self.state, self.s, then, self.long, wanted, new_too)
        else:  # the population only through the context (``detect/context.py``): every group in it
            tools, fresh = wanted.select(_tool())["tool"], new_too.select(_tool())["tool"]
            groups = self.ctx.contexts[tick].teams.filter(
                pl.col("tool").is_in(tools.implode())
                & (pl.col("established") | pl.col("tool").is_in(fresh.implode()))
            )
        mine = own.select("account_id").unique().join(groups, on="account_id")
        # a seat on an established group's tool is that team's; else on a group of new seats
        mine = mine.group_by("account_id").agg(pl.col("tool").min(), pl.col("established").any())
        self._spared.append(pts.join(mine, on="account_id"))

    def spare(self, hits: pl.DataFrame) -> pl.DataFrame:
        """``hits`` (the room test's output) with every seat point still accused capped: at low on an
        established team's tool, at medium on a group of new seats (module docstring; only the points
        above medium are touched there, so the reason rides with a lowered point: an episode at medium
        already emits no revision for it)."""
        # the team's own cap first (its reason is the more specific), then lone seats among the rest
        return self.lone.spare(self._spare_teams(hits))

    def _spare_teams(self, hits: pl.DataFrame) -> pl.DataFrame:
        if not self._spared or hits.height == 0:
            return hits
        still = _seat_points(hits, self.frame, self.s).select("_point")
        spared = pl.concat(self._spared).join(still, on="_point", how="semi")
        seat = (
            "team: a router sub-account whose only extraction is what a tool needs (a thinking budget, "
            "outputs sized as thinking needs, an ask for steps with ordinary outputs), on the system "
            "prompt or template of a group inside the router that one of its customers' teams explains"
        )
        low = pl.lit(seat + ": capped at low (the group is judged on the cluster axis)")
        hits = cap_at_low(hits, spared.filter(pl.col("established")), "team", low)
        # a group of new seats: the cluster axis accuses it, at medium at most (``require_both_axes``);
        # only the points above medium are lowered and say why
        high = hits.filter(pl.col("severity").is_in(_ABOVE_MEDIUM)).select("_point")
        new = spared.filter(~pl.col("established")).join(high, on="_point", how="semi")
        medium = pl.lit(
            seat + ", its seats new: at most medium (the cap its group has on the cluster axis, which "
            "judges it; the seat's own evidence adds nothing a team's tool does not send)"
        )
        return cap_at(hits, new, "team", medium, Severity.MEDIUM)


def _tool() -> pl.Expr:
    """A tool key's name: ``family|key`` (``tool``)."""
    return pl.concat_str(
        [pl.col("family").cast(pl.String), pl.col("key").cast(pl.String)], separator="|"
    ).alias("tool")


def _seat_points(hits: pl.DataFrame, frame: pl.DataFrame, s: EvidenceSettings) -> pl.DataFrame:
    """(_point, account_id, tick_end, _high) of the accused router sub-account points whose own extraction
    is only what a tool needs; ``_high``: some hit puts the point above medium."""
    high = pl.col("_point").is_in(hits.filter(pl.col("severity").is_in(_ABOVE_MEDIUM))["_point"].implode())
    if hits.height == 0:
        return frame.select("_point", "account_id", "tick_end", high.alias("_high")).clear()
    return (
        frame.join(accused_points(hits), on="_point", how="semi")
        .filter((pl.col("tier") == RESELLER_TIER).fill_null(False) & ~beyond_a_tool(s, "account"))
        .select("_point", "account_id", "tick_end", high.alias("_high"))
    )
