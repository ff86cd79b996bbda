"""Indicator sharing round trip on simulated traffic: provider A exports its confirmed clusters as a
STIX 2.1 bundle (validated, no raw customer value in it); provider B imports it and, replaying the same
campaigns under different account ids, detects them no later, some earlier, with no new false positive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from stix2validator import ValidationOptions, validate_string
from typer.testing import CliRunner

from detector.cli import app
from detector.intel.hashing import artefact_hmac
from detector.lab.intel_roundtrip import KEY, run

runner = CliRunner()


@pytest.fixture(scope="module")
def trip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("trip")
    return out, run(out, days=1, scale=0.15, seed=3)


@pytest.mark.slow
def test_bundle_validates_and_holds_no_raw_customer_value(trip: tuple[Path, dict[str, Any]]) -> None:
    out, result = trip
    text = (out / "bundle.json").read_text()
    assert validate_string(text, ValidationOptions(version="2.1")).is_valid
    bundle = json.loads(text)
    indicators = [o for o in bundle["objects"] if o["type"] == "indicator"]
    assert len(indicators) == result["indicators"] > 0
    assert all(0 <= i["confidence"] <= 100 and i["object_marking_refs"] for i in indicators)
    assert any(o["type"] == "marking-definition" for o in bundle["objects"])
    ev = pl.read_parquet(out / "a" / "events.parquet", columns=["account_id", "client", "account"])
    raw = set(ev["account_id"].unique().to_list())
    raw |= set(ev["client"].struct.field("ip").unique().to_list())
    raw |= set(ev["account"].struct.field("payment_fingerprint").drop_nulls().unique().to_list())
    alerts = [json.loads(x) for x in (out / "a" / "alerts.jsonl").read_text().splitlines()]
    shared = [  # the raw values the indicators were made from (prefixes, fingerprints, hashes)
        (fam, v.rsplit(" (", 1)[0])
        for a in alerts
        for fam, values in (a.get("evidence") or {}).get("shared", {}).items()
        for v in values
    ]
    raw |= {v for fam, v in shared if fam in ("ip", "payment", "client")}
    leaked = sorted(v for v in raw if v and v in text)
    assert not leaked, f"raw values in the bundle: {leaked[:5]}"
    # what is there is the keyed hash of those values
    hashes = {h["hmac"] for i in indicators for h in i["x_artefact_hmacs"]}
    assert hashes & {artefact_hmac(KEY, fam, v) for fam, v in shared}


@pytest.mark.slow
def test_partner_intel_links_the_same_campaign_earlier(trip: tuple[Path, dict[str, Any]]) -> None:
    _, result = trip
    rows = result["campaigns"]
    assert all(r["ttd_h_with"] is not None and r["ttd_h_with"] <= r["ttd_h_without"] for r in rows)
    assert any(r["ttd_h_with"] < r["ttd_h_without"] for r in rows)
    assert result["false_positives"]["with"] <= result["false_positives"]["without"]


@pytest.mark.slow
def test_cli_export_then_import(trip: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, _ = trip
    env = {"DETECTOR_COMMUNITY_KEY": KEY.decode()}
    bundle = tmp_path / "bundle.json"
    a = out / "a"
    done = runner.invoke(
        app,
        [
            "intel",
            "export",
            "--alerts",
            str(a / "alerts.jsonl"),
            "--dispositions",
            str(a / "dispositions.sqlite"),
            "--out",
            str(bundle),
            "--tlp",
            "green",
        ],
        env=env,
    )
    assert done.exit_code == 0, done.output
    assert "validated" in done.output
    imported = runner.invoke(app, ["intel", "import", str(bundle), "--dir", str(tmp_path / "p")], env=env)
    assert imported.exit_code == 0, imported.output
    assert (tmp_path / "p" / "bundle.json").exists()
    short = runner.invoke(app, ["intel", "import", str(bundle)], env={"DETECTOR_COMMUNITY_KEY": "short"})
    assert short.exit_code == 1 and "16 bytes" in short.output
