"""``detector`` from a directory outside the clone, with its defaults: simulate, replay, evaluate, report and
demo work, and the packaged rules and models are the repository's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("detector")


def run_cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR_")}
    env["TMPDIR"] = str(cwd)  # the demo's work folder stays inside the test's folder
    return subprocess.run(
        [str(CLI), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_packaged_defaults_are_the_repository_folders() -> None:
    from detector import defaults
    from detector.settings import EngineSettings

    s = EngineSettings()
    assert s.rules_dir.resolve() == (REPO / "rules").resolve()
    assert s.models_dir is not None and s.models_dir.resolve() == (REPO / "models").resolve()
    assert s.ip_intel_dir is None
    assert defaults.resolve_ip_intel("default") == defaults.ip_intel_dir()
    assert sorted(p.name for p in defaults.rules_dir().glob("*.yaml")) == sorted(
        p.name for p in (REPO / "rules").glob("*.yaml")
    )
    for name in ("README.md", "ip-location-db_asn/DBIP-LICENSE", "lord-alfred_ipranges/LICENSE"):
        assert (defaults.ip_intel_dir() / name).is_file(), name


@pytest.mark.slow
def test_the_commands_work_from_a_directory_outside_the_clone(tmp_path: Path) -> None:
    assert REPO not in tmp_path.parents
    sim = run_cli(["simulate", "--out", "sim", "--days", "0.3", "--scale", "0.1", "--json"], tmp_path)
    assert sim.returncode == 0, sim.stderr
    assert json.loads(sim.stdout)["n_events"] > 1000

    rep = run_cli(["replay", "sim/events.parquet", "--alerts-out", "alerts.jsonl", "--json"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    summary = json.loads(rep.stdout)
    assert summary["events"] == summary["records"] > 1000
    assert summary["episodes_by_severity"].get("high", 0) > 0  # packaged rules and models found

    intel = run_cli(
        ["replay", "sim/events.parquet", "--alerts-out", "intel.jsonl", "--ip-intel", "default", "--json"],
        tmp_path,
    )
    assert intel.returncode == 0, intel.stderr
    assert json.loads(intel.stdout)["events"] == summary["events"]

    ev = run_cli(["evaluate", "--labels", "sim/labels.json", "--alerts", "alerts.jsonl", "--json"], tmp_path)
    assert ev.returncode == 0, ev.stderr
    json.loads(ev.stdout)
    table = run_cli(["evaluate", "--labels", "sim/labels.json", "--alerts", "alerts.jsonl"], tmp_path)
    assert table.returncode == 0 and "TTD med h" in table.stdout  # piped: a wide page, nothing cut
    assert "…" not in table.stdout and max(map(len, table.stdout.splitlines())) > 80

    html = run_cli(["report", "--alerts", "alerts.jsonl", "--out", "report.html", "--json"], tmp_path)
    assert html.returncode == 0, html.stderr
    assert (tmp_path / "report.html").stat().st_size > 1000

    demo_args = ["--duration", "45", "--days", "0.3", "--scale", "0.1", "--speed", "0", "--metrics-port", "0"]
    demo = run_cli(["demo", *demo_args], tmp_path, timeout=240)  # the default port 9108 may be taken
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "NEW " in demo.stdout, demo.stdout[-2000:]  # an episode printed: the packaged rules and models


def test_settings_name_the_packaged_snapshot_and_read_short_durations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import timedelta

    from detector import defaults
    from detector.settings import EngineSettings

    monkeypatch.setenv("DETECTOR_IP_INTEL_DIR", "default")
    monkeypatch.setenv("DETECTOR_WINDOWS__TICK", "10m")
    monkeypatch.setenv("DETECTOR_WINDOWS__LINK", "2d")
    monkeypatch.setenv("DETECTOR_WINDOWS__SHORT", "1800")
    s = EngineSettings()
    assert s.ip_intel_dir == defaults.ip_intel_dir()
    assert (s.windows.tick, s.windows.link, s.windows.short) == (
        timedelta(minutes=10),
        timedelta(days=2),
        timedelta(minutes=30),
    )
