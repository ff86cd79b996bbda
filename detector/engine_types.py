"""The engine's records beside its window state: the counters it keeps (``EngineStats``), its event-time
clock (``EngineClock``; both go into a checkpoint) and who watches it work (``Observers``).
``detector.engine`` re-exports them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl

from detector.contracts import Kind
from detector.detect.fusion import ScoreObserver
from detector.detect.runaway import CountRelay
from detector.window.context import Relay


@dataclass
class EngineStats:
    """Counters the runner reports and the metrics layer exports."""

    events: int = 0
    duplicates: int = 0
    late: int = 0
    #: late events folded into the last closed tick because too many were waiting (``max_late_events``)
    late_folded: int = 0
    ticks: int = 0
    #: alert episodes closed after ``episode_idle`` without a verdict
    episodes_closed: int = 0
    rule_hits: Counter[str] = field(default_factory=Counter)
    #: state rows dropped per ``table/cause`` (``age``: event time, ``cap``: count; ``StateCaps``)
    evicted: Counter[str] = field(default_factory=Counter)
    #: demotions of enforce rules to shadow at run time (``detector.detect.runaway``), per rule
    demoted: Counter[str] = field(default_factory=Counter)
    shadow_hits: Counter[str] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    #: processed events carrying each signal (SIGNAL_METRICS), for share-of-traffic panels
    signals: Counter[str] = field(default_factory=Counter)


#: Per-request signals counted for the metrics layer: name -> boolean column.
SIGNAL_METRICS = {
    "cot": "cot_elicit",
    "coercion": "reasoning_coercion",
    "new_model": "is_new_model",
    "logprob": "is_logprob",
    "tools_heavy": "is_tools_heavy",
    "hosted_ip": "is_hosted_ip",
}


#: Called with (target, feature frame, tick end) each time features are computed (training data
#: capture). The frame has the key column, every catalogue feature and ``tick_end`` (the event time
#: the row's features describe; one frame may hold several ticks).
FeatureObserver = Callable[[Kind, pl.DataFrame, datetime], None]


@dataclass(frozen=True)
class Observers:
    """Who watches the engine work, given at construction: model scores (the score-histogram metric)
    and feature frames (training data capture), and the population context passing between the stages.
    None: nobody."""

    on_scores: ScoreObserver | None = None
    on_features: FeatureObserver | None = None
    #: under ``context_lag``: each tick's population context on its way to the account verdicts (the
    #: publication between the two stages; a test round-trips it through bytes, a benchmark sizes it)
    on_context: Relay | None = None
    #: under ``context_lag``: each tick's ``models`` kind alone, before the fold (``new_model_flags``)
    on_models: Relay | None = None
    #: under ``context_lag``: an account stage's rule-guard counts per tick in, the population's out
    #: (``runaway.guard_late``; None: this engine's own)
    on_guard: CountRelay | None = None


@dataclass
class EngineClock:
    """The event-time clock and what waits on it (all of it goes into a checkpoint)."""

    #: newest event time seen (the watermark is this minus the allowed lateness)
    max_ts: datetime | None = None
    #: end of the next tick to close
    tick_end: datetime | None = None
    #: end of the last closed tick
    last_closed: datetime | None = None
    #: accounts touched since the last cluster tick
    touched: list[pl.Series] = field(default_factory=list)
    #: buffered (enriched) events of ticks not yet closed
    pending: list[pl.DataFrame] = field(default_factory=list)
    #: late events among them (folded at the next tick close; bounded by ``max_late_events``)
    late_waiting: int = 0

    def healthy(self, now: datetime, future_skew: timedelta, max_late_events: int) -> bool:
        """False while the clock is implausible (ahead of ``now`` by more than ``future_skew``) or more
        than ``max_late_events`` late events wait (readiness: ``Engine.time_healthy``)."""
        ahead = self.max_ts is not None and self.max_ts > now + future_skew
        return not ahead and self.late_waiting <= max_late_events


def is_multiple(ts: datetime, step: timedelta) -> bool:
    """``ts`` is on a boundary of ``step`` (from the epoch)."""
    return floor_time(ts, step) == ts


def floor_time(ts: datetime, step: timedelta) -> datetime:
    """``ts`` floored to a multiple of ``step`` from the epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=ts.tzinfo)
    n = (ts - epoch) // step
    return epoch + n * step
