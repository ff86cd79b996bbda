"""The raw rule spec: exactly what a rule file may say, checked key by key before anything compiles."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

from detector.contracts import Severity, Target

Mode = Literal["enforce", "shadow"]
Expect = Literal["fire", "no_fire"]
#: Sigma's rule status: how far a rule has been proven (``stable`` rules have run in production).
Status = Literal["stable", "test", "experimental", "deprecated", "unsupported"]


class InlineTestSpec(BaseModel):
    """One inline test: feature values (features not named are null) and whether the rule must fire."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = Field(min_length=1)
    features: dict[str, Any] = Field(default_factory=dict)
    expect: Expect


class RuleSpec(BaseModel):
    """One rule file, as written. ``id`` must equal the file name's stem."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    severity: Annotated[Severity, Strict(False)]  # the YAML text "high" names Severity.HIGH
    target: Target
    condition: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    mode: Mode = "enforce"
    campaign_type: str | None = Field(default=None, min_length=1)
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    tests: list[InlineTestSpec] = Field(default_factory=list)
    detail: list[str] = Field(default_factory=list)
    #: The sentence an analyst reads, with ``{feature}`` placeholders (see ``detector.detect.rules.output``).
    output: str | None = Field(default=None, min_length=1)
    status: Status = "experimental"
    #: Where the pattern is described (disclosures, papers, runbooks): Sigma's ``references``.
    references: list[str] = Field(default_factory=list)
    #: Honest traffic that can fire the rule, in words: Sigma's ``falsepositives``.
    falsepositives: list[str] = Field(default_factory=list)

    @property
    def effective_score(self) -> float:
        """``score`` if given, else the severity's default."""
        return self.score if self.score is not None else self.severity.default_score


RULE_KEYS: tuple[str, ...] = tuple(RuleSpec.model_fields)
TEST_KEYS: tuple[str, ...] = tuple(InlineTestSpec.model_fields)
