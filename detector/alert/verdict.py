"""Verdicts and alert episodes: rule hits (and model scores) -> score, severity, campaign type, alerts.

One alert per account or cluster episode. ``alert_id`` is a hash of (kind, subject, the event time the
episode opened), so a replay or a restart re-emits the same id; a new ``revision`` is emitted when the
alert escalates in severity or accuses more accounts. ``detected_event_ts`` is the event time of the
last request of the tick in which the engine decided, never wall time.

Episodes are bounded state: one with no verdict for ``idle`` of event time is closed and forgotten, and
a later verdict on the same subject opens a new episode with a new id (its opening time differs).

The counting unit is the **episode** (one ``alert_id``); a revision is an update to it. Every revision
carries the episode's accumulated reasons (the latest of each rule and model, strongest first), the
campaign type of its strongest reason, its highest score and the sentence (``output``) of its strongest
rule: a revision raised by membership growth alone never reads as "a model accused on its own".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import polars as pl

from detector.contracts import DEFAULT_SCORE, SEVERITY_RANK, Alert, Kind, Reason, Severity
from detector.schema import EPOCH, UTC_US

_US = timedelta(microseconds=1)
T_co = TypeVar("T_co", covariant=True)


@dataclass
class Episode:
    """What was last emitted for one subject."""

    alert_id: str
    revision: int
    severity: Severity
    accounts: frozenset[str]
    first_event_ts: datetime
    detected_event_ts: datetime
    #: End of the last tick with a verdict on the subject (idle episodes close; see ``AlertBook``).
    last_hit: datetime
    #: Every reason emitted so far in the episode, strongest first (one per rule or model).
    reasons: tuple[Reason, ...] = ()
    #: Campaign type of the strongest verdict that named one, and that verdict's severity rank.
    campaign_type: str | None = None
    campaign_rank: int = 0
    #: Highest score emitted so far.
    score: float = 0.0


def alert_id_for(kind: str, subject: str, opened: datetime) -> str:
    """Deterministic id of an alert episode: its subject and the event time it opened."""
    digest = hashlib.blake2b(f"{kind}|{subject}|{opened.isoformat()}".encode(), digest_size=10).hexdigest()
    return f"al-{digest}"


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    return value


class Lazy(Protocol[T_co]):
    """A part of a verdict built only if the verdict becomes an alert: calling it always resolves."""

    def __call__(self) -> T_co: ...


class Given(Generic[T_co]):
    """A part of a verdict known already (a ``Lazy`` that returns it)."""

    def __init__(self, value: T_co) -> None:
        self.value = value

    def __call__(self) -> T_co:
        return self.value


@dataclass
class Verdict:
    """One subject's combined decision for this tick."""

    kind: Kind
    subject: str
    accounts: list[str]
    severity: Severity
    score: float
    campaign_type: str | None
    #: The reasons (built only if the verdict becomes an alert).
    reasons: Lazy[list[Reason]]
    #: The evidence (built only if the verdict becomes an alert).
    evidence: Lazy[dict[str, Any]]
    first_event_ts: datetime
    #: The event time this verdict is detected at; None: the tick's newest event (``AlertBook.update``).
    #: Under ``context_lag`` an account's is its own newest event in the tick (``own_detection``), so a
    #: stage that sees only some accounts gives its alerts the same ids.
    detected: datetime | None = None


def own_detection(verdicts: dict[datetime, list[Verdict]], events: pl.DataFrame) -> None:
    """Set each (account) verdict's ``detected`` to its account's newest event in its tick (``events``:
    account_id, ts, ``_tick``)."""
    newest = events.group_by("_tick", "account_id").agg(pl.col("ts").max())
    at = {(t, a): ts for t, a, ts in newest.iter_rows()}
    for tick, vs in verdicts.items():
        for v in vs:
            v.detected = at[(tick, v.subject)]


def combine(hits: pl.DataFrame, key: str) -> pl.DataFrame:
    """Per subject: max severity, noisy-or score, campaign type of the strongest hit, reasons."""
    if hits.height == 0:
        return pl.DataFrame()
    h = hits.with_columns(
        pl.col("severity").replace_strict(SEVERITY_RANK, return_dtype=pl.Int64).alias("_rank"),
        pl.col("score").fill_null(pl.col("severity").replace_strict(DEFAULT_SCORE, return_dtype=pl.Float64)),
    ).sort([key, "_rank", "score", "rule_id"], descending=[False, True, True, False])
    return h.group_by(key, maintain_order=True).agg(
        pl.col("_rank").max().alias("_rank"),
        (1 - (1 - pl.col("score")).product()).alias("score"),
        pl.col("campaign_type").drop_nulls().first().alias("campaign_type"),
        pl.struct("rule_id", "severity", "score", "detail").alias("reasons"),
    )


