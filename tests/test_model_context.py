"""Issue 13, round 15: the new-model flag under ``context_lag`` reads the population only through the
``models`` kind of the population context (``window/context.py``: ``model_contexts``, ``new_model_flags``).

A model's first use is the earlier of anyone's before the event's tick (the context, a tick late) and the
event's own account's in its tick. So an account's flags are the same whether or not the other accounts'
events are fed beside its own, once the context comes from an engine that saw every account (what a
partition-parallel account stage does), and they are not without it (the check can fail).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from detector.settings import EngineSettings
from detector.window.context import PopulationContext, model_contexts, new_model_flags
from detector.window.state import WindowState

T0 = datetime(2026, 3, 2, tzinfo=UTC)
Q = timedelta(minutes=15)


def _settings(lag: bool) -> EngineSettings:
    s = EngineSettings()
    windows = s.windows.model_copy(update={"new_model": timedelta(hours=1)})
    return s.model_copy(update={"context_lag": lag, "windows": windows})


def _events() -> pl.DataFrame:
    """The stream starts at T0 (z on "base"); after the 6 h warm-up a uses "m" at 7:01, b at 7:10 (same
    tick) and again at 8:05, 64 minutes after the model's first use by anyone."""
    rows = [
        ("z", "base", T0),
        ("z", "base", T0 + timedelta(hours=7, minutes=5)),
        ("a", "m", T0 + timedelta(hours=7, minutes=1)),
        ("b", "m", T0 + timedelta(hours=7, minutes=10)),
        ("b", "m", T0 + timedelta(hours=8, minutes=5)),
    ]
    frame = pl.DataFrame(
        rows,
        schema={"account_id": pl.String, "model": pl.String, "ts": pl.Datetime("us", "UTC")},
        orient="row",
    )
    return frame.with_columns((pl.col("ts").dt.truncate("15m") + Q).alias("_tick"))


def _flags(events: pl.DataFrame, lag: bool, relay=None) -> dict[tuple[str, datetime], bool]:  # type: ignore[no-untyped-def]
    out = new_model_flags(WindowState(), events, _settings(lag), relay)
    return {(a, ts): f for a, ts, f in out.select("account_id", "ts", "is_new_model").iter_rows()}


def test_lag_reads_other_accounts_a_tick_late() -> None:
    ev = _events()
    off, on = _flags(ev, False), _flags(ev, True)
    b1, b2 = T0 + timedelta(hours=7, minutes=10), T0 + timedelta(hours=8, minutes=5)
    assert off[("a", T0 + timedelta(hours=7, minutes=1))] and on[("a", T0 + timedelta(hours=7, minutes=1))]
    assert off[("b", b1)] and on[("b", b1)]  # off: 9 min after a's use; on: b's own first use
    assert not off[("b", b2)] and not on[("b", b2)]  # 64 min after a's use, read from the context
    assert not off[("z", T0)] and not on[("z", T0)]  # the first tick: within the warm-up


def test_an_account_stage_fed_only_its_accounts_flags_the_same() -> None:
    ev = _events()
    full = _flags(ev, True)
    contexts = model_contexts(WindowState(), ev, sorted(ev["_tick"].unique()))
    cluster = {t - Q: PopulationContext.of_models(t - Q, m) for t, m in contexts.items()}

    def from_cluster(ctx: PopulationContext) -> PopulationContext:
        return PopulationContext.from_bytes(cluster[ctx.as_of].to_bytes())

    for shard in (["a"], ["b"], ["z"], ["a", "z"]):
        mine = ev.filter(pl.col("account_id").is_in(shard))
        assert _flags(mine, True, from_cluster) == {k: v for k, v in full.items() if k[0] in shard}
    # without the cluster stage's context the flags move: the check can fail
    alone = _flags(ev.filter(pl.col("account_id") == "b"), True)
    assert alone[("b", T0 + timedelta(hours=8, minutes=5))] is False  # the stream starts at b's first use
    b_late = ev.filter(pl.col("account_id").is_in(["b", "z"]))
    assert _flags(b_late, True)[("b", T0 + timedelta(hours=8, minutes=5))] is True


def test_the_stream_start_travels_without_any_model_held() -> None:
    state = WindowState(stream_start=T0)
    tick = T0 + timedelta(days=9)
    ctx = model_contexts(
        state,
        pl.DataFrame(
            schema={"model": pl.String, "ts": pl.Datetime("us", "UTC"), "_tick": pl.Datetime("us", "UTC")}
        ),
        [tick],
    )[tick]
    assert ctx["model"].to_list() == [None] and ctx["stream_start"].to_list() == [T0]
    back = PopulationContext.from_bytes(PopulationContext.of_models(tick - Q, ctx).to_bytes())
    assert back.models.equals(ctx)
