"""Labelled traffic simulator: honest personas and distillation campaigns as gateway events.

``simulate(out_dir, days, seed)`` writes ``events.jsonl``, ``events.parquet`` and ``labels.json``;
``SimParams`` holds every knob; ``simhash64`` is the SimHash a text-free gateway would ship.
"""

from detector.lab.simulate.core import SimSummary, simulate
from detector.lab.simulate.params import (
    CAMPAIGN_TYPES,
    FAMILIES,
    PERSONAS,
    FamilyParams,
    PersonaParams,
    SimParams,
)
from detector.lab.simulate.simhash import simhash64, simhash64_hex

__all__ = [
    "CAMPAIGN_TYPES",
    "FAMILIES",
    "PERSONAS",
    "FamilyParams",
    "PersonaParams",
    "SimParams",
    "SimSummary",
    "simhash64",
    "simhash64_hex",
    "simulate",
]
