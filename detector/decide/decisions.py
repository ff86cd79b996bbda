"""Decisions: the pure step between alerts and sinks (alerts in -> decisions and lifts out).

For every alert revision the policy picks an action; each account the alert names gets one
``apply`` decision unless a decision at least as strong is already in force for it (a stronger one
replaces a weaker one: the gateway keeps the latest decision per account). A decision expires at its
``expires_event_ts`` (event time, so a replay expires decisions as the daemon did) and a ``lift`` is
emitted then; a withdrawn alert (an analyst's false positive) lifts its decisions at once.

``decision_id`` is a hash of (alert id, revision, account, action, policy version); alert ids and
revisions are themselves deterministic, so a replay, or a daemon restarted after kill -9, emits the
same ids and a gateway can de-duplicate on them. A lift's id hashes the decision it lifts and why.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from detector.contracts import Alert, SeverityName
from detector.decide.policy import ACTION_RANK, ActionName, Policy

LiftReason = Literal["expired", "withdrawn"]


class Decision(BaseModel):
    """One decision for one account (contract version 1): ``op`` is ``apply`` or ``lift``."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    decision_id: Annotated[str, Field(pattern=r"^dc-[0-9a-f]{20}$")]
    op: Literal["apply", "lift"]
    account_id: Annotated[str, Field(min_length=1, max_length=128)]
    action: ActionName
    #: Returned on the API with affected responses.
    reason_code: str
    #: The customer-visible explanation (never prompt content).
    reason: str
    #: How the customer gets the action lifted.
    unblock: str
    requests_per_minute: int | None = None
    fallback_model: str | None = None
    #: Event time the decision was taken (apply) or lifted (lift).
    event_ts: AwareDatetime
    #: Event time an applied decision stops holding on its own (null on a lift).
    expires_event_ts: AwareDatetime | None = None
    #: On a lift: the decision it lifts, and why.
    lifts: Annotated[str, Field(pattern=r"^dc-[0-9a-f]{20}$")] | None = None
    lift_reason: LiftReason | None = None
    alert_id: str
    alert_revision: Annotated[int, Field(ge=1)]
    alert_kind: Literal["account", "cluster"]
    alert_subject: str
    severity: SeverityName
    campaign_type: str | None = None
    policy_version: str
    #: The policy rule that chose the action (``default`` when none matched).
    policy_rule: str
    #: True when the policy (or the run) is in dry-run mode: count it, do not enforce it.
    dry_run: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready, RFC 3339 'Z' timestamps, keys in contract order."""
        out = self.model_dump(mode="json")
        for key in ("event_ts", "expires_event_ts"):
            if out.get(key) is not None:
                out[key] = out[key].replace("+00:00", "Z")
        return out


def _hash(*parts: object) -> str:
    text = "|".join(str(p) for p in parts)
    return "dc-" + hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def decision_id_for(alert_id: str, revision: int, account: str, action: str, policy_version: str) -> str:
    """The idempotent id of an ``apply`` decision."""
    return _hash(alert_id, revision, account, action, policy_version)


def _issued_at(alert: Alert) -> datetime:
    """Event time this revision was decided (``revision_event_ts``; the first revision's time otherwise)."""
    raw = (alert.evidence or {}).get("revision_event_ts")
    if isinstance(raw, datetime):
        return raw
    if isinstance(raw, str):
        return datetime.fromisoformat(raw)
    return alert.detected_event_ts


class DecisionBook:
    """Decisions in force per account; turns alerts into decisions and expiries into lifts.

    ``dry_run`` (or the policy's ``mode: dry_run``) marks every decision ``dry_run`` and counts in
    ``would_enforce`` what would have been enforced, per action.
    """

    def __init__(self, policy: Policy, *, dry_run: bool = False) -> None:
        self.policy = policy
        self.dry_run = dry_run or policy.mode == "dry_run"
        self.active: dict[str, Decision] = {}
        self.applied: Counter[str] = Counter()
        self.lifted: Counter[str] = Counter()
        self.would_enforce: Counter[str] = Counter()

    def on_alerts(self, alerts: list[Alert]) -> list[Decision]:
        """Decisions for ``alerts`` (in emission order), with the lifts that fall due before each."""
        out: list[Decision] = []
        for alert in alerts:
            when = _issued_at(alert)
            out += self.advance(when)
            rule, action, spec = self.policy.action_for(alert)
            for account in alert.account_ids:
                held = self.active.get(account)
                if held is not None and ACTION_RANK[held.action] >= ACTION_RANK[action]:
                    continue  # as strong a decision is already in force
                d = Decision(
                    decision_id=decision_id_for(
                        alert.alert_id, alert.revision, account, action, self.policy.version
                    ),
                    op="apply",
                    account_id=account,
                    action=action,  # type: ignore[arg-type]
                    reason_code=spec.reason_code,
                    reason=spec.reason,
                    unblock=spec.unblock,
                    requests_per_minute=spec.requests_per_minute if action == "rate_limit" else None,
                    fallback_model=spec.fallback_model if action == "fallback_model" else None,
                    event_ts=when,
                    expires_event_ts=when + spec.duration,
                    alert_id=alert.alert_id,
                    alert_revision=alert.revision,
                    alert_kind=alert.kind,
                    alert_subject=alert.subject,
                    severity=alert.severity.text,
                    campaign_type=alert.campaign_type,
                    policy_version=self.policy.version,
                    policy_rule=rule,
                    dry_run=self.dry_run,
                )
                self.active[account] = d
                self.applied[action] += 1
                if self.dry_run and action != "monitor":
                    self.would_enforce[action] += 1
                out.append(d)
        return out

    def advance(self, now: datetime) -> list[Decision]:
        """Lifts for decisions that expired at or before event time ``now`` (in expiry order)."""
        due = [
            d for d in self.active.values() if d.expires_event_ts is not None and d.expires_event_ts <= now
        ]
        due.sort(key=lambda d: (d.expires_event_ts, d.account_id))
        out = []
        for d in due:
            assert d.expires_event_ts is not None
            out.append(self._lift(d, d.expires_event_ts, "expired"))
        return out

    def withdraw(self, alert_id: str, now: datetime) -> list[Decision]:
        """Lift every decision in force that came from ``alert_id`` (an analyst's false positive)."""
        due = sorted((d for d in self.active.values() if d.alert_id == alert_id), key=lambda d: d.account_id)
        return [self._lift(d, now, "withdrawn") for d in due]

    def _lift(self, d: Decision, when: datetime, why: LiftReason) -> Decision:
        del self.active[d.account_id]
        self.lifted[why] += 1
        return d.model_copy(
            update={
                "decision_id": _hash("lift", d.decision_id, why),
                "op": "lift",
                "event_ts": when,
                "expires_event_ts": None,
                "lifts": d.decision_id,
                "lift_reason": why,
            }
        )

    def load_records(self, records: list[dict[str, Any]]) -> datetime | None:
        """Rebuild the decisions in force from a decisions file's records (applies, then lifts);
        returns the newest event time among them (the "now" of that file)."""
        newest: datetime | None = None
        for r in records:
            d = Decision.model_validate(r)
            newest = d.event_ts if newest is None else max(newest, d.event_ts)
            held = self.active.get(d.account_id)
            if d.op == "apply":
                self.active[d.account_id] = d
            elif held is not None and held.decision_id == d.lifts:
                del self.active[d.account_id]
        return newest

    # -- checkpoint -----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-ready state (decisions in force and counters), for a checkpoint."""
        return {
            "active": [d.to_json_dict() for d in self.active.values()],
            "applied": dict(self.applied),
            "lifted": dict(self.lifted),
            "would_enforce": dict(self.would_enforce),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Inverse of ``state``."""
        self.active = {d.account_id: d for d in (Decision.model_validate(x) for x in state.get("active", []))}
        self.applied = Counter(state.get("applied", {}))
        self.lifted = Counter(state.get("lifted", {}))
        self.would_enforce = Counter(state.get("would_enforce", {}))
