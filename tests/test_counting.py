"""One counting unit, the alert episode (one per ``alert_id``; revisions are updates), everywhere:
the replay summary, ``evaluate``, the analyst report and the metrics agree on one run."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from prometheus_client import CollectorRegistry

from detector.app import build_engine
from detector.contracts import Alert
from detector.lab.evaluate import evaluate
from detector.lab.report.build import build_report
from detector.lab.simulate import simulate
from detector.runtime.metrics import Metrics
from detector.runtime.replay import replay

ROOT = Path(__file__).resolve().parents[1]


def _sum(registry: CollectorRegistry, name: str) -> float:
    return sum(s.value for f in registry.collect() for s in f.samples if s.name == name)


def test_episodes_are_counted_the_same_everywhere(tmp_path: Path) -> None:
    simulate(tmp_path, days=0.5, seed=4, scale=0.25)
    alerts_path = tmp_path / "alerts.jsonl"
    summary = replay([tmp_path / "events.jsonl"], build_engine(ROOT / "rules"), alerts_path)
    records = [json.loads(line) for line in alerts_path.read_text().splitlines()]
    episodes = len({r["alert_id"] for r in records})
    # the run must have updates, or the comparison cannot tell episodes from revisions
    assert summary.revisions == len(records) > episodes > 0

    assert summary.episodes.total() == episodes

    result = evaluate(tmp_path / "labels.json", alerts_path)
    assert (result.n_episodes, result.n_revisions) == (episodes, len(records))
    assert {k: v for k, v in result.episodes_by_severity.items() if v} == dict(summary.episodes)

    report = build_report(alerts_path, tmp_path / "report.html")
    assert (report.episodes, report.revisions) == (episodes, len(records))
    html = (tmp_path / "report.html").read_text()
    assert f"<b>{episodes}</b><span>alert episodes</span>" in html
    for severity, n in summary.episodes.items():
        assert f"<b>{n}</b><span>{severity} episodes</span>" in html
    data = json.loads(re.search(r'id="episodes-data">(.*?)</script>', html, flags=re.S).group(1))  # type: ignore[union-attr]
    assert Counter(e["severity"] for e in data) == summary.episodes

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.record_alerts(Alert.model_validate(r) for r in records)  # as the daemon does on emit
    assert _sum(registry, "detector_alert_episodes_total") == episodes
    assert _sum(registry, "detector_alert_revisions_total") == len(records)
