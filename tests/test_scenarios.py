"""Golden scenarios: every folder under tests/scenarios/ is a case (input events, expected alerts).

``scripts/make_scenarios.py`` writes them from the simulator: one per campaign family (caught, with
the right campaign type, no honest account swept in) and one per honest persona (never accused; the
personas the brief names as attacker look-alikes never at high or above). Adding a folder adds a case.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from detector.app import build_engine
from detector.contracts import SEVERITY_RANK
from detector.runtime.replay import replay

ROOT = Path(__file__).resolve().parents[1]
CASES = sorted(p for p in (ROOT / "tests" / "scenarios").iterdir() if (p / "expected.yaml").is_file())


def test_every_family_and_persona_has_a_case() -> None:
    from detector.lab.simulate import FAMILIES, PERSONAS

    names = {c.name for c in CASES}
    assert {f"campaign_{f}" for f in FAMILIES} <= names
    assert {f"honest_{p}" for p in PERSONAS} <= names


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_scenario(case: Path, tmp_path: Path) -> None:
    expect = yaml.safe_load((case / "expected.yaml").read_text())["expect"]
    out = tmp_path / "alerts.jsonl"
    summary = replay([case / "events.jsonl.gz"], build_engine(ROOT / "rules"), out)
    assert summary.events > 0 and not summary.rejects
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    attackers = set(expect["attackers"])
    floor = SEVERITY_RANK[expect.get("min_severity", "medium")]
    flagged = {a for al in alerts if SEVERITY_RANK[al["severity"]] >= floor for a in al["account_ids"]}

    honest_flagged = flagged - attackers
    assert len(honest_flagged) <= expect["honest_flagged_max"], sorted(honest_flagged)
    high = {
        a
        for al in alerts
        if SEVERITY_RANK[al["severity"]] >= SEVERITY_RANK["high"]
        for a in al["account_ids"]
    }
    assert not high & set(expect.get("never_high", [])), sorted(high & set(expect["never_high"]))
    if attackers:
        recall = len(flagged & attackers) / len(attackers)
        assert recall >= expect["min_recall"], f"recall {recall:.2f}"
        types = {al["campaign_type"] for al in alerts if set(al["account_ids"]) & attackers}
        assert expect["campaign_type"] in types, types
