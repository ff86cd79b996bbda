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

Not read under ``context_lag``: the split deployment reads the population through the contexts
(``detect/context.py``), which carry no such kind (a context kind for it is the next step).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import polars as pl

from detector.contracts import SEVERITY_RANK, Severity
from detector.detect.evidence import (
    AXIS_PREFIX,
    RESELLER_TIER,
    apply_trust,
    axis_reasons,
    c_trusted_within,
    require_both_axes,
)
from detector.detect.lone import OTHER_SEAT, seat_keys
from detector.detect.room import RoomContext
from detector.evidence_settings import EvidenceSettings
from detector.settings import EngineSettings
from detector.window.asof import KeyTimeline
from detector.window.context import Contexts
from detector.window.link import reseller_orgs
from detector.window.state import WindowState

#: The kinds the router's trust does not cover that a blend dilutes on a seat (``BEYOND_ROUTER_TRUST``):
#: kind -> (the bucket counter, the account feature).
_KINDS = {
    "logprob harvest": ("logprob", "logprob_share_24h"),
    "reasoning trace coerced": ("coercion", "coercion_share_24h"),
}
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
        if self.ctx.contexts is not None or self.ctx.lag or capped.height == 0:
            return capped
        points = _candidates(pre, capped, frame)
        if points.height == 0:
            return capped
        timeline = self.ctx.timeline.fresh()
        out = []
        for (tick,), pts in points.sort("tick_end").group_by("tick_end", maintain_order=True):
            assert isinstance(tick, datetime)
            out.append(self._released(tick, pts, timeline))
        released = pl.concat(out)
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

    def _released(self, tick: datetime, pts: pl.DataFrame, timeline: KeyTimeline) -> pl.DataFrame:
        """(_point, kind, seats, hits, requests, slot) of the points at ``tick`` the group releases."""
        ctx, accounts = self.ctx, self.ctx.accounts
        then, keys = ctx.population(timeline, tick)
        own = ctx.own(tick, pts.select("account_id"), keys)
        own = seat_keys(own, reseller_orgs(own, accounts), accounts).filter(pl.col("family") == "signup")
        held = seat_keys(keys, ctx.subaccounts(then, keys), accounts).filter(pl.col("family") == "signup")
        held = held.join(own.select("key").unique(), on="key", how="semi").select("account_id", "key")
        if held.height == 0:
            return _none()
        groups = _aged_kinds(self.state, held, accounts, then, self.long, self.s)
        groups = groups.group_by("key", "kind").agg(
            pl.col("account_id"),
            pl.len().alias("seats"),
            pl.col("hits").sum(),
            pl.col("requests").sum(),
        )
        pooled = pl.col("hits") / pl.col("requests")
        groups = groups.filter(
            (pl.col("seats") >= OTHER_SEAT)
            & (pooled >= self.s.harvest_excess_share)
            & (pl.col("hits") >= self.s.harvest_excess_requests)
        )
        mine = groups.explode("account_id").join(own.select("account_id", "key"), on=["account_id", "key"])
        # a seat in two groups (two kinds) is named by the larger, then the kind's name
        mine = mine.sort("seats", "kind", descending=[True, False]).unique("account_id", keep="first")
        parts = pl.Struct({"reseller": pl.String, "org_id": pl.String, "key": pl.String})
        slot = pl.col("key").str.json_decode(parts).struct.field("key")
        return pts.join(mine, on="account_id").select(
            "_point", "kind", "seats", "hits", "requests", slot.alias("slot")
        )


def _candidates(pre: pl.DataFrame, capped: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """(_point, account_id, tick_end) of the points the trust cap lowered from medium or above: a router
    sub-account (tier ``reseller``) trusted within its tier whose traffic carries an uncovered kind."""
    before = pre.filter(pl.col("mode") != "shadow").group_by("_point").agg(_RANK.max().alias("_pre"))
    after = capped.group_by("_point").agg(_RANK.max().alias("_after"))
    lowered = before.join(after, on="_point").filter(
        (pl.col("_pre") >= _MEDIUM) & (pl.col("_after") < _MEDIUM)
    )
    kind = pl.any_horizontal([pl.col(f).fill_null(0.0) > 0 for _, f in _KINDS.values()])
    router = (pl.col("tier") == RESELLER_TIER).fill_null(False)
    return (
        frame.join(lowered.select("_point"), on="_point", how="semi")
        .filter(router & c_trusted_within() & kind)
        .select("_point", "account_id", "tick_end")
    )


def _aged_kinds(
    state: WindowState,
    held: pl.DataFrame,
    accounts: pl.DataFrame,
    then: datetime,
    long: timedelta,
    s: EvidenceSettings,
) -> pl.DataFrame:
    """(account_id, key, kind, hits, requests): the holders of ``held`` (account_id, key) that are aged,
    verified sub-accounts at ``then`` (the trust cap's own tenure and verification) with each uncovered
    kind their window's traffic carries (as the features read it), under its bar or not."""
    counters = [c for c, _ in _KINDS.values()]
    buckets = state.bucket_rows(held["account_id"].unique(), then - long, then)
    traffic = buckets.group_by("account_id").agg(
        pl.col("requests").sum().cast(pl.Float64), *[pl.col(c).sum().cast(pl.Float64) for c in counters]
    )
    rows = traffic.join(accounts.select("account_id", "created_at", "verified", "tier"), on="account_id")
    age = (pl.lit(then) - pl.col("created_at")).dt.total_seconds() / 86400.0
    aged = (
        pl.col("verified").fill_null(False)
        & (age.fill_null(0.0) >= s.trust_tenure_days)
        & (pl.col("tier") == RESELLER_TIER).fill_null(False)
    )
    rows = rows.filter(aged)
    per_kind = [
        rows.filter(pl.col(c) > 0).select(
            "account_id", pl.lit(kind).alias("kind"), pl.col(c).alias("hits"), "requests"
        )
        for kind, (c, _) in _KINDS.items()
    ]
    return pl.concat(per_kind).join(held, on="account_id")


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
