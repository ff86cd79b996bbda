"""Event time that one record cannot move: future and implausible timestamps are screened out.

The engine's clock is the newest event time it has seen, so a single event dated 2099 (or a day
ahead) would close every tick up to it and make all later, honest events late. Before events reach
the engine, each batch is screened per *partition* (a Kafka partition in the daemon, an input file in
replay):

- ``implausible_timestamp``: outside ``[plausible_from, plausible_until)`` (years 0001 and 9999 are
  valid RFC 3339 but no gateway wrote them);
- ``future_timestamp``: more than ``future_skew`` ahead of the partition's recent events, or of the
  ingest clock where there is one (the daemon's wall clock; replay has none).

The partition's recent events are the last ``recent_events`` event times it delivered (accepted or
not) together with the batch. Sorted, they fall into runs separated by gaps longer than
``future_skew``; the partition's time is the end of the newest run that holds at least
``min_support`` events, and anything more than ``future_skew`` past it is in the future. One forged
event (up to ``min_support - 1`` of them within the skew of each other) is rejected wherever it
lands; the first events after a real jump in time (a gap in the logs, a quiet hour on a partition)
are dead-lettered, never dropped silently, until ``min_support`` of them have arrived. The history is
not checkpointed: after a restart the first batch is judged on its own and on the ingest clock.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
import polars as pl

from detector.decode import Reject
from detector.settings import EventTimeSettings

FUTURE = "future_timestamp"
IMPLAUSIBLE = "implausible_timestamp"
#: Reject reasons this module adds to the decoder's (a closed set: metric label values).
REASONS = (FUTURE, IMPLAUSIBLE)


@dataclass
class EventTimeGuard:
    """Screens batches of decoded events; keeps, per partition, the recent event times it saw."""

    settings: EventTimeSettings
    #: per partition: the last ``recent_events`` event times (microseconds since the epoch)
    recent: dict[Hashable, pl.Series] = field(default_factory=dict)

    def screen(
        self,
        events: pl.DataFrame,
        partition: str | None = None,
        *,
        key: Hashable = None,
        ingest_now: datetime | None = None,
        stamp: str | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Split ``events`` into (kept, rejected); ``rejected`` has a ``_reason`` column.

        ``partition`` names the column that tells partitions apart (None: the batch is one partition,
        named ``key``: replay passes the input file). ``ingest_now`` is the arrival clock (None in
        replay). ``stamp`` names a column of per-record broker timestamps (ms since the epoch; null or
        0: none), each event judged against its own.
        """
        s = self.settings
        if events.height == 0:
            return events, events.with_columns(pl.lit(None, pl.String).alias("_reason"))
        ts = pl.col("ts")
        plausible = (ts >= pl.lit(s.plausible_from)) & (ts < pl.lit(s.plausible_until))
        skew_us = int(s.future_skew.total_seconds() * 1_000_000)
        limits: dict[Hashable, int] = {}
        ok = events.filter(plausible)
        keys: list[Hashable] = [key] if partition is None else ok[partition].unique().to_list()
        for k in keys:
            mine = ok if partition is None else ok.filter(pl.col(partition) == k)
            us = mine["ts"].dt.epoch("us")
            seen = self.recent.get(k)
            both = us if seen is None else pl.concat([seen, us])
            limits[k] = _partition_time(both, skew_us, s.min_support) + skew_us
            self.recent[k] = both.tail(s.recent_events)
        if partition is None:
            limit = pl.lit(limits[key], pl.Int64)
        else:
            limit = pl.col(partition).replace_strict(limits, default=0, return_dtype=pl.Int64)
        if ingest_now is not None:
            now_us = int(ingest_now.timestamp() * 1_000_000) + skew_us
            limit = pl.min_horizontal(limit, pl.lit(now_us, pl.Int64))
        if stamp is not None:  # the record's own broker timestamp, where it has one
            own = pl.when(pl.col(stamp) > 0).then(pl.col(stamp).cast(pl.Int64) * 1000 + skew_us)
            limit = pl.min_horizontal(limit, own)
        reason = (
            pl.when(~plausible)
            .then(pl.lit(IMPLAUSIBLE))
            .when(ts.dt.epoch("us") > limit)
            .then(pl.lit(FUTURE))
            .otherwise(None)
            .alias("_reason")
        )
        marked = events.with_columns(reason)
        kept = marked.filter(pl.col("_reason").is_null()).drop("_reason")
        return kept, marked.filter(pl.col("_reason").is_not_null())


def _partition_time(times: pl.Series, skew_us: int, min_support: int) -> int:
    """End of the newest run (times split at gaps over ``skew_us``) holding ``min_support`` events;
    with no such run (a partition's first few events), the newest time: nothing to judge against."""
    if times.len() == 0:
        return 2**62
    runs = (
        pl.DataFrame({"t": times.sort()})
        .with_columns((pl.col("t").diff().fill_null(0) > skew_us).cum_sum().alias("run"))
        .group_by("run")
        .agg(pl.len().alias("n"), pl.col("t").max().alias("end"))
    )
    supported = runs.filter(pl.col("n") >= min_support)
    end = (supported if supported.height else runs)["end"].max()
    assert isinstance(end, int)
    return end


def rejects(rejected: pl.DataFrame, position_of: Callable[[dict[str, object]], str]) -> list[Reject]:
    """Dead letters for screened-out events: request id, event time and the reason; no content."""
    out: list[Reject] = []
    for row in rejected.iter_rows(named=True):
        stamp = row["ts"].isoformat() if isinstance(row["ts"], datetime) else None
        detail = f"event time {stamp} is {'in the future' if row['_reason'] == FUTURE else 'implausible'}"
        raw = orjson.dumps({"request_id": row["request_id"], "ts": stamp})
        out.append(Reject(str(row["_reason"]), "ts", detail, position_of(row), raw))
    return out
