"""Score alerts against simulator labels: recall and time-to-detect per campaign, false positives per persona.

An account counts as flagged when an alert of severity medium or above names it in ``account_ids``
(every revision counts); its detection time is the earliest such revision's decision time
(``evidence.revision_event_ts``; ``detected_event_ts`` for alerts that lack it). An episode that
opened as a low lead and later escalated therefore counts from the escalation, not from the lead.
"Flagged high" uses the same rule at severity high or above.

A grown alert keeps the ``detected_event_ts`` of its first revision, so an account added to a cluster
later (or a second campaign merged into it) can appear "detected" before it sent anything. When the
labels carry the account's ``first_ts``, its detection time is therefore never earlier than that
(``n_alerted_before_first_request`` counts the accounts this lifts); campaign time-to-detect uses the
same per-account times.

What named an account: the reason names of that earliest revision at medium or above (rules and
models; the evidence axes' notes aside), so a persona's false positives and a campaign's detections
can be read per rule or model (``reasons``: accounts a name put there; an account counts under every
name its revision carries). A reason without its own severity (an older alert file) counts at the
alert's; a revision none of whose reasons reaches medium is counted under ``NO_REASON``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel
from rich.table import Table

from detector.contracts import SEVERITIES, SEVERITY_RANK, Severity
from detector.detect.evidence import AXIS_PREFIX

_MEDIUM, _HIGH = Severity.MEDIUM.rank, Severity.HIGH.rank
_RANK = SEVERITY_RANK
#: What ``reasons`` counts an account under when none of its revision's reasons reaches medium.
NO_REASON = "(no reason at medium)"


class CampaignEval(BaseModel):
    """Detection of one labelled campaign."""

    campaign_id: str
    family: str
    campaign_type: str
    n_accounts: int
    n_detected: int
    #: Members named by an alert of severity high or above.
    n_detected_high: int = 0
    recall: float
    start_ts: str
    first_detected_ts: str | None
    #: First qualifying alert naming any member, minus the campaign start, in hours.
    ttd_hours: float | None
    #: Median over detected members of (detection time - the account's first request), in hours.
    median_account_ttd_hours: float | None
    #: Detected members whose alert's detected_event_ts precedes their first request (grown clusters).
    n_alerted_before_first_request: int = 0
    #: Detected members per reason name of the revision that first named them (most first).
    reasons: dict[str, int] = {}


class PersonaEval(BaseModel):
    """False positives on one honest persona."""

    persona: str
    n_accounts: int
    flagged_medium: int
    flagged_high: int
    fp_rate: float
    fp_rate_high: float
    #: Flagged accounts per reason name of the revision that first named them (most first).
    reasons: dict[str, int] = {}


class OverallEval(BaseModel):
    """Account-level confusion counts at severity medium or above (labelled accounts only)."""

    n_accounts: int
    n_attackers: int
    n_benign: int
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int
    precision: float | None
    recall: float | None
    false_positive_rate: float | None


class EvalResult(BaseModel):
    """Everything ``evaluate`` reports."""

    labels_path: str
    alerts_path: str
    #: Alert records read: each episode's first record and its updates.
    n_revisions: int
    #: Alert episodes (the counting unit: distinct alert_id).
    n_episodes: int
    #: Episodes by the severity of their latest (highest) revision.
    episodes_by_severity: dict[str, int]
    campaigns: list[CampaignEval]
    personas: list[PersonaEval]
    overall: OverallEval
    #: Flagged (>= medium) accounts that the labels do not know.
    unlabelled_flagged: int
    unlabelled_flagged_ids: list[str]


def _ts(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp without offset: {value!r}")
    return dt


def _hours(a: datetime, b: datetime) -> float:
    return round((a - b).total_seconds() / 3600.0, 4)


class _Detections:
    """Per account: earliest detection at >= medium, whether ever >= high; per alert: final severity."""

    def __init__(self) -> None:
        self.first: dict[str, datetime] = {}
        #: Per account: the reason names of the revision that set ``first``.
        self.why: dict[str, tuple[str, ...]] = {}
        self.high: set[str] = set()
        self.latest: dict[str, tuple[int, str]] = {}
        self.records = 0

    def add(self, alert: dict[str, Any]) -> None:
        """Account for one alert record (one revision)."""
        sev = alert["severity"]
        if sev not in _RANK:
            raise ValueError(f"unknown severity {sev!r}")
        ids = alert["account_ids"]
        if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
            raise ValueError("account_ids must be a list of strings")
        revision = int(alert.get("revision") or 1)
        alert_id = str(alert["alert_id"])
        if alert_id not in self.latest or revision >= self.latest[alert_id][0]:
            self.latest[alert_id] = (revision, sev)
        self.records += 1
        if _RANK[sev] < _MEDIUM:
            return
        evidence = alert.get("evidence") or {}
        when = _ts(evidence.get("revision_event_ts") or alert["detected_event_ts"])
        names = _named_by(alert.get("reasons") or [], sev)
        for acct in ids:
            if acct not in self.first or when < self.first[acct]:
                self.first[acct] = when
                self.why[acct] = names
            if _RANK[sev] >= _HIGH:
                self.high.add(acct)


def _named_by(reasons: list[Any], severity: str) -> tuple[str, ...]:
    """The names of a revision's reasons at medium or above (a reason without a severity: the
    alert's), the evidence axes' notes aside; ``NO_REASON`` when there is none."""
    names = set()
    for r in reasons:
        if not isinstance(r, dict) or str(r.get("name", "")).startswith(AXIS_PREFIX):
            continue
        level = r.get("severity") or severity
        if _RANK.get(level, 0) >= _MEDIUM:
            names.add(str(r.get("name")))
    return tuple(sorted(names)) or (NO_REASON,)


def count_reasons(accounts: list[str], why: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Accounts per reason name (an account under every name it carries), most first, then by name."""
    return most_first(Counter(name for a in accounts for name in why.get(a, ())))


