"""The cluster stage's part of the population context (issue 13, round 15): build it once per tick.

Under ``EngineSettings.context_lag`` the account verdicts read the population only through a
``window.context.PopulationContext`` as of a tick before each point's (``lag``). This builds it from
what only the cluster stage sees, every account's rows and the key table as of that tick: the sheet
test's texts many hold (``window.sheets.wide_texts``), the (template, venue) pairs a room explains
(``room.room_templates``, every template) and the tool keys a team explains (established or new)
(``seat.team_groups``, every tool key), the tool keys a group of new seats holds and the tenants that
are routers (``lone.new_seat_tools``, ``lone.router_tenants``, round 18), the groups of a router's aged
seats that release (``aged.aged_slots``, round 21); and reads the sheet test
through it, with the points' own accounts' rows (the account stage's part). Without the lag nothing here runs.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

import polars as pl

from detector.detect.aged import aged_slots
from detector.detect.lone import new_seat_tools, router_tenants
from detector.detect.room import RoomContext, room_templates
from detector.detect.seat import TOOL_FAMILIES, team_groups
from detector.settings import EngineSettings
from detector.window.asof import KeyTimeline
from detector.window.batches import account_batches
from detector.window.context import (
    NEW_SEAT_SCHEMA,
    ROOM_SCHEMA,
    ROUTER_SCHEMA,
    TEAM_SCHEMA,
    Contexts,
    PopulationContext,
    Published,
    Relay,
    sheet_holders,
)
from detector.window.sheets import account_sheets, reasoning_rows, wide_texts
from detector.window.state import WindowState


def build_contexts(
    state: WindowState,
    timeline: KeyTimeline,
    since: pl.DataFrame,
    ticks: list[datetime],
    settings: EngineSettings,
) -> Contexts:
    """The context each of ``ticks`` (in order) reads: as of ``windows.tick`` before it, from every
    account's sheet rows and the key table then (``timeline``: the batch's, walked afresh; ``since``:
    each tick's link window, tick_end and since)."""
    w, ev, lag = settings.windows, settings.evidence, settings.windows.tick
    population = state.sheet_rows(ticks[0] - lag - w.long)
    empty = pl.DataFrame(schema={"account_id": pl.String})
    walk = RoomContext(timeline.fresh(), since, empty, state.accounts, settings.link.min_overlap, lag)
    out: Contexts = {}
    for tick in ticks:
        then, keys = walk.population(walk.timeline, tick)
        sub = partial(walk.subaccounts, then, keys)
        rooms = room_templates(keys, state.accounts, ev, settings.link.min_overlap, None, sub)
        tools = keys.filter(pl.col("family").is_in(TOOL_FAMILIES)).select("family", "key").unique()
        teams = team_groups(keys, walk, state, ev, then, w.long, tools, tools).select(TEAM_SCHEMA.keys())
        sheets = wide_texts(population, then, w.long, ev.sheet_min_accounts)
        fresh = new_seat_tools(keys, state.accounts, then, ev, sub())
        out[tick] = PopulationContext(
            then,
            sheets,
            rooms.cast(ROOM_SCHEMA),
            teams.cast(TEAM_SCHEMA),
            new_seats=fresh.cast(NEW_SEAT_SCHEMA),
            routers=router_tenants(sub(), state.accounts, then, ev).cast(ROUTER_SCHEMA),
            aged_slots=aged_slots(state, keys, sub(), state.accounts, then, w.long, ev),
        )
    return out


def population_sheets(
    state: WindowState,
    points: pl.DataFrame,
    timeline: KeyTimeline,
    since: pl.DataFrame,
    settings: EngineSettings,
    relay: Relay | None = None,
    own: bool = True,
) -> tuple[pl.DataFrame, Contexts | None]:
    """The sheet test's features for ``points`` (account_id, tick_end) and, under ``context_lag``, the
    contexts their ticks read (each passed through ``relay``, the publication; None without the lag).
    ``own`` False (the cluster stage, which raises no account verdict): the contexts only, no features
    (an empty frame)."""
    w, ev = settings.windows, settings.evidence
    first = points["tick_end"].min()
    assert isinstance(first, datetime)
    m, share, batch = ev.sheet_min_accounts, ev.sheet_member_share, settings.feature_batch_points
    parts = account_batches(points, batch)  # in parts of accounts, as the features (round 19)
    if not settings.context_lag:
        population = reasoning_rows(state.sheet_rows(first - w.long))  # once, not once a part
        return pl.concat([account_sheets(population, p, w.long, m, share) for p in parts]), None
    ticks = sorted(points["tick_end"].unique())
    if isinstance(relay, Published):  # an account stage reads the published contexts, builds none
        contexts = {tick: relay.at(tick - w.tick) for tick in ticks}
    else:
        contexts = build_contexts(state, timeline, since, ticks, settings)
        contexts = {tick: relay(c) for tick, c in contexts.items()} if relay is not None else contexts
    if not own:
        return pl.DataFrame(), contexts
    rows = state.sheet_rows(first - w.long, accounts=points["account_id"].unique())
    holders, rows = sheet_holders(contexts), reasoning_rows(rows)
    sheets = [account_sheets(rows, p, w.long, m, share, w.tick, holders) for p in parts]
    return pl.concat(sheets), contexts
