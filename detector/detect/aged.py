"""The router's aged seats, read as a group: a trust cap the group lifts (issue 17, round 20).

A blended logprob or coercion farm on **aged** seats of a router tenant sends the kind the router's
trust does not cover (``evidence.BEYOND_ROUTER_TRUST``: logprobs, coercion) on 14-40% of each seat's few
requests: under the extraction bar (50%, 20%), so each seat is an established verified customer and
``apply_trust`` caps it at low whatever the fusion gave (``account_gb-v2`` 0.99 on most). On one seat
that is the router's honest uncertainty apps' row too (``router_uncertainty``: logprobs with several
samples on 5-60% of their requests, aged seats). The difference is the group: the farm's seats were
opened in a few sign-up bursts, the router's customers open theirs all year (docs/detection.md, round
19: aged farm seats 122 of 228 share a sign-up half hour with another active seat of the router, the
uncertainty and judge apps 0 of 48).

So a point the trust cap lowered from medium or above is **released** (back to the severity the fusion
gave it) when (1) it is a reseller's sub-account whose 24 h traffic carries an uncovered kind (any of
it), (2) its sign-up half hour within its tenant (``lone.seat_keys``, the lone test's ``signup`` key) is
held by at least ``OTHER_SEAT`` aged sub-accounts (the lone test's group bar: the seat and another;
verified and ``trust_tenure_days`` old, the trust cap's own bars) whose traffic carries the same kind,
under its bar or at it (a seat at the bar is accused on its own and is the group's seat all the same),
and (3) the group's pooled traffic harvests it: the kind on ``harvest_excess_share`` of the group's
requests and on ``harvest_excess_requests`` of them (the cluster axis's bars for a harvest a blend
dilutes, ``evidence.harvest_in_excess``; the per-seat extraction bar is what a blend divides, so a
60-90% blend's pooled share is under it as each seat's is). An ``evidence:aged`` reason names the group
(its seats, the kind's requests of its requests, the half hour's index), never a text. The router's
customers who share a half hour send no logprobs or coercion, and its uncertainty apps share none:
neither is a group here. What it cannot see: a farm whose seats were opened hours apart (the matrix's
``spread`` sign-ups, eight bursts of 12 hours) shares few half hours, and a seat the fusion left below
medium has no severity to be released to.

Under ``context_lag`` (round 21) the groups are read a tick late: the split deployment's account stage
reads them from each tick's context (the ``aged_slots`` kind, built by the cluster stage with
``aged_slots``: per tenant sign-up slot and kind, the seats and pooled counts of the groups that
release, no account ids), the one engine under the lag from the key table a tick before (the same
groups); a point is released when its own slot (read at its tick) holds a group of a kind its own row
carries. The account stage asks only about its own point's slot, and what membership would add (was
the point counted a tick ago) its own row already says (it holds the slot and carries the kind now), so
the kind carries keys and counts, not holders. A version 2 or 3 context (a cluster stage from before
round 21) carries no ``aged_slots``: nothing is released at the ticks that read it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import polars as pl

from detector.contracts import SEVERITY_RANK, Severity
from detector.detect.evidence import (
    AXIS_PREFIX,
    apply_trust,
    axis_reasons,
    c_trusted_within,
    require_both_axes,
    router_covered,
)
from detector.detect.lone import OTHER_SEAT, seat_keys
from detector.detect.room import RoomContext
from detector.evidence_settings import EvidenceSettings
from detector.schema import UTC_US
from detector.settings import EngineSettings
from detector.window.asof import KeyTimeline
from detector.window.context import AGED_SLOT_SCHEMA, Contexts
from detector.window.link import reseller_orgs
from detector.window.state import WindowState

#: The kinds the router's trust does not cover that a blend dilutes on a seat (``BEYOND_ROUTER_TRUST``):
#: kind -> (the bucket counter, the account feature).
_KINDS = {
    "logprob harvest": ("logprob", "logprob_share_24h"),
    "reasoning trace coerced": ("coercion", "coercion_share_24h"),
}
#: The key families the release reads: a seat's sign-up half hour and its reseller (its tenant).
_SLOT_FAMILIES = ("signup", "reseller")
_RANK = pl.col("severity").replace_strict({k: r for k, r in SEVERITY_RANK.items()}, return_dtype=pl.Int64)
_MEDIUM = Severity.MEDIUM.rank


#: A step after the trust cap, given the hits before it, after it (row for row) and the frame.
Release = Callable[[pl.DataFrame, pl.DataFrame, pl.DataFrame], pl.DataFrame]


def weigh(
    hits: pl.DataFrame,
    frame: pl.DataFrame,
    target: str,
    key: str,
    s: EvidenceSettings,
    release: Release | None,
) -> pl.DataFrame:
    """The evidence model over live hits: the trust cap (then ``release``, if any, given the hits before
    it: round 20), high on a cluster only with both axes, and one reason per axis."""
    capped = apply_trust(hits, frame, key)
    if release is not None:
        capped = release(hits, capped, frame)
    return axis_reasons(require_both_axes(capped, frame, key), frame, target, key, s)


class AgedSeats:
    """The release (``__call__``, handed to ``weigh``) over the key table as of each point's tick,
    on a timeline of its own (walked in tick order)."""

    def __init__(self, state: WindowState, ctx: RoomContext, s: EvidenceSettings, long: timedelta) -> None:
        self.state, self.ctx, self.s, self.long = state, ctx, s, long

    @classmethod
    def of(
        cls,
        state: WindowState,
        timeline: KeyTimeline,
        since: pl.DataFrame,
        settings: EngineSettings,
        lag: timedelta,
        contexts: Contexts | None,
    ) -> AgedSeats:
        """The release at an engine pass: the key table as the room test reads it (no templates)."""
        w = settings.windows
        ctx = RoomContext(
            timeline, since, pl.DataFrame(), state.accounts, settings.link.min_overlap, lag, contexts
        )
        return cls(state, ctx, settings.evidence, w.long)

    def __call__(self, pre: pl.DataFrame, capped: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
        """``capped`` (``pre`` after ``apply_trust``, row for row) with the released points' hits at their
        severity in ``pre`` and an ``evidence:aged`` reason each."""
        if capped.height == 0:
            return capped
        points = _candidates(pre, capped, frame, self.s)
        if points.height == 0:
            return capped
        late = self.ctx.contexts is not None or self.ctx.lag
        released = self._released_late(points) if late else self._released(points)
        if released.height == 0:
            return capped
        lift = pl.col("_point").is_in(released["_point"].implode())
        raised = capped.with_columns(
            pl.when(lift).then(pre["severity"]).otherwise(pl.col("severity")).alias("severity")
        )
        reasons = released.select(
            "_point",
            pl.lit(f"{AXIS_PREFIX}aged").alias("rule_id"),
            _detail().alias("detail"),
            pl.lit(Severity.LOW.value).alias("severity"),
            pl.lit(0.0).alias("score"),
            pl.lit(None, pl.String).alias("campaign_type"),
            pl.lit("live").alias("mode"),
        )
        return pl.concat([raised, reasons.select(capped.columns).cast(capped.schema)], how="vertical_relaxed")

    def _released(self, points: pl.DataFrame) -> pl.DataFrame:
        """(_point, kind, seats, hits, requests, slot) of the candidate ``points`` their group releases,
        in one pass: the walk gathers each tick's sign-up slots (the candidates' own and their holders in
        the key table then), then the groups of every (tick, slot, kind) are counted at once and the
        candidates joined against them."""
        ctx, accounts = self.ctx, self.ctx.accounts
        timeline = ctx.timeline.fresh()
        owns, helds = [], []
        for (tick,), pts in points.sort("tick_end").group_by("tick_end", maintain_order=True):
            assert isinstance(tick, datetime)
            then, keys = ctx.population(timeline, tick)
            slots = keys.filter(pl.col("family").is_in(_SLOT_FAMILIES))  # what ``seat_keys`` reads of it
            own = _own_slots(ctx, tick, pts, slots)
            sub = ctx.subaccounts(then, keys)
            held = seat_keys(slots, sub, accounts).filter(pl.col("family") == "signup")
            held = held.join(own.select("key").unique(), on="key", how="semi")
            at = pl.lit(tick, UTC_US).alias("tick_end"), pl.lit(then, UTC_US).alias("then")
            owns.append(own.select(*at, "account_id", "key"))
            helds.append(held.select(*at, "account_id", "key"))
        held = pl.concat(helds)
        if held.height == 0:
            return _none()
        groups = slot_groups(self.state, held, accounts, self.long, self.s)
        own = pl.concat(owns).select("tick_end", "account_id", "key")
        point = ["tick_end", "account_id"]
        mine = _largest(groups.explode("account_id").join(own, on=[*point, "key"]), point)
        return (
            points.join(mine, on=point)
            .sort("tick_end", maintain_order=True)
            .select("_point", "kind", "seats", "hits", "requests", _half_hour("key").alias("slot"))
        )

    def _released_late(self, points: pl.DataFrame) -> pl.DataFrame:
        """``_released`` under the lag (round 21): each point's own sign-up slot at its tick against the
        groups that release as of ``lag`` before it (``aged_slots``: from the tick's context, or from the
        key table then on the lag's own walk), for a kind the point's own row carries. A version 2 or 3
        context (no ``aged_slots``) releases nothing at its tick."""
        ctx, accounts, contexts = self.ctx, self.ctx.accounts, self.ctx.contexts
        timeline = ctx.timeline.fresh()
        owns, found = [], []
        for (tick,), pts in points.sort("tick_end").group_by("tick_end", maintain_order=True):
            assert isinstance(tick, datetime)
            groups: pl.DataFrame | None
            if contexts is None:
                then, keys = ctx.population(timeline, tick)
                groups = aged_slots(
                    self.state, keys, ctx.subaccounts(then, keys), accounts, then, self.long, self.s
                )
            else:
                keys, groups = pl.DataFrame(), contexts[tick].aged_slots
            if groups is None or groups.height == 0:
                continue
            own = _own_slots(ctx, tick, pts, keys)  # at its tick (``KeyTimeline.at_points``)
            at = pl.lit(tick, UTC_US).alias("tick_end")
            owns.append(own.select(at, "account_id", pl.col("key").alias("slot")))
            found.append(groups.with_columns(at))
        if not found:
            return _none()
        carried = pl.concat(
            points.filter(pl.col(f).fill_null(0.0) > 0).select(
                "_point", "account_id", "tick_end", pl.lit(k).alias("kind")
            )
            for k, (_, f) in _KINDS.items()
        )
        mine = carried.join(pl.concat(owns), on=["tick_end", "account_id"])
        mine = _largest(mine.join(pl.concat(found), on=["tick_end", "slot", "kind"]), ["_point"])
        mine = mine.sort("tick_end", "_point")
        return mine.select("_point", "kind", "seats", "hits", "requests", _half_hour("slot").alias("slot"))


def _own_slots(ctx: RoomContext, tick: datetime, pts: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    """The sign-up slot keys the points' own accounts hold at ``tick``."""
    own = ctx.own(tick, pts.select("account_id"), keys)
    return seat_keys(own, reseller_orgs(own, ctx.accounts), ctx.accounts).filter(pl.col("family") == "signup")


def _largest(mine: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """One row per ``by``: a seat in two groups (two kinds) is named by the larger, then the kind's name."""
    return mine.sort("seats", "kind", descending=[True, False]).unique(by, keep="first")


def aged_slots(
    state: WindowState,
    keys: pl.DataFrame,
    sub: pl.DataFrame,
    accounts: pl.DataFrame,
    then: datetime,
    long: timedelta,
    s: EvidenceSettings,
) -> pl.DataFrame:
    """The groups that release as of ``then`` (``keys``: the key table then; ``sub``: its tenants'
    sub-accounts), every router tenant's sign-up slot (``AGED_SLOT_SCHEMA``, sorted): the contexts'
    ``aged_slots`` kind (``detect/context.py``, round 21), and what the lag's own walk reads."""
    slots = keys.filter(pl.col("family").is_in(_SLOT_FAMILIES))
    held = seat_keys(slots, sub, accounts).filter(pl.col("family") == "signup")
    at = pl.lit(then, UTC_US).alias("tick_end"), pl.lit(then, UTC_US).alias("then")
    groups = slot_groups(state, held.select(*at, "account_id", "key"), accounts, long, s)
    out = groups.select(pl.col("key").alias("slot"), "kind", "seats", "hits", "requests")
    return out.sort("slot", "kind").cast(AGED_SLOT_SCHEMA)


def _candidates(
    pre: pl.DataFrame, capped: pl.DataFrame, frame: pl.DataFrame, s: EvidenceSettings
) -> pl.DataFrame:
    """(_point, account_id, tick_end, the kinds' features) of the points the trust cap lowered from
    medium or above: a seat the router's trust covers (``evidence.router_covered``) trusted within its
    tier whose traffic carries an uncovered kind."""
    before = pre.filter(pl.col("mode") != "shadow").group_by("_point").agg(_RANK.max().alias("_pre"))
    after = capped.group_by("_point").agg(_RANK.max().alias("_after"))
    lowered = before.join(after, on="_point").filter(
        (pl.col("_pre") >= _MEDIUM) & (pl.col("_after") < _MEDIUM)
    )
    kind = pl.any_horizontal([pl.col(f).fill_null(0.0) > 0 for _, f in _KINDS.values()])
    router = router_covered(s, pl.col("account_age_days"))
    return (
        frame.join(lowered.select("_point"), on="_point", how="semi")
        .filter(router & c_trusted_within() & kind)
        .select("_point", "account_id", "tick_end", *[f for _, f in _KINDS.values()])
    )


def slot_groups(
    state: WindowState, held: pl.DataFrame, accounts: pl.DataFrame, long: timedelta, s: EvidenceSettings
) -> pl.DataFrame:
    """(tick_end, key, kind, account_id: list, seats, hits, requests): the groups that release, of the
    holders ``held`` (tick_end, then, account_id, key: a sign-up slot's holders in the key table as of
    ``then`` for the points at ``tick_end``). A holder counts when it is a seat the router's trust covers
    at ``then`` (``evidence.router_covered``, as ``_candidates`` reads it) and its window's traffic
    (``[then - long, then)``, as the features read it) carries the kind, under its bar or not; a group
    releases with ``OTHER_SEAT`` seats or more whose pooled traffic harvests the kind
    (``harvest_excess_share`` of its requests, ``harvest_excess_requests`` of them)."""
    counters = [c for c, _ in _KINDS.values()]
    age = (pl.col("then") - pl.col("created_at")).dt.total_seconds() / 86400.0
    covered = (  # only slots with a group's worth of covered seats have their traffic read
        held.join(accounts.select("account_id", "created_at", "verified", "tier"), on="account_id")
        .filter(router_covered(s, age))
        .filter(pl.len().over("tick_end", "key") >= OTHER_SEAT)
        .select(held.columns)
    )
    first, last = covered["then"].min(), covered["then"].max()
    if not (isinstance(first, datetime) and isinstance(last, datetime)):
        return _no_groups()
    buckets = state.bucket_rows(covered["account_id"].unique(), first - long, last)
    windows = covered.select("tick_end", "then", "account_id").unique()
    traffic = (
        buckets.join(windows, on="account_id")
        .filter((pl.col("bucket") >= pl.col("then") - pl.lit(long)) & (pl.col("bucket") < pl.col("then")))
        .group_by("tick_end", "then", "account_id")
        .agg(pl.col("requests").sum().cast(pl.Float64), *[pl.col(c).sum().cast(pl.Float64) for c in counters])
    )
    per_kind = [
        traffic.filter(pl.col(c) > 0).select(
            "tick_end", "account_id", pl.lit(kind).alias("kind"), pl.col(c).alias("hits"), "requests"
        )
        for kind, (c, _) in _KINDS.items()
    ]
    groups = (
        pl.concat(per_kind)
        .join(covered.select("tick_end", "account_id", "key"), on=["tick_end", "account_id"])
        .group_by("tick_end", "key", "kind")
        .agg(pl.col("account_id"), pl.len().alias("seats"), pl.col("hits").sum(), pl.col("requests").sum())
    )
    pooled = pl.col("hits") / pl.col("requests")
    return groups.filter(
        (pl.col("seats") >= OTHER_SEAT)
        & (pooled >= s.harvest_excess_share)
        & (pl.col("hits") >= s.harvest_excess_requests)
    )


def _half_hour(slot: str) -> pl.Expr:
    """The half hour's index of a ``signup`` key (``lone.seat_keys``: JSON of reseller, org and slot)."""
    parts = pl.Struct({"reseller": pl.String, "org_id": pl.String, "key": pl.String})
    return pl.col(slot).str.json_decode(parts).struct.field("key")


def _no_groups() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "tick_end": UTC_US,
            "key": pl.String,
            "kind": pl.String,
            "account_id": pl.List(pl.String),
            "seats": pl.UInt32,
            "hits": pl.Float64,
            "requests": pl.Float64,
        }
    )


def _none() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "_point": pl.String,
            "kind": pl.String,
            "seats": pl.UInt32,
            "hits": pl.Float64,
            "requests": pl.Float64,
            "slot": pl.String,
        }
    )


def _detail() -> pl.Expr:
    """The reason: the group's size, its pooled kind, the half hour (counts and a time, no text)."""
    return pl.concat_str(
        pl.lit("aged: a router sub-account the router's trust capped at low, one of "),
        pl.col("seats").cast(pl.String),
        pl.lit(" aged seats of its tenant opened in one sign-up half hour (the "),
        pl.col("slot"),
        pl.lit("th since 1970) whose pooled traffic carries "),
        pl.col("kind"),
        pl.lit(" on "),
        pl.col("hits").cast(pl.Int64).cast(pl.String),
        pl.lit(" of "),
        pl.col("requests").cast(pl.Int64).cast(pl.String),
        pl.lit(
            " requests: released from the cap (pooled, it harvests what the router's trust does not cover)"
        ),
    )
