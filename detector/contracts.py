"""The input and output contracts as pydantic models.

They mirror ``contracts/gateway-event.schema.json`` and ``contracts/alert.schema.json`` (shipped beside
the project in ``shared/contracts``); ``tests/test_contracts.py`` compares the two so drift fails CI.
The hot path does not validate event by event with these models: ``detector.decode`` validates
whole batches column-wise. These models explain a reject (field-named reasons), build alerts, and
document the contract in code.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Strict, field_validator

# Strict scalars: the contract's JSON types are exact ("412" is not an integer, 1 is not a string).
# Timestamps stay lax so that RFC 3339 text parses; AwareDatetime still refuses naive ones.
SStr = Annotated[str, Strict()]
SBool = Annotated[bool, Strict()]
SFloat = Annotated[float, Strict()]
Str128 = Annotated[str, Strict(), Field(max_length=128)]
NonNegInt = Annotated[int, Strict(), Field(ge=0)]


class _Open(BaseModel):
    """Unknown fields are allowed and ignored (gateways may add fields)."""

    model_config = ConfigDict(extra="ignore")


class Client(_Open):
    ip: SStr
    user_agent: Annotated[str, Strict(), Field(max_length=1024)] | None = None
    tls_fingerprint: Annotated[str, Strict(), Field(max_length=256)] | None = None
    sdk: Str128 | None = None

    @field_validator("ip")
    @classmethod
    def _ip(cls, v: str) -> str:
        ipaddress.ip_address(v)  # raises ValueError naming the bad address
        if "%" in v:  # ipaddress takes "fe80::1%eth0"; the contract's ipv6 format (RFC 4291 text) does not
            raise ValueError(f"{v!r}: a zone index is not part of a client address")
        return v


Tier = Literal["free", "standard", "enterprise", "education", "research", "startup", "reseller"]


class Account(_Open):
    created_at: AwareDatetime | None = None
    payment_fingerprint: Annotated[str, Strict(), Field(max_length=256)] | None = None
    billing_country: Annotated[str, Strict(), Field(max_length=2)] | None = None
    tier: Tier | None = None
    verified: SBool | None = None
    reseller_id: Str128 | None = None


class Usage(_Open):
    input_tokens: NonNegInt
    output_tokens: NonNegInt
    reasoning_tokens: NonNegInt | None = None


class Params(_Open):
    max_tokens: NonNegInt | None = None
    temperature: Annotated[float, Strict(), Field(ge=0)] | None = None
    top_p: Annotated[float, Strict(), Field(ge=0, le=1)] | None = None
    n: Annotated[int, Strict(), Field(ge=1)] | None = None
    stream: SBool | None = None
    logprobs: SBool | None = None
    top_logprobs: NonNegInt | None = None
    tools: NonNegInt | None = None
    thinking: SBool | None = None
    system_prompt_hash: Str128 | None = None


class Prompt(_Open):
    text: SStr | None = None
    turns: NonNegInt | None = None
    chars: NonNegInt | None = None
    simhash: Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{16}$")] | None = None
    lang: Annotated[str, Strict(), Field(max_length=16)] | None = None


class Response(_Open):
    stop_reason: Annotated[str, Strict(), Field(max_length=64)] | None = None
    refusal: SBool | None = None
    has_reasoning: SBool | None = None


class GatewayEvent(_Open):
    """One API request as the gateway logs it (contract version 1)."""

    schema_version: Literal[1]
    request_id: Annotated[str, Strict(), Field(min_length=1, max_length=128)]
    ts: AwareDatetime
    account_id: Annotated[str, Strict(), Field(min_length=1, max_length=128)]
    org_id: Str128 | None = None
    api_key_id: Str128 | None = None
    model: Annotated[str, Strict(), Field(min_length=1, max_length=128)]
    endpoint: Annotated[str, Strict(), Field(max_length=256)] | None = None
    status: Annotated[int, Strict(), Field(ge=100, le=599)] | None = None
    latency_ms: Annotated[float, Strict(), Field(ge=0)] | None = None
    client: Client
    account: Account | None = None
    usage: Usage
    params: Params | None = None
    prompt: Prompt | None = None
    response: Response | None = None


# ---------------------------------------------------------------------------------------------------
# The vocabulary, defined once: every other module imports these.


class Severity(StrEnum):
    """How strongly an alert accuses, ordered ``low < medium < high < critical`` (pySigma's ordered
    ``SigmaLevel``). A member is its lower-case name (it serialises as plain text), compares by rank, and
    carries its ``rank`` (1..4) and its ``default_score``."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """1 (low) .. 4 (critical)."""
        return SEVERITY_RANK[self.value]

    @property
    def default_score(self) -> float:
        """The score a rule hit of this severity carries when the rule gives none."""
        return DEFAULT_SCORE[self.value]

    @property
    def text(self) -> SeverityName:
        """The name as a plain ``SeverityName`` literal."""
        return self.value

    @classmethod
    def of_rank(cls, rank: int) -> Severity:
        """The severity whose ``rank`` is ``rank``."""
        return SEVERITIES[rank - 1]

    # ordered by rank, not alphabetically (a plain ``str`` on the other side is read as a severity)
    def __lt__(self, other: object) -> bool:
        return self.rank < Severity(other).rank if isinstance(other, str) else NotImplemented

    def __le__(self, other: object) -> bool:
        return self.rank <= Severity(other).rank if isinstance(other, str) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return self.rank > Severity(other).rank if isinstance(other, str) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.rank >= Severity(other).rank if isinstance(other, str) else NotImplemented


#: A severity as plain text, for contracts written as JSON Schema enums (``Decision``); the same four
#: names as ``Severity`` (``tests/test_vocabulary.py`` checks).
SeverityName = Literal["low", "medium", "high", "critical"]

#: Every severity, lowest first.
SEVERITIES: tuple[Severity, ...] = tuple(Severity)
#: Severity name -> rank, 1 (low) .. 4 (critical); plain-text keys, for polars expressions.
SEVERITY_RANK: dict[str, int] = {s.value: i for i, s in enumerate(SEVERITIES, start=1)}
#: Severity name -> the score of a hit whose rule gives none: its place on a 0..1 scale (rank / 4, so
#: critical outranks high, ...).
DEFAULT_SCORE: dict[str, float] = {name: rank / len(SEVERITIES) for name, rank in SEVERITY_RANK.items()}

#: What an alert (and a rule) is about: one account, or a cluster of linked accounts.
Kind = Literal["account", "cluster"]
KINDS: tuple[Kind, ...] = get_args(Kind)
#: A rule's target: the kind of subject it judges.
Target = Kind

#: Linkage families: the kinds of value two accounts can share (``detector.window.state`` computes each
#: family's key; ``detector.window.link`` links on them). The order is the link graph's family code.
LinkFamily = Literal["payment", "reseller", "ip", "client", "sysprompt", "template", "signup"]
LINK_FAMILIES: tuple[LinkFamily, ...] = get_args(LinkFamily)


#: Optional fields this build adds to the alert contract, as JSON paths. The contract allows them (it
#: never sets ``additionalProperties: false``); ``tests/test_contracts.py`` checks both facts.
ALERT_EXTENSIONS: frozenset[str] = frozenset(
    {"$.output", "$.reasons[].title", "$.reasons[].output", "$.reasons[].severity"}
)


class Reason(BaseModel):
    """Why an alert fired: one rule hit or one model score.

    ``title`` and ``output`` are the rule's title and its rendered sentence; ``severity`` the level the
    hit carried. An alert's reasons are those of its whole episode, not only of its latest revision.
    """

    model_config = ConfigDict(extra="forbid")

    source: Literal["rule", "model"]
    name: str
    score: float | None = None
    detail: str | None = None
    title: str | None = None
    output: str | None = None
    severity: Severity | None = None


class Alert(BaseModel):
    """One alert (contract version 1). Same finding, same ``alert_id``; growth bumps ``revision``."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    alert_id: Annotated[str, Strict(), Field(min_length=1)]
    revision: Annotated[int, Strict(), Field(ge=1)]
    kind: Kind
    subject: str
    account_ids: Annotated[list[str], Field(min_length=1)]
    severity: Severity
    score: Annotated[float, Strict(), Field(ge=0, le=1)]
    campaign_type: str | None = None
    first_event_ts: AwareDatetime
    detected_event_ts: AwareDatetime
    emitted_at: AwareDatetime | None = None
    reasons: Annotated[list[Reason], Field(min_length=1)]
    evidence: dict[str, Any] | None = None
    #: One readable sentence: the rendered ``output`` of the episode's strongest rule.
    output: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The alert as a JSON-ready dict with RFC 3339 'Z' timestamps and no ``emitted_at`` when unset."""
        out = self.model_dump(mode="json", exclude_none=False)
        for key in ("first_event_ts", "detected_event_ts", "emitted_at"):
            if out.get(key) is not None:
                out[key] = out[key].replace("+00:00", "Z")
        if out.get("emitted_at") is None:
            out.pop("emitted_at", None)
        return out
