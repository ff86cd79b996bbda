"""The room on the account axis: a participant's tutorial exercises are the room's, not its own harvest.

A hackathon participant is a fresh account sending a handful of a tutorial's exercises (a numbered-step
template, a thinking budget) behind the venue's NAT, among many fresh accounts holding the same
template. Alone, the account axis sees a fresh account eliciting reasoning with extraction-sized
outputs, the same as a solo harvesting account, and accused participants one by one (round 6, issue
17). What separates them is who else holds the template: a tutorial is handed to a room.

A template is **a room's** when at least ``room_min_accounts`` accounts hold it and its holders pass
the cluster's venue test (``evidence.add_axes``, ``colocated``): most of them (those with a network
key) behind one residential, campus or office prefix, no second shared prefix, and no private client
build (an operator's own software is never a room's). An account point is **explained by the room**
when it holds a room's template and sits behind that room's prefix, and what is left of its traffic
once the room's template requests are taken out carries no extraction signal (``own_extraction``: the
template requests are assumed to carry every signal, the generous bound). Such a point is capped at
low whatever fired, rule or model, as trust caps an established customer (``spare_rooms``).

A solo harvesting account holds its template alone; a farm's template is held across many addresses
or with its own client build; a participant who also harvests outside the tutorial keeps that evidence.
Caveat (the same as the cluster's venue test): five or more accounts behind one residential prefix on
popular SDKs, harvesting only through one shared template, look like a room.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import polars as pl

from detector.contracts import SEVERITY_RANK, Severity
from detector.detect.evidence import AXIS_PREFIX, colocated, extraction_checks
from detector.settings import EvidenceSettings
from detector.window.asof import KeyTimeline
from detector.window.features import client_inside, venues
from detector.window.link import tenant_subaccounts

#: The share features the extraction checks read (``evidence.extraction_checks``).
EXTRACTION_SHARES = (
    "cot_share_24h",
    "coercion_share_24h",
    "rubric_share_24h",
    "logprob_share_24h",
    "thinking_share_24h",
    "max_tokens_high_share_24h",
    "tools_heavy_share_24h",
    "new_model_share_24h",
)


@dataclass(frozen=True)
class RoomContext:
    """What the room test reads at an account point: the key table as of its tick (a timeline of its
    own: the cluster step walks the engine's), the template counts, the accounts, and each tick's
    link window (``since``: tick_end, since)."""

    timeline: KeyTimeline
    since: pl.DataFrame
    templates: pl.DataFrame
    accounts: pl.DataFrame
    min_overlap: float


def room_templates(
    keys: pl.DataFrame,
    accounts: pl.DataFrame,
    s: EvidenceSettings,
    min_overlap: float,
    wanted: pl.Series | None = None,
) -> pl.DataFrame:
    """(template key, venue prefix) of every template a room explains, from the key table at one tick
    (``wanted``: only these template keys, e.g. those the accused points hold)."""
    tk = keys.filter(pl.col("family") == "template").select("account_id", pl.col("key").alias("cluster_id"))
    if wanted is not None:
        tk = tk.filter(pl.col("cluster_id").is_in(wanted.implode()))
    members = _room_sized(tk, s)
    if members.height == 0:
        return pl.DataFrame(schema={"template": pl.String, "venue": pl.String})
    return _colocated(keys, members, tenant_subaccounts(keys, accounts, min_overlap), s)


def _room_sized(holders: pl.DataFrame, s: EvidenceSettings) -> pl.DataFrame:
    """(account_id, cluster_id) of the holders of templates held by at least ``room_min_accounts``."""
    big = holders.group_by("cluster_id").agg(pl.col("account_id").n_unique().alias("_n"))
    return holders.join(big.filter(pl.col("_n") >= s.room_min_accounts).select("cluster_id"), on="cluster_id")


def _colocated(
    keys: pl.DataFrame, members: pl.DataFrame, sub: pl.DataFrame, s: EvidenceSettings
) -> pl.DataFrame:
    """(template, venue) of the templates (``members``' clusters) whose holders pass the venue test."""
    return (
        venues(keys, members, sub)
        .join(client_inside(keys, members), on="cluster_id", how="left")
        .filter(colocated(s))
        .select(pl.col("cluster_id").alias("template"), pl.col("venue_key").alias("venue"))
    )


def _tagged(frame: pl.DataFrame, *cols: str) -> pl.DataFrame:
    """``cols`` prefixed with the row's tick (epoch µs and ``|``): one tick's ids never meet another's."""
    tick = pl.col("tick_end").dt.epoch("us").cast(pl.String)
    return frame.with_columns(pl.concat_str([tick, pl.col(c)], separator="|").alias(c) for c in cols)


def _untagged(col: str) -> pl.Expr:
    return pl.col(col).str.splitn("|", 2).struct.field("field_1").alias(col)


def _may_pass(
    plain: pl.DataFrame,
    at: Callable[[pl.DataFrame, str, str], pl.DataFrame],
    ticks: pl.DataFrame,
    s: EvidenceSettings,
) -> pl.DataFrame:
    """The clusters (tagged templates) of ``plain`` (their members less sub-accounts, tagged) whose second
    most held prefix can still be within ``colocated_second_share``: the rest fail ``colocated``.

    ``venues`` gives the second share as the second largest count of members holding one prefix over the
    members with a network key, at most all of them (n). Counted over a sample of the members (the first
    ``2 x share x n + 2`` by id), each prefix's holders are at most its holders among all; so when the
    sample's second largest count is already above ``share x n``, the cluster fails. A proxy pool's
    accounts each hold most of the pool's prefixes and fail here on a small sample; a room is checked
    in full (``venues``)."""
    n = plain.group_by("cluster_id").agg(pl.len().alias("_n"))
    sample = (
        plain.join(n, on="cluster_id")
        .filter(
            pl.col("account_id").rank("ordinal").over("cluster_id")
            <= (2 * s.colocated_second_share * pl.col("_n")).floor() + 2
        )
        .select("tick_end", "account_id", "cluster_id")
    )
    accounts = sample.select("tick_end", _untagged("account_id")).unique().join(ticks, on="tick_end")
    ip = _tagged(
        at(accounts, "ip", "account_id").filter(pl.col("key").str.contains("/", literal=True)), "account_id"
    )
    second = (
        ip.join(sample, on=["tick_end", "account_id"])
        .group_by("cluster_id", "key")
        .agg(pl.col("account_id").n_unique().alias("_h"))
        .group_by("cluster_id")
        .agg(pl.col("_h").sort(descending=True).get(1, null_on_oob=True).fill_null(0).alias("_h2"))
    )
    fails = second.join(n, on="cluster_id").filter(
        pl.col("_h2") > s.colocated_second_share * (1 + 1e-9) * pl.col("_n")
    )
    return n.join(fails, on="cluster_id", how="anti").select("cluster_id")


def held_rooms(points: pl.DataFrame, ctx: RoomContext, s: EvidenceSettings) -> pl.DataFrame:
    """(account_id, template_fp, tick_end): each point's templates that a room explains at its tick, with
    the point behind that room's venue; every tick of the pass at once.

    The same as ``room_templates`` on ``ctx.timeline.at(tick, since)`` tick by tick with the points'
    templates as ``wanted``, then the points behind each room's venue (tests/test_room_ticks.py compares
    the two), because every step reads, from the table as of each tick (``KeyTimeline.at_ticks``), the
    rows a whole-table call's joins keep, and each tick's ids are tagged with the tick so that one
    call's group-bys never mix ticks:
    - the points' template and network keys (by account); the holders of those templates (by key),
      counted per (tick, template): the room-sized ones are the members;
    - a room explains a point only if its venue (its holders' most held prefix) is one of the point's
      prefixes, so only (tick, template) with a point holding both are **candidates**;
    - sub-accounts among their members from the reseller rows of every account holding a member's
      reseller key (``tenant_subaccounts`` decides a member from the holders of its reseller key and
      their orgs); accounts hold one reseller id each (with two, the first row of an unspecified order
      decided, before as well);
    - a candidate passes ``colocated`` only if a candidate prefix ``v`` is its venue and holds
      ``colocated_member_share`` of the members with a network key: the holders of the candidate
      prefixes and the members with any network key are counted first (no sub-accounts, as ``venues``),
      and only candidates that pass (with a margin for rounding) go to ``venues`` and ``client_inside``,
      with their members' network rows and every holder of their client builds at the tick.
    """
    ticks = points.select("tick_end").unique().join(ctx.since, on="tick_end", how="left")
    pts = points.select("account_id", "tick_end").unique().join(ticks, on="tick_end")
    at = ctx.timeline.at_ticks
    own = at(pts, "template", "account_id").join(pts, on=["account_id", "tick_end"], how="semi")
    empty = pl.DataFrame(
        schema={"account_id": pl.String, "template_fp": pl.UInt64, "tick_end": points.schema["tick_end"]}
    )
    wanted = own.select("tick_end", "key").unique().join(ticks, on="tick_end")
    holders = at(wanted, "template", "key").join(wanted, on=["tick_end", "key"], how="semi")
    # a template at one tick is one cluster (its id tagged with the tick)
    named = _tagged(
        holders.select("tick_end", "key", pl.col("key").alias("cluster_id")).unique(), "cluster_id"
    )
    members = _room_sized(
        _tagged(holders.select("tick_end", "account_id", pl.col("key").alias("cluster_id")), "cluster_id"), s
    )
    mine_ip = at(pts, "ip", "account_id").join(pts, on=["account_id", "tick_end"], how="semi")
    prefixes = mine_ip.filter(pl.col("key").str.contains("/", literal=True))
    cand = (
        own.select("tick_end", "account_id", "key")
        .join(
            prefixes.select("tick_end", "account_id", pl.col("key").alias("venue")),
            on=["tick_end", "account_id"],
        )
        .join(named, on=["tick_end", "key"])
        .join(members.select("cluster_id").unique(), on="cluster_id", how="semi")
        .select("tick_end", "cluster_id", "venue")
        .unique()
    )
    if cand.height == 0:
        return empty
    members = members.join(cand.select("cluster_id").unique(), on="cluster_id", how="semi")
    m = members.select("tick_end", "account_id").unique().join(ticks, on="tick_end")
    sellers = at(m, "reseller", "account_id").select("tick_end", "key").unique().join(ticks, on="tick_end")
    in_tenant = at(sellers, "reseller", "key").select("tick_end", "account_id").unique()
    resold = at(in_tenant.join(ticks, on="tick_end"), "reseller", "account_id")
    accounts = _tagged(in_tenant.join(ctx.accounts, on="account_id", how="inner"), "account_id")
    sub = tenant_subaccounts(_tagged(resold, "account_id", "key"), accounts, ctx.min_overlap)
    tagged = _tagged(members, "account_id")
    passing = _may_pass(tagged.join(sub, on="account_id", how="anti"), at, ticks, s)
    if passing.height == 0:
        return empty
    tagged = tagged.join(passing, on="cluster_id", how="semi")
    m = tagged.select("tick_end", _untagged("account_id")).unique().join(ticks, on="tick_end")
    clients = at(m, "client", "account_id").select("tick_end", "key").unique().join(ticks, on="tick_end")
    keys = pl.concat(
        [
            _tagged(at(m, "ip", "account_id"), "account_id"),
            _tagged(at(clients, "client", "key"), "account_id", "key"),
        ],
        how="vertical_relaxed",
    )
    # back to (tick, template, venue)
    rooms = (
        _colocated(keys, tagged, sub, s)
        .join(named, left_on="template", right_on="cluster_id")
        .select("tick_end", pl.col("key").alias("template"), "venue")
    )
    return (
        own.select("tick_end", "account_id", pl.col("key").alias("template"))
        .join(rooms, on=["tick_end", "template"])
        .join(
            mine_ip.select("tick_end", "account_id", pl.col("key").alias("venue")),
            on=["tick_end", "account_id", "venue"],
        )
        .select("account_id", pl.col("template").cast(pl.UInt64).alias("template_fp"), "tick_end")
        .unique()
    )


def room_requests(
    points: pl.DataFrame, ctx: RoomContext, s: EvidenceSettings, long: timedelta
) -> pl.DataFrame:
    """Per point (account_id, tick_end): requests in the long window through a template its room explains
    (``room_requests_24h``); only points that hold one. Keys as of each point's tick (``held_rooms``)."""
    held = held_rooms(points, ctx, s)
    if held.height == 0:
        return pl.DataFrame(
            schema={
                "account_id": pl.String,
                "tick_end": points.schema["tick_end"],
                "room_requests_24h": pl.Int64,
            }
        )
    end = pl.col("tick_end")
    t = ctx.templates.join(held, on=["account_id", "template_fp"], how="inner")
    return (
        t.filter((pl.col("bucket") >= end - long) & (pl.col("bucket") < end))
        .group_by("account_id", "tick_end")
        .agg(pl.col("requests").sum().cast(pl.Int64).alias("room_requests_24h"))
    )


def own_extraction(frame: pl.DataFrame, s: EvidenceSettings) -> pl.Series:
    """Extraction signals on what is left of each point's traffic once its room's template requests are
    taken out: each share's count less those requests, over the requests left."""
    req = pl.col("requests_24h").fill_null(0).cast(pl.Float64)
    room = pl.col("room_requests_24h").fill_null(0).cast(pl.Float64)
    left = (req - room).clip(lower_bound=1.0)
    rest = frame.with_columns(
        ((pl.col(c).fill_null(0.0) * req - room).clip(lower_bound=0.0) / left).alias(c)
        for c in EXTRACTION_SHARES
    )
    checks = extraction_checks(s).values()
    return rest.select(pl.sum_horizontal([e.fill_null(False).cast(pl.Int64) for e in checks]))[:, 0]


def spare_rooms(
    hits: pl.DataFrame, frame: pl.DataFrame, ctx: RoomContext, s: EvidenceSettings, long: timedelta
) -> pl.DataFrame:
    """Account hits (key ``_point``) capped at low where the room explains the point's extraction
    evidence, with an ``evidence:room`` reason saying so."""
    if hits.height == 0:
        return hits
    medium = [v for v, rank in SEVERITY_RANK.items() if rank >= Severity.MEDIUM.rank]
    accused = hits.filter(pl.col("severity").is_in(medium)).select("_point").unique()
    points = frame.join(accused, on="_point", how="semi").select("_point", "account_id", "tick_end")
    if points.height == 0:
        return hits
    rooms = room_requests(points, ctx, s, long)
    if rooms.height == 0:
        return hits
    f = frame.join(points.select("_point"), on="_point", how="semi").join(
        rooms, on=["account_id", "tick_end"], how="inner"
    )
    spared = f.with_columns(own_extraction(f, s).alias("_own")).filter(
        (pl.col("room_requests_24h") > 0) & (pl.col("_own") == 0)
    )
    if spared.height == 0:
        return hits
    capped = hits.with_columns(
        pl.when(pl.col("_point").is_in(spared["_point"].implode()))
        .then(pl.lit(Severity.LOW.value))
        .otherwise(pl.col("severity"))
        .alias("severity")
    )
    reasons = spared.select(
        "_point",
        pl.lit(f"{AXIS_PREFIX}room").alias("rule_id"),
        pl.concat_str(
            pl.lit("room: "),
            pl.col("room_requests_24h").cast(pl.String),
            pl.lit(" of "),
            pl.col("requests_24h").cast(pl.String),
            pl.lit(
                " requests through a template a room holds (its holders behind one venue network, "
                "popular clients); none of the rest is extraction: capped at low"
            ),
        ).alias("detail"),
        pl.lit(Severity.LOW.value).alias("severity"),
        pl.lit(0.0).alias("score"),
        pl.lit(None, pl.String).alias("campaign_type"),
        pl.lit("live").alias("mode"),
    )
    return pl.concat([capped, reasons.select(hits.columns).cast(hits.schema)], how="vertical_relaxed")
