"""Issue 13's two-stage prototype (``EngineSettings.context_lag``): the account verdicts read the
population (a sheet text's holders, the key table a room or a team is read from) as of the previous
tick, each point's own rows and keys as of its own. Off by default, where nothing changes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sheet_points import LONG, _frames, _reference

from detector.detect.room import RoomContext
from detector.settings import EngineSettings
from detector.window.asof import KeyTimeline
from detector.window.context import ROOM_SCHEMA, TEAM_SCHEMA, PopulationContext, sheet_holders
from detector.window.sheets import SHEET_SCHEMA, _share, account_sheets, reasoning_rows, wide_texts
from detector.window.tables import KEY_SCHEMA

T0 = datetime(2026, 3, 2, tzinfo=UTC)
Q = timedelta(minutes=15)


def _lagged_reference(
    rows: pl.DataFrame, points: pl.DataFrame, min_accounts: int, share: float, lag: timedelta
) -> pl.DataFrame:
    """Point by point, as written in the docstring: holders and co-holders from the window ``lag``
    earlier (every account's rows), the point's own rows from its window."""
    rows = reasoning_rows(rows)
    out = []
    for account, end in points.select("account_id", "tick_end").iter_rows():
        then = rows.filter((pl.col("bucket") >= end - lag - LONG) & (pl.col("bucket") < end - lag))
        holders = then.group_by("text_fp").agg(pl.col("account_id").n_unique().alias("_holders"))
        wide = then.join(holders.filter(pl.col("_holders") >= min_accounts), on="text_fp", how="semi")
        own = rows.filter(
            (pl.col("account_id") == account) & (pl.col("bucket") >= end - LONG) & (pl.col("bucket") < end)
        )
        co = wide.join(own.select("text_fp").unique(), on="text_fp", how="semi")["account_id"].n_unique()
        n = pl.col("_holders").fill_null(0)
        out.append(
            own.join(holders, on="text_fp", how="left")
            .with_columns(
                ((n >= min_accounts) & (n >= co * share)).alias("_sheet"), pl.lit(end).alias("tick_end")
            )
            .group_by("account_id", "tick_end")
            .agg(_share())
        )
    return pl.concat(out) if out else _reference(rows, points, LONG, min_accounts, share).clear()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(1, 4), st.sampled_from([0.0, 1 / 3, 0.5, 1.0]))
def test_lagged_sheets_count_the_previous_ticks_holders(seed: int, min_accounts: int, share: float) -> None:
    rows, points = _frames(seed)
    key = ["account_id", "tick_end"]
    # off (no lag): the test as it was, against its reference
    off = account_sheets(rows, points, LONG, min_accounts, share).sort(key)
    assert off.equals(_reference(rows, points, LONG, min_accounts, share).sort(key))
    on = account_sheets(rows, points, LONG, min_accounts, share, Q).sort(key)
    want = _lagged_reference(rows, points, min_accounts, share, Q).sort(key)
    assert on.select(key).equals(want.select(key))
    for c in ("sheet_share_24h", "reasoning_requests_24h", "sheet_sends_per_text_24h"):
        assert ((on[c] - want[c]).abs().max() or 0.0) < 1e-12, c
    # as the engine reads it (round 15): the points' own rows, the population only through the contexts
    own = rows.join(points.select("account_id").unique(), on="account_id", how="semi")
    ctx = {
        t: PopulationContext(t - Q, wide_texts(rows, t - Q, LONG, min_accounts), *NO_GROUPS)
        for t in points["tick_end"].unique()
    }
    assert account_sheets(own, points, LONG, min_accounts, share, Q, sheet_holders(ctx)).sort(key).equals(on)


NO_GROUPS = (pl.DataFrame(schema=ROOM_SCHEMA), pl.DataFrame(schema=TEAM_SCHEMA))


def _sheet(holders: list[tuple[str, int]]) -> pl.DataFrame:
    """One reasoning text (fp 7) sent once by each (account, bucket index)."""
    return pl.DataFrame(
        {
            "account_id": [a for a, _ in holders],
            "bucket": [T0 + b * Q for _, b in holders],
            "plain": [False] * len(holders),
            "text_fp": [7] * len(holders),
            "requests": [1] * len(holders),
            "sends": [1] * len(holders),
            "simhash": [False] * len(holders),
        },
        schema=SHEET_SCHEMA,
    )


def test_a_text_three_accounts_first_send_in_this_tick_is_a_sheet_only_a_tick_later() -> None:
    rows = _sheet([("a", 4), ("b", 4), ("c", 4)])
    now = pl.DataFrame(
        {"account_id": ["a"], "tick_end": [T0 + 5 * Q]},
        schema={"account_id": pl.String, "tick_end": SHEET_SCHEMA["bucket"]},
    )
    assert account_sheets(rows, now, LONG, 3, 0.5)["sheet_share_24h"].to_list() == [1.0]
    # as of the previous tick nobody held it: no sheet yet
    assert account_sheets(rows, now, LONG, 3, 0.5, Q)["sheet_share_24h"].to_list() == [0.0]
    # a tick later the context has caught up
    later = now.with_columns(pl.col("tick_end") + Q)
    assert account_sheets(rows, later, LONG, 3, 0.5, Q)["sheet_share_24h"].to_list() == [1.0]
    # the holders the context counts are the previous window's: two of three sent before, one now
    rows = _sheet([("b", 3), ("c", 3), ("a", 4)])
    assert account_sheets(rows, now, LONG, 3, 0.5, Q)["sheet_share_24h"].to_list() == [0.0]
    assert account_sheets(rows, now, LONG, 2, 0.5, Q)["sheet_share_24h"].to_list() == [1.0]


def _keys(rows: list[tuple[str, str, int]], tick: bool = False) -> pl.DataFrame:
    """Key uses (account, template key, bucket index), as a key table or (``tick``) a per-tick log."""
    frame = pl.DataFrame(
        {
            "account_id": [a for a, _, _ in rows],
            "family": ["template"] * len(rows),
            "key": [k for _, k, _ in rows],
            "last_seen": [T0 + b * Q for _, _, b in rows],
            "uses": [1] * len(rows),
        },
        schema=KEY_SCHEMA,
    )
    if tick:
        return frame.with_columns((pl.col("last_seen").dt.truncate("15m") + Q).alias("_tick"))
    return frame


def test_the_room_context_reads_the_population_a_tick_before_and_the_own_keys_at_the_tick() -> None:
    before = _keys([("a", "t1", 0), ("b", "t1", 0)])
    log = _keys([("c", "t1", 1), ("a", "t2", 2)], tick=True)  # c joins at tick 2, a takes t2 at tick 3
    after = pl.concat([before, log.drop("_tick")])
    now = T0 + 3 * Q
    since = pl.DataFrame(
        {"tick_end": [now], "since": [None]},
        schema={"tick_end": SHEET_SCHEMA["bucket"], "since": SHEET_SCHEMA["bucket"]},
    )
    empty = pl.DataFrame(schema={"account_id": pl.String})
    accounts = pl.DataFrame({"account_id": ["a"]})
    for lag, population in ((timedelta(0), {"a", "b", "c"}), (Q, {"a", "b", "c"})):
        ctx = RoomContext(KeyTimeline(before, log, after), since, empty, empty, 0.5, lag)
        then, keys = ctx.population(ctx.timeline, now)
        assert then == now - lag
        assert set(keys.filter(pl.col("key") == "t1")["account_id"]) == population
        # a's second template arrived in the tick itself: the population as of a tick before lacks it
        assert set(keys.filter(pl.col("key") == "t2")["account_id"]) == ({"a"} if not lag else set())
        # the point's own keys are its keys at its tick either way
        assert set(ctx.own(now, accounts, keys)["key"]) == {"t1", "t2"}


def test_the_lag_is_off_by_default() -> None:
    assert EngineSettings().context_lag is False
