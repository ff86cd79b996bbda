"""Regenerate the golden scenarios in tests/scenarios/ from the simulator (deterministic).

One folder per campaign family and per honest persona: ``events.jsonl.gz`` holds that group's
accounts plus the same sample of ordinary background accounts, ``expected.yaml`` states what the
engine must alert (or must not). The expectations are requirements, not a recording of today's
output: a family case must be caught at medium or above for most of its accounts with the family's
campaign type; a persona case must never be accused at medium or above.

    .venv/bin/python scripts/make_scenarios.py [--out tests/scenarios]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
from pathlib import Path

import polars as pl
import yaml

from detector.lab.simulate import CAMPAIGN_TYPES, FAMILIES, PERSONAS, simulate

SEED, DAYS, SCALE = 21, 1.5, 0.15
BACKGROUND = 60  # casual accounts mixed into every case
#: Personas the product brief names as looking like attackers: never accused at high or above.
PROTECTED = {"eval_harness", "university_nat", "company_card"}


def _write(out: Path, lines: list[bytes], expected: dict[str, object]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(out / "events.jsonl.gz", "wb", mtime=0) as fh:
        fh.write(b"".join(lines))
    (out / "expected.yaml").write_text(yaml.safe_dump(expected, sort_keys=False, width=100))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("tests/scenarios"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sim = Path(tmp)
        simulate(sim, days=DAYS, seed=SEED, scale=SCALE)
        labels = json.loads((sim / "labels.json").read_text())
        accounts: dict[str, dict[str, object]] = labels["accounts"]
        raw = (sim / "events.jsonl").read_bytes().splitlines(keepends=True)
        owner = pl.read_ndjson(sim / "events.jsonl", schema={"account_id": pl.String})["account_id"].to_list()
    casual = sorted(a for a, v in accounts.items() if v["persona"] == "casual")
    background = set(casual[:: max(1, len(casual) // BACKGROUND)][:BACKGROUND])
    source = f"detector simulate --days {DAYS} --seed {SEED} --scale {SCALE}"
    if args.out.exists():
        shutil.rmtree(args.out)
    groups: dict[str, tuple[set[str], dict[str, object]]] = {}
    for family in FAMILIES:
        members = {a for a, v in accounts.items() if v.get("attacker") and v["persona"] == family}
        groups[f"campaign_{family}"] = (
            members,
            {
                "description": f"A {family} campaign among ordinary users.",
                "source": source,
                "expect": {
                    "attackers": sorted(members),
                    "min_severity": "medium",
                    "min_recall": 0.9,
                    "campaign_type": CAMPAIGN_TYPES[family],
                    "honest_flagged_max": 0,
                },
            },
        )
    for persona in PERSONAS:
        members = {a for a, v in accounts.items() if not v.get("attacker") and v["persona"] == persona}
        groups[f"honest_{persona}"] = (
            members,
            {
                "description": f"Honest {persona} accounts among ordinary users: no accusation.",
                "source": source,
                "expect": {
                    "attackers": [],
                    "honest_flagged_max": 0,
                    "never_high": sorted(members) if persona in PROTECTED else [],
                },
            },
        )
    for name, (members, expected) in groups.items():
        if not members:
            raise SystemExit(f"{name}: the simulation has no such accounts; raise SCALE")
        keep = members | background
        lines = [line for line, acct in zip(raw, owner, strict=True) if acct in keep]
        _write(args.out / name, lines, expected)
        print(f"{name}: {len(members)} accounts, {len(lines)} events")


if __name__ == "__main__":
    main()
