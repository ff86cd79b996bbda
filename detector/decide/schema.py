"""The decision contract: ``contracts/decision.schema.json`` is generated from ``Decision`` and committed;
``tests/test_decide.py`` fails when the two disagree (regenerate with ``detector policy schema``)."""

from __future__ import annotations

from typing import Any

from detector.decide.decisions import Decision

SCHEMA_ID = "https://github.com/distillation-detector/contracts/decision.schema.json"


def decision_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one decision record."""
    schema = Decision.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "description": "One response decision (apply or lift) for one account, contract version 1.",
    }
