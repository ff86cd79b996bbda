"""The response policy: alerts -> graduated actions. Raw YAML, then a checked ``Policy``, failing at load.

A policy file holds a version, a mode (``enforce`` or ``dry_run``), the action catalogue (each action's
duration, the reason code the API returns, the text a customer sees and the unblock path) and an
ordered list of rules. Each rule matches alerts on severity x kind x campaign type x evidence axis; the
first rule that matches picks the action, and an alert no rule matches gets ``default``. Unknown keys,
unknown actions and bad durations are rejected with one line naming the file, the line and the key.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from detector.contracts import Alert, Severity
from detector.detect.rules.source import read_rule_yaml
from detector.errors import DetectorError

ActionName = Literal["monitor", "step_up_verification", "rate_limit", "fallback_model", "suspend"]
#: Actions from least to most severe (a later, stronger decision replaces a weaker one in force).
ACTION_RANK: dict[str, int] = {
    "monitor": 0,
    "step_up_verification": 1,
    "rate_limit": 2,
    "fallback_model": 3,
    "suspend": 4,
}
_DURATION = re.compile(r"^(\d+)\s*(m|h|d)$")
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


class PolicyError(DetectorError, ValueError):
    """A policy file problem: one line, ``path:line:column: key: message``."""


def parse_duration(text: str) -> timedelta:
    """``"90m"``, ``"24h"``, ``"7d"`` -> timedelta (at least one minute)."""
    m = _DURATION.match(str(text).strip())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"duration {text!r} is not like 90m, 24h or 7d")
    return int(m.group(1)) * _UNIT[m.group(2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionSpec(_Strict):
    """What one action means for the customer, for how long, and how it is lifted."""

    duration: timedelta
    #: Returned on the API with every affected response (e.g. an error or a header).
    reason_code: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9_-]{2,40}$")]
    #: The visible explanation that goes with the code (never prompt content).
    reason: Annotated[str, Field(min_length=1)]
    #: How the customer gets the action lifted.
    unblock: Annotated[str, Field(min_length=1)]
    #: ``rate_limit`` only: requests per minute allowed while the decision holds.
    requests_per_minute: Annotated[int, Field(ge=1)] | None = None
    #: ``fallback_model`` only: the model requests are routed to (one without visible reasoning).
    fallback_model: Annotated[str, Field(min_length=1)] | None = None

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value


class Bound(_Strict):
    """A condition on one evidence value: numeric ``gte`` and/or ``lte``, or a flag ``is`` (true/false)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    gte: float | None = None
    lte: float | None = None
    flag: bool | None = Field(default=None, alias="is")

    @model_validator(mode="after")
    def _one(self) -> Bound:
        if self.gte is None and self.lte is None and self.flag is None:
            raise ValueError("give gte, lte, both, or is")
        return self

    def holds(self, value: object) -> bool:
        """True when ``value`` is inside the bounds, or is the flag (a missing value never holds)."""
        if self.flag is not None:
            return isinstance(value, bool) and value is self.flag
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return (self.gte is None or value >= self.gte) and (self.lte is None or value <= self.lte)


class Match(_Strict):
    """Which alerts a rule applies to; an absent field matches anything."""

    severity: list[Severity] | None = None
    kind: list[Literal["account", "cluster"]] | None = None
    #: Campaign types; ``null`` in the list matches alerts without one.
    campaign_type: list[str | None] | None = None
    #: Evidence axes: alert evidence values (dotted paths) with bounds, all of which must hold.
    evidence: dict[str, Bound] | None = None
    #: At least one of these rules (or ``model:<name>``) among the alert's reasons.
    reasons_any: list[str] | None = None

    def matches(self, alert: Alert) -> bool:
        """True when every given condition holds for ``alert``."""
        if self.severity is not None and alert.severity not in self.severity:
            return False
        if self.kind is not None and alert.kind not in self.kind:
            return False
        if self.campaign_type is not None and alert.campaign_type not in self.campaign_type:
            return False
        if self.evidence is not None:
            ev = alert.evidence or {}
            if not all(b.holds(_dig(ev, path)) for path, b in self.evidence.items()):
                return False
        if self.reasons_any is not None:
            names = {r.name if r.source == "rule" else f"model:{r.name}" for r in alert.reasons}
            if not names & set(self.reasons_any):
                return False
        return True


class PolicyRule(_Strict):
    """One line of the policy: when an alert matches, take ``action``."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    description: str | None = None
    when: Match
    action: ActionName


class Policy(_Strict):
    """A checked policy: ``action_for`` maps an alert to (rule id, action name, action spec)."""

    version: Annotated[str, Field(min_length=1, max_length=64)]
    mode: Literal["enforce", "dry_run"] = "enforce"
    description: str | None = None
    actions: dict[ActionName, ActionSpec]
    rules: list[PolicyRule]
    default: ActionName = "monitor"

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        used = {r.action for r in self.rules} | {self.default}
        missing = sorted(used - set(self.actions))
        if missing:
            raise ValueError(f"actions used but not defined: {', '.join(missing)}")
        ids = [r.id for r in self.rules]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate rule ids: {', '.join(dup)}")
        rl = self.actions.get("rate_limit")
        if rl is not None and rl.requests_per_minute is None:
            raise ValueError("actions.rate_limit needs requests_per_minute")
        fb = self.actions.get("fallback_model")
        if fb is not None and fb.fallback_model is None:
            raise ValueError("actions.fallback_model needs fallback_model")
        return self

    def action_for(self, alert: Alert) -> tuple[str, str, ActionSpec]:
        """The first matching rule's (id, action, spec); ``("default", default, ...)`` when none matches."""
        for rule in self.rules:
            if rule.when.matches(alert):
                return rule.id, rule.action, self.actions[rule.action]
        return "default", self.default, self.actions[self.default]


def _dig(data: dict[str, Any], path: str) -> object:
    cur: object = data
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


#: The policy shipped with the package (used when no ``--policy`` is given).
DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "data" / "policy_default.yaml"


def load_policy(path: Path | None = None) -> Policy:
    """Read and check a policy file; raise ``PolicyError`` (one line with file, line and key) if bad."""
    path = path or DEFAULT_POLICY
    source, errors = read_rule_yaml(path)
    if source is None:
        e = errors[0]
        raise PolicyError(f"{e.location}: {e.message}")
    try:
        return Policy.model_validate(source.data)
    except ValidationError as exc:
        d = exc.errors()[0]
        loc = [p for p in d["loc"] if isinstance(p, str | int)]
        unknown = d["type"] == "extra_forbidden"
        node = source.node_at(loc, key=unknown)
        key = ".".join(map(str, loc)) or "policy"
        msg = "unknown key" if unknown else d["msg"]
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise PolicyError(
            f"{path}:{node.start_mark.line + 1}:{node.start_mark.column + 1}: {key}: {msg}{more}"
        ) from None
