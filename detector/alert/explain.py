"""Reasons an analyst can read: each rule hit with its title, its rendered ``output`` sentence and its
severity; each model score with its explanation.

A verdict row carries its hits as structs (rule id, severity, score, detail) plus every feature of
the subject at that tick, so a rule's ``output`` placeholders render from the very values that made it
fire. Only feature values are rendered: no prompt text reaches a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detector.contracts import Reason
from detector.detect.fusion import MODEL_PREFIX
from detector.detect.rules import RuleSet
from detector.detect.rules.output import render_output


def describe(
    structs: list[dict[str, Any]], rules: RuleSet | None, features: Mapping[str, Any]
) -> list[Reason]:
    """The reasons of one verdict row, in the row's order (strongest first)."""
    out: list[Reason] = []
    for s in structs:
        rid: str = s["rule_id"]
        severity = s.get("severity")
        if rid.startswith(MODEL_PREFIX):
            out.append(
                Reason(
                    source="model",
                    name=rid[len(MODEL_PREFIX) :],
                    score=s["score"],
                    detail=s["detail"],
                    severity=severity,
                )
            )
            continue
        rule = rules.get(rid) if rules is not None else None
        out.append(
            Reason(
                source="rule",
                name=rid,
                score=s["score"],
                detail=s["detail"],
                title=rule.title if rule is not None else None,
                output=render_output(rule.output, features) if rule is not None and rule.output else None,
                severity=severity,
            )
        )
    return out