def most_first(counts: Mapping[str, int]) -> dict[str, int]:
    """``counts`` ordered by count, most first, then by name."""
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _read_alerts(path: Path) -> _Detections:
    det = _Detections()
    errors: list[str] = []
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
                det.add(obj)
            except (ValueError, KeyError, TypeError) as exc:
                errors.append(f"{path}:{lineno}: {type(exc).__name__}: {exc}")
    if errors:
        more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
        raise ValueError("bad alert records:\n" + "\n".join(errors[:20]) + more)
    return det


def _campaign(
    cid: str, spec: dict[str, Any], members: list[str], accounts: dict[str, Any], det: _Detections
) -> CampaignEval:
    start = _ts(spec["start_ts"])
    hits: dict[str, datetime] = {}
    lifted = 0
    for m in members:
        if m not in det.first:
            continue
        seen = _ts(accounts[m]["first_ts"]) if accounts[m].get("first_ts") else None
        lifted += seen is not None and det.first[m] < seen
        hits[m] = max(det.first[m], seen) if seen is not None else det.first[m]
    first = min(hits.values()) if hits else None
    per_account = [_hours(t, _ts(accounts[m].get("first_ts") or spec["start_ts"])) for m, t in hits.items()]
    n = len(members)
    return CampaignEval(
        campaign_id=cid,
        family=str(spec.get("family")),
        campaign_type=str(spec.get("campaign_type")),
        n_accounts=n,
        n_detected=len(hits),
        recall=len(hits) / n if n else 0.0,
        start_ts=str(spec["start_ts"]),
        first_detected_ts=first.isoformat().replace("+00:00", "Z") if first else None,
        ttd_hours=_hours(first, start) if first else None,
        median_account_ttd_hours=round(statistics.median(per_account), 4) if per_account else None,
        n_alerted_before_first_request=lifted,
        n_detected_high=sum(1 for m in members if m in det.high),
        reasons=count_reasons(sorted(hits), det.why),
    )


