"""``detector demo``: one readable line per episode change (NEW / UPDATE), quiet logs, an honest stop
line, and no working folder left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from detector.lab.demo.run import EpisodePrinter


def _doc(aid: str, rev: int, severity: str, n: int, output: str | None = "5 accounts share a card") -> dict:  # type: ignore[type-arg]
    return {
        "alert_id": aid,
        "revision": rev,
        "kind": "cluster",
        "subject": "cl-1",
        "severity": severity,
        "account_ids": [f"a{i}" for i in range(n)],
        "score": 0.8,
        "campaign_type": "chain_of_thought",
        "reasons": [{"source": "rule", "name": "r1", "title": "Rule one"}],
        "output": output,
    }


def test_episode_printer_marks_new_and_update(capsys: pytest.CaptureFixture[str]) -> None:
    p = EpisodePrinter()
    p(_doc("e1", 1, "low", 3))  # a low lead: counted, not shown
    p(_doc("e1", 2, "medium", 3))  # first shown: NEW
    p(_doc("e1", 3, "high", 7, output=None))  # escalation and growth: UPDATE, says what changed
    p(_doc("e2", 1, "high", 2))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("NEW    medium") and "5 accounts share a card" in lines[0]
    assert (
        lines[1].startswith("UPDATE high") and "medium -> high" in lines[1] and "3 -> 7 accounts" in lines[1]
    )
    assert "Rule one" in lines[1]  # no sentence: the rule's title
    assert p.totals() == "2 alert episodes (2 high; 2 updates)"
    leads = EpisodePrinter(show_leads=True)
    leads(_doc("e1", 1, "low", 3))
    assert capsys.readouterr().out.startswith("NEW    low")


@pytest.mark.slow
@pytest.mark.kafka
def test_demo_run_is_quiet_honest_and_tidy(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    env["TMPDIR"] = str(tmp_path)
    args = [
        "demo",
        "--duration",
        "12",
        "--days",
        "0.5",
        "--scale",
        "0.2",
        "--speed",
        "600",
        "--metrics-port",
        "0",
    ]
    res = subprocess.run(
        [sys.executable, "-m", "detector", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert res.returncode == 0, res.stderr[-2000:]
    # logs stay at WARNING: no info lines (the settings dump, the broker start) on stderr
    assert '"level":"info"' not in res.stderr.replace(" ", ""), res.stderr[:2000]
    stop = [line for line in res.stdout.splitlines() if line.startswith("stopped after")]
    assert len(stop) == 1, res.stdout[-2000:]
    sent, planned = map(int, re.search(r"sent (\d+) of (\d+) planned events", stop[0]).groups())  # type: ignore[union-attr]
    assert 0 < sent <= planned
    if sent < planned:  # stopped before the end: never claims "all ... sent"
        assert "all" not in " ".join(line for line in res.stdout.splitlines() if line.startswith("producer:"))
    assert "alert episodes" in stop[0]
    for line in res.stdout.splitlines():
        if line.startswith(("NEW", "UPDATE")):
            assert re.search(r"\[al-[0-9a-f]+ rev \d+\]$", line), line
    assert not list(tmp_path.glob("detector-demo-*")), "the demo left its working folder behind"
