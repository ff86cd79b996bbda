"""Peer smoke test: Glasswally's own labelled set (converted to our contract, ../shared/peers).

The set is easy (the peer README says so): a serious detector finds all 30 attackers and accuses none
of the 201 benign accounts, with the operator's IP-intelligence files (as a deployment would) and
without them (the extraction axis, not an address flag, must carry it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.app import build_engine
from detector.contracts import SEVERITY_RANK
from detector.runtime.replay import replay

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("intel", [True, False], ids=["ip-intel", "no-ip-intel"])
def test_glasswally_labelled_set(shared_dir: Path, tmp_path: Path, intel: bool) -> None:
    """Found in full with the operator's IP intelligence and without it: no one signal carries it."""
    peer = shared_dir / "peers" / "glasswally"
    labels = [json.loads(x) for x in (peer / "labels.jsonl").read_text().splitlines()]
    attackers = {r["account_id"] for r in labels if r["is_attacker"]}
    benign = {r["account_id"] for r in labels if not r["is_attacker"]}
    engine = build_engine(ROOT / "rules", ip_intel=shared_dir / "data" / "ip_intel" if intel else None)
    out = tmp_path / "alerts.jsonl"
    summary = replay([peer / "events_asn_ip.jsonl"], engine, out)
    assert summary.events == 5000 and not summary.rejects
    alerts = [json.loads(x) for x in out.read_text().splitlines()]
    flagged = {a for al in alerts if SEVERITY_RANK[al["severity"]] >= 2 for a in al["account_ids"]}
    assert len(attackers) == 30 and len(benign) == 201
    assert flagged & attackers == attackers
    assert not flagged & benign
    assert all(al["campaign_type"] == "chain_of_thought" for al in alerts if al["severity"] != "low")