def evaluate(labels_path: Path, alerts_path: Path) -> EvalResult:
    """Score the alerts in ``alerts_path`` (JSON Lines, alert contract) against ``labels_path``
    (the simulator's labels.json)."""
    labels = orjson.loads(Path(labels_path).read_bytes())
    accounts: dict[str, Any] = labels["accounts"]
    det = _read_alerts(Path(alerts_path))
    flagged = set(det.first)

    members: dict[str, list[str]] = {cid: [] for cid in labels.get("campaigns", {})}
    personas: dict[str, list[str]] = {}
    for acct, info in sorted(accounts.items()):
        if info.get("attacker"):
            members.setdefault(str(info.get("campaign_id")), []).append(acct)
        else:
            personas.setdefault(str(info.get("persona")), []).append(acct)

    campaigns = [
        _campaign(cid, labels["campaigns"].get(cid, {"start_ts": labels["start"]}), m, accounts, det)
        for cid, m in sorted(members.items())
    ]
    persona_rows = []
    for name, accts in sorted(personas.items()):
        fm = sum(1 for a in accts if a in flagged)
        fh = sum(1 for a in accts if a in det.high and a in flagged)
        persona_rows.append(
            PersonaEval(
                persona=name,
                n_accounts=len(accts),
                flagged_medium=fm,
                flagged_high=fh,
                fp_rate=fm / len(accts),
                fp_rate_high=fh / len(accts),
                reasons=count_reasons([a for a in accts if a in flagged], det.why),
            )
        )

    attackers = {a for a, i in accounts.items() if i.get("attacker")}
    benign = set(accounts) - attackers
    tp, fp = len(attackers & flagged), len(benign & flagged)
    overall = OverallEval(
        n_accounts=len(accounts),
        n_attackers=len(attackers),
        n_benign=len(benign),
        true_positives=tp,
        false_positives=fp,
        false_negatives=len(attackers) - tp,
        true_negatives=len(benign) - fp,
        precision=tp / (tp + fp) if tp + fp else None,
        recall=tp / len(attackers) if attackers else None,
        false_positive_rate=fp / len(benign) if benign else None,
    )
    by_sev = {s.value: 0 for s in SEVERITIES}
    for _rev, sev in det.latest.values():
        by_sev[sev] += 1
    unknown = sorted(flagged - set(accounts))
    return EvalResult(
        labels_path=str(labels_path),
        alerts_path=str(alerts_path),
        n_revisions=det.records,
        n_episodes=len(det.latest),
        episodes_by_severity=by_sev,
        campaigns=campaigns,
        personas=persona_rows,
        overall=overall,
        unlabelled_flagged=len(unknown),
        unlabelled_flagged_ids=unknown[:50],
    )


def _f(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.2f}"


def top_reasons(reasons: dict[str, int], n: int = 3) -> str:
    """The ``n`` reason names that named most accounts, with their counts ("" when none)."""
    shown = [f"{name} {count}" for name, count in list(reasons.items())[:n]]
    more = len(reasons) - n
    return ", ".join(shown) + (f", +{more} more" if more > 0 else "")


def render_table(result: EvalResult) -> Table:
    """The result as one rich table: campaigns (recall, time-to-detect), then honest personas (false
    positives), then the overall line; alert counts in the caption."""
    sev = ", ".join(f"{k} {v}" for k, v in result.episodes_by_severity.items())
    t = Table(
        title="Detection against labels (flagged: alert >= medium)",
        caption=f"alert episodes {result.n_episodes} ({sev}), revisions {result.n_revisions}; "
        f"flagged but unlabelled {result.unlabelled_flagged}",
    )
    t.add_column("campaign / persona", no_wrap=True)
    for col in ("accts", "flagged", ">=high", "recall | FP", "TTD h", "TTD med h"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("named by (accounts)")
    for c in result.campaigns:
        t.add_row(
            f"{c.family} {c.campaign_id}",
            str(c.n_accounts),
            str(c.n_detected),
            str(c.n_detected_high),
            _f(c.recall, True),
            _f(c.ttd_hours),
            _f(c.median_account_ttd_hours),
            top_reasons(c.reasons),
        )
    t.add_section()
    for p in result.personas:
        t.add_row(
            p.persona,
            str(p.n_accounts),
            str(p.flagged_medium),
            str(p.flagged_high),
            _f(p.fp_rate, True),
            "",
            "",
            top_reasons(p.reasons),
        )
    t.add_section()
    o = result.overall
    t.add_row(
        f"overall (precision {_f(o.precision, True)})",
        str(o.n_accounts),
        str(o.true_positives + o.false_positives),
        "",
        f"{_f(o.recall, True)} | {_f(o.false_positive_rate, True)}",
        "",
        "",
        "",
    )
    return t
