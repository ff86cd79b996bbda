"""One customer of the router's many: a lone router seat on the account axis (issue 17, rounds 17 and 18).

A router forwards every customer's requests under a sub-account of its own verified tenant, and its
customers open seats all year: a handful of its many seats are under a month old on any day, and some
of those compare models on benchmarks that ask for steps, on a reasoning model's thinking budget, on
the day a new model launches (a common use of a router). Such a seat has no tenure of its own, so the
router's verification gives it no trust (``evidence._reseller_vouches_not`` aside, trust needs 30
days), and the account axis accused it at medium for reasoning elicited from the new model: on the
round-16 held-out block 59 of the 84 honest accounts at medium (without the remote course) were the
router's customers; on dev draws 413-432, 14 of the 15 router customers at medium were this shape.

A farm sending through the router is no lone seat: its seats are opened for it, days before use, and
carry its own tool (a private system prompt or template skeleton) that a group of **new** seats holds.
A lone customer's keys are the router's population's: the benchmark templates and popular system
prompts its established customers hold too, or none at all.

So an accused account point is a **lone router seat** when (1) it is a reseller's sub-account (tier
``reseller``) of a **router**: a reseller tenant (``window.link.tenant_subaccounts``: most holders of its
reseller id under its one org) whose seats in the key table are, as a group, what the cluster axis calls
a trusted customer's, ``trusted_member_share`` (0.5) or more of them verified and their median age
``trust_tenure_days`` (30) or more (``router_tenants``, round 18; the tier alone said nothing of the tenant,
and a cot_hydra farm gives half its seats a reseller tier of its own), (2) its extraction evidence
is only what the router's customers do at volume (``ROUTER_CUSTOMER_KINDS``: reasoning elicited,
reasoning via parameters, the new model's launch; at least one: a model's verdict with no signal is not
read here), and (3) none of its system prompts or
templates is shared with another seat by a group of which ``team_new_seat_share`` (0.8) or more were
opened within the month (the farm rules' freshness clause; any size from two: a group under
``team_min_seats`` is no team the seat test could spare, and no lone customer either); nor, round 19,
its sign-up half hour (the ``signup`` key) with another of the same router's seats (``seat_keys``: the
slot read within the tenant, so a casual account opened in that half hour is no group). Such a point
is capped at **low** with an ``evidence:lone`` reason; whatever the cluster axis says about the account
is untouched (a cluster alert names its accounts on its own). Coercion, logprobs, rubric grading and
agentic transcripts keep their verdicts (the router's trust never covered them, round 8).

What it gives up: a farm inside the router whose seats share no system prompt or template (each seat
its own) and harvest only by asking for steps is a set of lone customers on every key the gateway sees.
And a farm under a tenant of its own passes (1) only with a verified tenant at least half of whose seats
in the window were opened over a month before: accounts bought or parked long before use, under one org,
verified; its aged seats then have the account axis's trust already, and what the cap adds is its new
seats' (round 18: what an attacker pays). A reseller whose customers keep their own orgs is no tenant:
its customers' verification and tenure are their own, and none of its seats is capped.

Under ``context_lag`` (round 18) the groups are read as of a tick before the point's (``RoomContext.lag``:
the key table then, and the month counted back from then), the point's own keys at its tick, through one
reader (``group_reader``) for both paths: from the key table, or, through the contexts, from each tick's
``new_seats`` kind (``window/context.py``: every tool key at least two accounts held then,
``team_new_seat_share`` of them new, built by ``detect/context.py`` with ``new_seat_groups`` itself),
so the split deployment spares the lone seats the one engine spares a tick later. A context of
version 2 (a cluster stage from before round 18) carries no such kind: the points that read it are not
tested (as under the lag before).

The router test reads the population the same way: the tenants that pass it as of the tick the groups
are read at, from the key table (``router_tenants``), or from the context's ``routers`` kind, and the
point's own reseller id and org at its tick (``on_router``), so both paths name the same seats.

Also: a farm's first seat to send **through the router** is lone until a second new seat holds its
tool (15-30 minutes later first accusations of fresh thinking-budget farms on the dev draws,
docs/detection.md round 17); under the lag, until a tick after it does (the group is read a tick late).
Outside the router (its own reseller id) it no longer is (round 18). Round 19: nor is it once a second
seat of its sign-up batch has sent anything through the router (its half hour, not its tool): what a
router's honest new seat gives up is a second new seat of the router opened in the same half hour, which
a router opening a few seats a day rarely gives, a router opening hundreds a day often would (not
measured: the simulator's router opens two to four).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import polars as pl

from detector.contracts import SEVERITY_RANK, Severity
from detector.detect.evidence import RESELLER_TIER, extraction_checks
from detector.detect.room import RoomContext, cap_at
from detector.evidence_settings import EvidenceSettings
from detector.window.link import reseller_orgs
from detector.window.members import new_account_share

#: The extraction a router's customers do at volume: benchmarks that ask for steps, a reasoning model's
#: thinking budget, a new model's launch day. Any other signal on the point keeps its verdict.
ROUTER_CUSTOMER_KINDS = ("reasoning elicited", "reasoning via parameters", "new-model pivot")
#: The key families a farm's own tool leaves on its seats (as ``seat.TOOL_FAMILIES``).
_TOOL_FAMILIES = ("sysprompt", "template")
#: A sign-up burst (the ``signup`` key: the half hour an account was opened in), read within one router
#: (round 19): seats of one router opened in one half hour, every one new, are a group of new seats.
_SIGNUP = "signup"
#: A key another account holds too: the seat shares it (a farm of two seats is no lone customer).
OTHER_SEAT = 2
_ACCUSED = [v for v, rank in SEVERITY_RANK.items() if rank >= Severity.MEDIUM.rank]


def customer_kinds_only(s: EvidenceSettings) -> pl.Expr:
    """An account row whose extraction signals are at least one, all of ``ROUTER_CUSTOMER_KINDS``."""
    ext = extraction_checks(s)
    ours = pl.any_horizontal([ext[k].fill_null(False) for k in ROUTER_CUSTOMER_KINDS])
    other = pl.any_horizontal([e.fill_null(False) for k, e in ext.items() if k not in ROUTER_CUSTOMER_KINDS])
    return ours & ~other


def lone_points(hits: pl.DataFrame, frame: pl.DataFrame, s: EvidenceSettings) -> pl.DataFrame:
    """(_point, account_id, tick_end) of the router sub-account points accused at medium or above whose
    extraction is only ``ROUTER_CUSTOMER_KINDS`` (the candidates; ``LoneWalk`` reads their groups)."""
    cols = ["_point", "account_id", "tick_end"]
    accused = hits.filter(pl.col("severity").is_in(_ACCUSED)).select("_point").unique()
    if accused.height == 0:
        return frame.select(cols).clear()
    return (
        frame.join(accused, on="_point", how="semi")
        .filter((pl.col("tier") == RESELLER_TIER).fill_null(False) & customer_kinds_only(s))
        .select(cols)
    )


def new_seat_groups(
    keys: pl.DataFrame, accounts: pl.DataFrame, wanted: pl.DataFrame, now: datetime, s: EvidenceSettings
) -> pl.DataFrame:
    """The (family, key) of ``wanted`` held by at least two accounts in ``keys`` (the key table at
    ``now``), ``team_new_seat_share`` or more of them opened within the month of ``now``."""
    held = keys.join(wanted, on=["family", "key"], how="semi").select("account_id", "family", "key").unique()
    if held.height == 0:
        return wanted.clear()
    groups = (
        held.join(accounts.select("account_id", "created_at"), on="account_id", how="inner")
        .group_by("family", "key")
        .agg(pl.len().alias("_n"), new_account_share(now).alias("_new"))
    )
    fresh = (pl.col("_n") >= OTHER_SEAT) & (pl.col("_new") >= s.team_new_seat_share)
    return groups.filter(fresh).select("family", "key")


def seat_keys(keys: pl.DataFrame, sub: pl.DataFrame, accounts: pl.DataFrame) -> pl.DataFrame:
    """(account_id, family, key) of the keys of ``keys`` that make a group of seats: the tool keys, and
    each tenant sub-account's sign-up burst (``sub``: account_id, reseller; its org from ``accounts``),
    keyed within its tenant (reseller id and org, JSON: two tenants may share a reseller id), so that
    only seats of one router opened in one half hour share it (round 19)."""
    family = pl.col("family").cast(pl.String)
    key = pl.col("key").cast(pl.String)
    tools = keys.filter(family.is_in(_TOOL_FAMILIES)).select("account_id", family, key)
    parts = [pl.col(c).cast(pl.String) for c in ("reseller", "org_id", "key")]
    slot = pl.struct(parts).struct.json_encode()
    slots = (
        keys.filter(family == _SIGNUP)
        .join(sub.select("account_id", "reseller"), on="account_id")
        .join(accounts.select("account_id", "org_id"), on="account_id")
        .select("account_id", family, slot.alias("key"))
    )
    return pl.concat([tools, slots])


def new_seat_tools(
    keys: pl.DataFrame, accounts: pl.DataFrame, now: datetime, s: EvidenceSettings, sub: pl.DataFrame
) -> pl.DataFrame:
    """Every tool key or router sign-up burst (``tool``: ``family|key``, sorted; ``seat_keys``, ``sub``
    the tenants' sub-accounts) of ``keys`` (the key table at ``now``) that a group of new seats holds
    (``new_seat_groups``): the contexts' ``new_seats`` kind (``detect/context.py``)."""
    held = seat_keys(keys, sub, accounts)
    groups = new_seat_groups(held, accounts, held.select("family", "key").unique(), now, s)
    return groups.select(tool_name()).sort("tool")


def tool_name() -> pl.Expr:
    """A tool key's name: ``family|key`` (``tool``), as the contexts carry it."""
    return pl.concat_str(
        [pl.col("family").cast(pl.String), pl.col("key").cast(pl.String)], separator="|"
    ).alias("tool")


#: The reader of the groups of new seats (module docstring): given a point tick, the population's key
#: table as the walk hands it, and the (family, key) of the points' tool keys, the ones a group of new
#: seats held as of ``RoomContext.lag`` before the tick; None: not known at that tick (no test there).
GroupReader = Callable[[datetime, pl.DataFrame, pl.DataFrame], pl.DataFrame | None]


def group_reader(ctx: RoomContext, s: EvidenceSettings) -> GroupReader:
    """The groups of new seats from the key table (``ctx.contexts`` None; the table is the one as of
    ``lag`` before the tick, and the month is counted back from then) or from each tick's context."""
    contexts = ctx.contexts
    if contexts is not None and not ctx.lag:  # ``ctx.own`` would read the points' keys from no table
        raise ValueError("the lone-seat test reads contexts only under a lag")
    if contexts is None:

        def table(tick: datetime, keys: pl.DataFrame, wanted: pl.DataFrame) -> pl.DataFrame:
            then = tick - ctx.lag
            held = seat_keys(keys, ctx.subaccounts(then, keys), ctx.accounts)
            return new_seat_groups(held, ctx.accounts, wanted, then, s)

        return table

    def read(tick: datetime, keys: pl.DataFrame, wanted: pl.DataFrame) -> pl.DataFrame | None:
        fresh = contexts[tick].new_seats
        if fresh is None:  # a version 2 context (module docstring)
            return None
        return wanted.filter(tool_name().is_in(fresh["tool"].implode()))

    return read


def router_tenants(
    sub: pl.DataFrame, accounts: pl.DataFrame, now: datetime, s: EvidenceSettings
) -> pl.DataFrame:
    """(reseller, org_id) of the tenants in ``sub`` (``tenant_subaccounts`` at ``now``: the reseller
    tenants' seats in the key table) that are established, verified routers (round 18): as a group, their
    seats are what the cluster axis calls a trusted customer's, ``trusted_member_share`` or more of them
    verified and their median age ``trust_tenure_days`` or more (most of them not opened within the
    month). A farm's own tenant, fresh or with its seats opened together, is no router; a reseller whose
    customers keep their own orgs is no tenant at all (its customers' verification and tenure are their
    own). The contexts' ``routers`` kind (``detect/context.py``)."""
    rows = sub.join(accounts.select("account_id", "org_id", "created_at", "verified"), on="account_id")
    age = (pl.lit(now) - pl.col("created_at")).dt.total_seconds() / 86400.0
    passing = (
        rows.group_by("reseller")
        .agg(
            pl.col("verified").fill_null(False).mean().alias("_verified"),
            age.fill_null(0.0).median().alias("_age"),
        )
        .filter((pl.col("_verified") >= s.trusted_member_share) & (pl.col("_age") >= s.trust_tenure_days))
    )
    out = rows.join(passing, on="reseller", how="semi").select("reseller", "org_id").unique()
    return out.select(pl.col("reseller").cast(pl.String), pl.col("org_id").cast(pl.String)).sort(
        "reseller", "org_id"
    )


def on_router(own: pl.DataFrame, accounts: pl.DataFrame, routers: pl.DataFrame) -> pl.DataFrame:
    """(account_id) of the accounts whose own keys (``own``) put them under one of ``routers``: their
    reseller id (the least, as ``tenant_subaccounts`` reads it) and their org a router's."""
    res = reseller_orgs(own, accounts).select(
        "account_id", pl.col("reseller").cast(pl.String), pl.col("org_id").cast(pl.String)
    )
    return res.join(routers, on=["reseller", "org_id"], how="semi").select("account_id").unique()


#: The reader of the routers (``router_tenants``) as of ``RoomContext.lag`` before a point tick, given
#: the population's key table as the walk hands it; None: not known at that tick (no test there).
RouterReader = Callable[[datetime, pl.DataFrame], pl.DataFrame | None]


def router_reader(ctx: RoomContext, s: EvidenceSettings) -> RouterReader:
    """The routers from the key table (``ctx.contexts`` None) or from each tick's context."""
    contexts = ctx.contexts
    if contexts is None:

        def table(tick: datetime, keys: pl.DataFrame) -> pl.DataFrame:
            then = tick - ctx.lag
            return router_tenants(ctx.subaccounts(then, keys), ctx.accounts, then, s)

        return table
    return lambda tick, keys: contexts[tick].routers


class LoneWalk:
    """The lone-seat test over the room test's walk of the ticks (``SeatWalk`` hands it each tick's key
    table): candidates from the hits before the room and sheet tests, a superset of those after them;
    ``spare`` caps only the points still accused."""

    def __init__(
        self, hits: pl.DataFrame, frame: pl.DataFrame, ctx: RoomContext, s: EvidenceSettings
    ) -> None:
        self.frame, self.ctx, self.s = frame, ctx, s
        pts = lone_points(hits, frame, s)
        self._by_tick = {
            tick: p for (tick,), p in pts.sort("tick_end").group_by("tick_end", maintain_order=True)
        }
        self.ticks = [t for t in self._by_tick if isinstance(t, datetime)]
        self.groups, self.routers = group_reader(ctx, s), router_reader(ctx, s)
        self._lone: list[pl.DataFrame] = []

    def visit(self, tick: datetime, keys: pl.DataFrame) -> None:
        """The lone seats among this tick's candidates (``keys``: the population's key table as the walk
        hands it: as of the tick, or ``RoomContext.lag`` before it, or empty under the contexts)."""
        pts = self._by_tick.get(tick)
        if pts is None:
            return
        routers = self.routers(tick, keys)
        if routers is None:  # a version 2 context (module docstring)
            return
        own = self.ctx.own(tick, pts.select("account_id"), keys)
        pts = pts.join(on_router(own, self.ctx.accounts, routers), on="account_id", how="semi")
        if pts.height == 0:
            return
        own = own.join(pts.select("account_id"), on="account_id", how="semi")
        own = seat_keys(own, reseller_orgs(own, self.ctx.accounts), self.ctx.accounts)
        groups = self.groups(tick, keys, own.select("family", "key").unique())
        if groups is None:
            return
        in_group = own.join(groups, on=["family", "key"], how="semi").select("account_id").unique()
        self._lone.append(pts.join(in_group, on="account_id", how="anti"))

    def spare(self, hits: pl.DataFrame) -> pl.DataFrame:
        """``hits`` with every lone seat point still accused capped at low, an ``evidence:lone`` reason."""
        if not self._lone or hits.height == 0:
            return hits
        still = lone_points(hits, self.frame, self.s).select("_point")
        lone = pl.concat(self._lone).select("_point").unique().join(still, on="_point", how="semi")
        return cap_at(hits, lone, "lone", pl.lit(_DETAIL), Severity.LOW)


_DETAIL = (
    "lone: a router sub-account whose only extraction is what the router's customers do (steps asked, a "
    "thinking budget, a new model's launch), holding no system prompt or template of a group of new "
    "seats: one customer of the router's many, capped at low (a farm's seats share their own tool)"
)
