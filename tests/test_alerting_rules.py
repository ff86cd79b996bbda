"""Alerting rules for the daemon (deploy/prometheus/alerts.yml), through the real ``promtool``."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import _missing

PROM_DIR = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
RULES = PROM_DIR / "alerts.yml"
RULE_TESTS = PROM_DIR / "alerts_test.yml"
#: What the issue asks for, by alert name.
REQUIRED = {
    "DetectorConsumerLagGrowing",
    "DetectorNoEvents",
    "DetectorRejectSpike",
    "DetectorCheckpointFailures",
    "DetectorCheckpointFallback",
    "DetectorAlertStorm",
}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        _missing("promtool not installed (apt-get install prometheus; scripts/test.sh does it)")
    assert path is not None
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], cwd=PROM_DIR, capture_output=True, text=True, timeout=120, check=False
    )


def _alerts() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    """``promtool check rules`` accepts the file (syntax, PromQL, templates)."""
    res = _run("check", "rules", RULES.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_test_rules() -> None:
    """``promtool test rules``: each alert fires when it should, and stays quiet when it should."""
    res = _run("test", "rules", RULE_TESTS.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_every_alert_is_required_labelled_and_tested() -> None:
    """The issue's alerts exist; each has a severity, a summary and a unit test that expects it to fire."""
    alerts = _alerts()
    names = {str(a["alert"]) for a in alerts}
    assert names >= REQUIRED
    for a in alerts:
        assert a["labels"]["severity"] in {"warning", "critical"}, a  # type: ignore[index]
        assert a["annotations"]["summary"], a  # type: ignore[index]
        # the runbook (docs/operations.md) has one section per alert, anchored by its lower-cased name
        assert a["annotations"]["runbook_url"] == f"docs/operations.md#{str(a['alert']).lower()}", a  # type: ignore[index]
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for t in tests for case in t.get("alert_rule_test", [])]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert names == firing, f"alerts without a firing test: {names - firing}"
    assert names == quiet, f"alerts without a quiet test: {names - quiet}"


@pytest.mark.parametrize("alert", sorted(REQUIRED))
def test_alert_names_only_exported_metrics(alert: str) -> None:
    """Each required alert reads metrics the daemon exports (catches a renamed metric)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    from detector.runtime.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    exported = generate_latest(registry).decode()
    expr = next(str(a["expr"]) for a in _alerts() if a["alert"] == alert)
    for name in set(re.findall(r"detector_[a-z_]+", expr)):
        assert f"\n{name}" in exported or f"# TYPE {name}" in exported, (alert, name)