class AlertBook:
    """Open alert episodes by (kind, subject); turns verdicts into new alerts or revisions.

    ``idle``: an episode with no verdict for longer than this (event time) is closed; ``expire`` forgets
    closed episodes so the book stays bounded in a long-running daemon.
    """

    def __init__(self, idle: timedelta = timedelta(days=7)) -> None:
        self.idle = idle
        self.episodes: dict[tuple[str, str], Episode] = {}

    def ranks(self, kind: str) -> pl.DataFrame:
        """(subject, _book_rank, _book_last): severity rank and last verdict tick of ``kind``'s episodes."""
        subjects: list[str] = []
        ranks: list[int] = []
        last_us: list[int] = []  # integers: polars builds a column of Python datetimes 20x slower
        for (k, subject), ep in self.episodes.items():
            if k == kind:
                subjects.append(subject)
                ranks.append(ep.severity.rank)
                last_us.append((ep.last_hit - EPOCH) // _US)
        return pl.DataFrame(
            {"subject": subjects, "_book_rank": ranks, "_book_last": last_us},
            schema={"subject": pl.String, "_book_rank": pl.Int64, "_book_last": pl.Int64},
        ).with_columns(pl.col("_book_last").cast(UTC_US))

    def touch(self, kind: str, subjects: list[str], now: datetime) -> None:
        """Record a verdict at tick ``now`` on subjects whose verdict changed nothing (no alert)."""
        for s in subjects:
            ep = self.episodes.get((kind, s))
            if ep is not None and ep.last_hit < now:
                ep.last_hit = now

    def expire(self, now: datetime) -> int:
        """Forget episodes idle for longer than ``idle`` at event time ``now``; return how many."""
        gone = [k for k, ep in self.episodes.items() if now - ep.last_hit > self.idle]
        for k in gone:
            del self.episodes[k]
        return len(gone)

    def update(
        self,
        verdicts: list[Verdict],
        detected: datetime,
        now: datetime,
        prepare: Callable[[list[Verdict]], None] | None = None,
    ) -> list[Alert]:
        """Alerts to emit for the tick ending ``now``: new episodes and escalations/growth of open ones.

        ``prepare`` is called once with the verdicts that become alerts, before their reasons and
        evidence are read (the engine batches model explanations and cluster evidence there).
        """
        emit: list[tuple[Verdict, Episode]] = []
        for v in sorted(verdicts, key=lambda x: (x.kind, x.subject)):
            at = v.detected or detected
            key = (v.kind, v.subject)
            accounts = frozenset(v.accounts)
            ep = self.episodes.get(key)
            if ep is not None and now - ep.last_hit > self.idle:
                ep = None  # the old episode went quiet: this verdict opens a new one
            if ep is None:
                ep = Episode(
                    alert_id_for(v.kind, v.subject, at),
                    1,
                    v.severity,
                    accounts,
                    v.first_event_ts,
                    at,
                    now,
                )
            elif v.severity > ep.severity or not accounts <= ep.accounts:
                ep = Episode(
                    ep.alert_id,
                    ep.revision + 1,
                    max(v.severity, ep.severity),
                    accounts | ep.accounts,
                    min(ep.first_event_ts, v.first_event_ts),
                    ep.detected_event_ts,
                    now,
                    ep.reasons,
                    ep.campaign_type,
                    ep.campaign_rank,
                    ep.score,
                )
            else:
                ep.last_hit = max(ep.last_hit, now)
                continue
            self.episodes[key] = ep
            emit.append((v, ep))
        if prepare is not None and emit:
            prepare([v for v, _ in emit])
        out: list[Alert] = []
        for v, ep in emit:
            _accumulate(ep, v)
            out.append(
                Alert(
                    alert_id=ep.alert_id,
                    revision=ep.revision,
                    kind=v.kind,
                    subject=v.subject,
                    account_ids=sorted(ep.accounts),
                    severity=ep.severity,
                    score=ep.score,
                    campaign_type=ep.campaign_type,
                    first_event_ts=ep.first_event_ts,
                    detected_event_ts=ep.detected_event_ts,
                    reasons=list(ep.reasons),
                    evidence={
                        **{k: _clean(x) for k, x in v.evidence().items() if x is not None},
                        # when *this* revision was decided (detected_event_ts stays the first's)
                        "revision_event_ts": v.detected or detected,
                    },
                    output=next((r.output for r in ep.reasons if r.output), None),
                )
            )
        return out


def _reason_rank(r: Reason) -> tuple[int, int, float]:
    """Sort key, strongest first: severity, then rules before models, then score."""
    return (
        -(r.severity or Severity.LOW).rank,
        0 if r.source == "rule" else 1,
        -(r.score if r.score is not None else 0.0),
    )


def merge_reasons(old: tuple[Reason, ...], new: list[Reason]) -> tuple[Reason, ...]:
    """The episode's reasons after a revision: this tick's reasons replace earlier ones of the same rule
    or model (fresher detail), earlier ones that did not fire again stay; strongest first."""
    fresh = {(r.source, r.name) for r in new}
    merged = [*new, *(r for r in old if (r.source, r.name) not in fresh)]
    return tuple(sorted(merged, key=_reason_rank))


def _accumulate(ep: Episode, v: Verdict) -> None:
    """Fold a verdict that became a revision into its episode: reasons, campaign type, score."""
    ep.reasons = merge_reasons(ep.reasons, v.reasons())
    rank = v.severity.rank
    if v.campaign_type is not None and (ep.campaign_type is None or rank > ep.campaign_rank):
        ep.campaign_type, ep.campaign_rank = v.campaign_type, rank
    ep.score = max(ep.score, round(min(max(v.score, 0.0), 1.0), 4))
