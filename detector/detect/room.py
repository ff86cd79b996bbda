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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

import polars as pl

from detector.contracts import SEVERITY_RANK, Severity
from detector.detect.coordination import colocated
from detector.detect.evidence import AXIS_PREFIX, extraction_checks
from detector.detect.sheets import SHEET_EXPLAINS, sheet_explains
from detector.evidence_settings import EvidenceSettings
from detector.schema import UTC_US
from detector.window.asof import KeyTimeline
from detector.window.context import Contexts
from detector.window.features import client_inside, venues
from detector.window.link import tenant_subaccounts
from detector.window.tables import KEY_SCHEMA

#: Called with each tick walked and the key table as it stood then
Visit = Callable[[datetime, pl.DataFrame], None]

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
    #: how long before a point's tick the population is read (``EngineSettings.context_lag``: one tick;
    #: 0: at the tick). The point's own keys are read at its tick either way (``own``).
    lag: timedelta = timedelta(0)
    #: under the lag, the population context each point tick reads (``detect/context.py``): the room's and
    #: the team's groups are read from it, not from the key table (None: from the key table)
    contexts: Contexts | None = None
    #: the tenants' sub-accounts at the tick last asked for (``subaccounts``)
    _subs: dict[datetime, pl.DataFrame] = field(default_factory=dict, repr=False, compare=False)

    def subaccounts(self, tick: datetime, keys: pl.DataFrame) -> pl.DataFrame:
        """``tenant_subaccounts`` of ``keys``, the key table as of ``tick``: once per tick for the room and
        seat tests both (issue 13), since the table at a tick is the same whoever reads it."""
        if tick not in self._subs:
            self._subs.clear()
            reseller = keys.filter(pl.col("family") == "reseller")
            self._subs[tick] = tenant_subaccounts(reseller, self.accounts, self.min_overlap)
        return self._subs[tick]

    def population(self, timeline: KeyTimeline, tick: datetime) -> tuple[datetime, pl.DataFrame]:
        """The tick the population is read as of for points at ``tick`` (``lag`` before it) and the key
        table then, from ``timeline`` (walked in tick order)."""
        then, since = tick - self.lag, self.since_at(tick)
        return then, timeline.at(then, None if since is None else since - self.lag)

    def own(self, tick: datetime, accounts: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
        """The keys of ``accounts`` (account_id) as they stood at ``tick``: their rows of ``keys`` (the
        population's table) without a lag, else read at ``tick`` (``KeyTimeline.at_points``)."""
        if not self.lag:
            return keys.join(accounts, on="account_id", how="semi")
        at = {"tick_end": tick, "since": self.since_at(tick)}
        pts = accounts.select("account_id").with_columns(pl.lit(v, UTC_US).alias(k) for k, v in at.items())
        return self.timeline.at_points(pts).drop("tick_end")

    def since_at(self, tick: datetime) -> datetime | None:
        """The link window's start at ``tick`` (None: no limit)."""
        since = self.since.filter(pl.col("tick_end") == tick)["since"]
        return since[0] if since.len() else None


def room_templates(
    keys: pl.DataFrame,
    accounts: pl.DataFrame,
    s: EvidenceSettings,
    min_overlap: float,
    wanted: pl.Series | None = None,
    subaccounts: Callable[[], pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """(template key, venue prefix) of every template a room explains, from the key table at one tick
    (``wanted``: only these template keys, e.g. those the accused points hold; ``subaccounts``: gives
    the table's ``tenant_subaccounts`` when it is needed, e.g. ``RoomContext.subaccounts``).

    Each step reads only the rows its joins keep: the table's template, network and reseller rows, and
    of its client rows those of the builds the members hold (``client_inside`` counts a build's holders
    anywhere, and only the members' builds). The templates ``may_pass`` rules out skip ``venues``, and
    those that fail its network part (``network_part``) skip ``client_inside``."""
    fam = pl.col("family")
    tk = keys.filter(fam == "template").select("account_id", pl.col("key").alias("cluster_id"))
    if wanted is not None:
        tk = tk.filter(pl.col("cluster_id").is_in(wanted.implode()))
    big = tk.group_by("cluster_id").agg(pl.col("account_id").n_unique().alias("_n"))
    members = tk.join(big.filter(pl.col("_n") >= s.room_min_accounts).select("cluster_id"), on="cluster_id")
    empty = pl.DataFrame(schema={"template": pl.String, "venue": pl.String})
    if members.height == 0:
        return empty
    if subaccounts is None:
        sub = tenant_subaccounts(keys.filter(fam == "reseller"), accounts, min_overlap)
    else:
        sub = subaccounts()
    ip = keys.filter(fam == "ip")
    members = members.join(may_pass(ip, members, sub, s), on="cluster_id", how="semi")
    if members.height == 0:
        return empty
    # client builds only for the templates that pass the network part (issue 13, round 13)
    near = network_part(venues(ip, members, sub), s)
    members = members.join(near, on="cluster_id", how="semi")
    if members.height == 0:
        return empty
    clients = keys.filter(fam == "client")
    builds = clients.join(members.select("account_id").unique(), on="account_id", how="semi").select("key")
    clients = clients.join(builds.unique(), on="key", how="semi")
    return (
        near.join(client_inside(clients, members), on="cluster_id", how="left")
        .filter(colocated(s))
        .select(pl.col("cluster_id").alias("template"), pl.col("venue_key").alias("venue"))
    )


def network_part(v: pl.DataFrame, s: EvidenceSettings) -> pl.DataFrame:
    """The rows of ``venues`` (``v``) that pass the network part of ``colocated``: the whole test with
    the client share passing (null). A template failing it fails ``colocated`` whatever its client
    builds, so ``client_inside`` (the holders of its members' builds, anywhere) is not counted for it."""
    client = pl.lit(None, pl.Float64).alias("client_key_inside_share")
    return v.with_columns(client).filter(colocated(s)).drop("client_key_inside_share")


def may_pass(ip: pl.DataFrame, members: pl.DataFrame, sub: pl.DataFrame, s: EvidenceSettings) -> pl.DataFrame:
    """The clusters of ``members`` (account_id, cluster_id) whose second most held prefix can still be
    within ``colocated_second_share``; the others fail ``colocated`` whatever the rest of their keys
    (``ip``: the network rows of the key table).

    ``venues`` gives the second share as the second largest count of members (less sub-accounts)
    holding one prefix, over those of them with a network key: at most all n of them. Counted over a
    sample of the members (any ``2 x share x n + 2`` of them), a prefix's holders are at most its
    holders among all, so a sample's second largest count above ``share x n`` (a margin for rounding)
    already fails the cluster. A proxy pool's accounts each hold most of the pool's prefixes and fail on
    the sample; a room, and anything else the sample cannot rule out, is checked in full (``venues``,
    ``client_inside``), so the rooms found are the same (tests/test_room_prune.py)."""
    plain = members.join(sub, on="account_id", how="anti")
    n = plain.group_by("cluster_id").agg(pl.len().alias("_n"))
    # any subset bounds the counts from below: the first rows of each cluster, in the frame's order
    sample = plain.join(n, on="cluster_id").filter(
        pl.int_range(pl.len()).over("cluster_id") < (2 * s.colocated_second_share * pl.col("_n")).floor() + 2
    )
    # the second largest count is above the line when two prefixes' counts are (keys are unique per
    # account, so a count of rows is a count of members)
    fails = (
        ip.join(sample.select("account_id", "cluster_id", "_n"), on="account_id")
        .filter(pl.col("key").str.contains("/", literal=True))
        .group_by("cluster_id", "key")
        .agg(pl.len().alias("_h"), pl.col("_n").first())
        .filter(pl.col("_h") > s.colocated_second_share * (1 + 1e-9) * pl.col("_n"))
        .group_by("cluster_id")
        .len()
        .filter(pl.col("len") >= 2)
    )
    return n.join(fails, on="cluster_id", how="anti").select("cluster_id")


def room_requests(
    points: pl.DataFrame, ctx: RoomContext, s: EvidenceSettings, long: timedelta, visit: Visit | None = None
) -> pl.DataFrame:
    """Per point (account_id, tick_end): requests in the long window through a template its room explains
    (``room_requests_24h``); only points that hold one. Ticks are walked in order (keys as of each), and
    ``visit`` is handed each tick's key table (``seat.SeatWalk``: one table per tick for both tests)."""
    out = []
    for (tick,), pts in points.sort("tick_end").group_by("tick_end", maintain_order=True):
        assert isinstance(tick, datetime)
        if ctx.contexts is None:
            then, keys = ctx.population(ctx.timeline, tick)
        else:  # the population only through the context: the key table is not read (``ctx.own`` aside)
            then, keys = tick - ctx.lag, pl.DataFrame(schema=KEY_SCHEMA)
        if visit is not None:
            visit(tick, keys)
        own = ctx.own(tick, pts.select("account_id"), keys)
        wanted = own.filter(pl.col("family") == "template")["key"].unique()
        if ctx.contexts is None:
            sub = partial(ctx.subaccounts, then, keys)
            rooms = room_templates(keys, ctx.accounts, s, ctx.min_overlap, wanted, sub)
        else:
            rooms = ctx.contexts[tick].rooms.filter(pl.col("template").is_in(wanted.implode()))
        if rooms.height == 0:
            continue
        held = (
            own.filter(pl.col("family") == "template")
            .select("account_id", pl.col("key").alias("template"))
            .join(rooms, on="template")
            .join(
                own.filter(pl.col("family") == "ip").select("account_id", pl.col("key").alias("venue")),
                on=["account_id", "venue"],
            )
            .select("account_id", pl.col("template").cast(pl.UInt64).alias("template_fp"))
            .unique()
        )
        out.append(held.with_columns(pl.lit(tick).alias("tick_end")))
    if not out:
        return pl.DataFrame(
            schema={
                "account_id": pl.String,
                "tick_end": points.schema["tick_end"],
                "room_requests_24h": pl.Int64,
            }
        )
    held = pl.concat(out)
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
    hits: pl.DataFrame,
    frame: pl.DataFrame,
    ctx: RoomContext,
    s: EvidenceSettings,
    long: timedelta,
    visit: Visit | None = None,
) -> pl.DataFrame:
    """Account hits (key ``_point``) capped at low where the room explains the point's extraction
    evidence, with an ``evidence:room`` reason saying so (``visit``: as in ``room_requests``, at every
    tick with an accused point)."""
    if hits.height == 0:
        return hits
    points = frame.join(accused_points(hits), on="_point", how="semi").select(
        "_point", "account_id", "tick_end"
    )
    if points.height == 0:
        return hits
    rooms = room_requests(points, ctx, s, long, visit)
    if rooms.height == 0:
        return hits
    f = frame.join(points.select("_point"), on="_point", how="semi").join(
        rooms, on=["account_id", "tick_end"], how="inner"
    )
    spared = f.with_columns(own_extraction(f, s).alias("_own")).filter(
        (pl.col("room_requests_24h") > 0) & (pl.col("_own") == 0)
    )
    room = " requests through a template a room holds (its holders behind one venue network, popular "
    rest = "clients); none of the rest is extraction: capped at low"
    detail = _text("room: ", pl.col("room_requests_24h"), " of ", pl.col("requests_24h"), room + rest)
    return cap_at_low(hits, spared, "room", detail)


def accused_points(hits: pl.DataFrame) -> pl.DataFrame:
    """The account points (``_point``) that some hit puts at medium or above."""
    medium = [v for v, rank in SEVERITY_RANK.items() if rank >= Severity.MEDIUM.rank]
    return hits.filter(pl.col("severity").is_in(medium)).select("_point").unique()


def spare_sheets(hits: pl.DataFrame, frame: pl.DataFrame, s: EvidenceSettings) -> pl.DataFrame:
    """Account hits (key ``_point``) capped at low where a shared exercise sheet explains the point's
    reasoning signal (``window.sheets``: the remote room, issue 17, round 10): most of its reasoning requests
    are texts at least ``sheet_min_accounts`` accounts send, within a sheet's volume (its own variants
    of an exercise go with the sheet, as the room takes every template request), and its traffic
    carries no extraction a sheet cannot explain: not one coerced, graded or logprob request, no
    agentic transcripts, no pivot."""
    if hits.height == 0 or "sheet_share_24h" not in frame.columns:
        return hits
    checks = extraction_checks(s)
    # the sheet explains the point's reasoning signal: without one, it explains nothing that accused it
    reasoning = pl.any_horizontal([e.fill_null(False) for n, e in checks.items() if n in SHEET_EXPLAINS])
    beyond = [e.fill_null(False) for n, e in checks.items() if n not in SHEET_EXPLAINS]
    # a sheet asks for reasoning: a single coerced, graded or logprob request is not an exercise's
    beyond += [pl.col(f"{k}_share_24h").fill_null(0.0) > 0 for k in ("coercion", "rubric", "logprob")]
    spared = frame.join(accused_points(hits), on="_point", how="semi").filter(
        sheet_explains(s, "") & reasoning & ~pl.any_horizontal(beyond)
    )
    share = (pl.col("sheet_share_24h") * 100).round(0).cast(pl.Int64)
    sheet = " reasoning requests are texts many accounts send (an exercise sheet, not a sweep through "
    rest = "a problem bank); no other extraction: capped at low"
    detail = _text("sheet: ", share, "% of its ", pl.col("reasoning_requests_24h"), sheet + rest)
    return cap_at_low(hits, spared, "sheet", detail)


def _text(*parts: str | pl.Expr) -> pl.Expr:
    """A reason's detail: literal strings and counts, in order."""
    return pl.concat_str([pl.lit(p) if isinstance(p, str) else p.cast(pl.String) for p in parts])


def cap_at_low(hits: pl.DataFrame, spared: pl.DataFrame, name: str, detail: pl.Expr) -> pl.DataFrame:
    """``hits`` with every hit on a ``spared`` point (``_point``) at low, plus one ``evidence:<name>``
    reason per spared point (``detail`` over ``spared``; score 0: a reason, not a vote)."""
    return cap_at(hits, spared, name, detail, Severity.LOW)


def cap_at(
    hits: pl.DataFrame, spared: pl.DataFrame, name: str, detail: pl.Expr, cap: Severity
) -> pl.DataFrame:
    """``hits`` with every hit on a ``spared`` point (``_point``) at most ``cap`` (a hit below it keeps
    its own), plus one ``evidence:<name>`` reason per spared point (``detail`` over ``spared``; severity
    low and score 0: a reason, not a vote)."""
    if spared.height == 0:
        return hits
    above = [v for v, rank in SEVERITY_RANK.items() if rank > cap.rank]
    capped = hits.with_columns(
        pl.when(pl.col("_point").is_in(spared["_point"].implode()) & pl.col("severity").is_in(above))
        .then(pl.lit(cap.value))
        .otherwise(pl.col("severity"))
        .alias("severity")
    )
    reasons = spared.select(
        "_point",
        pl.lit(f"{AXIS_PREFIX}{name}").alias("rule_id"),
        detail.alias("detail"),
        pl.lit(Severity.LOW.value).alias("severity"),
        pl.lit(0.0).alias("score"),
        pl.lit(None, pl.String).alias("campaign_type"),
        pl.lit("live").alias("mode"),
    )
    return pl.concat([capped, reasons.select(hits.columns).cast(hits.schema)], how="vertical_relaxed")
