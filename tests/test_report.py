"""The analyst report: contents, privacy, the command, and rendering in the real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import _missing

from detector.app import build_engine
from detector.lab.report.build import (
    MAX_PAIR_EDGES,
    build_report,
    cluster_sizes,
    graph_from_evidence,
    graph_from_keys,
    latest,
    load_alerts,
    timeline,
)
from detector.lab.simulate import simulate
from detector.runtime.replay import replay

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Simulated traffic (half a day) and the alerts a replay raises on it: (events.jsonl, alerts.jsonl)."""
    out = tmp_path_factory.mktemp("sim")
    simulate(out, days=0.5, seed=2, scale=0.3)
    alerts = out / "alerts.jsonl"
    replay([out / "events.jsonl"], build_engine(ROOT / "rules"), alerts)
    assert alerts.stat().st_size > 0
    return out / "events.jsonl", alerts


def _prompt_texts(events: Path) -> list[str]:
    texts = []
    for line in events.read_text().splitlines():
        text = (json.loads(line).get("prompt") or {}).get("text")
        if text and len(text) >= 24:
            texts.append(text)
    return texts


def _assert_no_prompt_text(html: str, events: Path) -> None:
    texts = _prompt_texts(events)
    assert len(texts) > 100
    for text in set(texts):
        # any 24 characters of a prompt, taken from its start and its middle, escaped or not
        for piece in {text[:24], text[len(text) // 2 : len(text) // 2 + 24]}:
            if len(piece) == 24:
                assert piece not in html, piece
                assert piece.replace("&", "&amp;").replace("<", "&lt;") not in html, piece


# ----------------------------------------------------------------------------------------------
def test_report_without_events(run: tuple[Path, Path], tmp_path: Path) -> None:
    """Alerts only: every section is there, the graph comes from the evidence, no prompt text."""
    events, alerts = run
    out = tmp_path / "r.html"
    summary = build_report(alerts, out)
    html = out.read_text()
    assert summary.alert_ids == len(latest(load_alerts(alerts))) > 0
    assert summary.clusters > 0 and summary.graph_source == "evidence"
    for heading in (
        "Alert timeline by campaign type",
        "Cluster-size distribution",
        "Largest cluster: linkage graph",
        "Top reasons",
        "Most severe alerts",
    ):
        assert heading in html
    assert html.count("<svg") == 4
    assert "<script" in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    _assert_no_prompt_text(html, events)


def test_report_with_events_draws_account_edges(run: tuple[Path, Path], tmp_path: Path) -> None:
    """With events: the engine is replayed and the graph joins the cluster's accounts, typed by family."""
    events, alerts = run
    out = tmp_path / "r.html"
    summary = build_report(alerts, out, [events])
    assert summary.graph_source == "events"
    html = out.read_text()
    assert "Recomputed from the events" in html
    assert re.search(r'class="edge e-(payment|ip|client|reseller|sysprompt|template|signup)"', html)
    _assert_no_prompt_text(html, events)


def test_report_command(run: tuple[Path, Path], tmp_path: Path) -> None:
    """``detector report --alerts A --events E --out F`` is registered and writes the page."""
    events, alerts = run
    out = tmp_path / "cli.html"
    args = ["report", "--alerts", str(alerts), "--events", str(events), "--out", str(out)]
    res = subprocess.run(
        [sys.executable, "-m", "detector", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "linkage graph from events" in res.stdout
    assert out.read_text().startswith("<!DOCTYPE html>")
    missing = subprocess.run(
        [sys.executable, "-m", "detector", "report", "--alerts", str(tmp_path / "nope"), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 2


# ----------------------------------------------------------------------------------------------
def _alert(
    aid: str, kind: str, accounts: list[str], ts: str, campaign: str | None, rev: int = 1
) -> dict[str, object]:
    return {
        "alert_id": aid,
        "revision": rev,
        "kind": kind,
        "subject": aid if kind == "cluster" else accounts[0],
        "account_ids": accounts,
        "severity": "high",
        "campaign_type": campaign,
        "first_event_ts": ts,
        "detected_event_ts": ts,
        "reasons": [{"source": "rule", "name": "r1"}],
        "evidence": {"shared": {"payment": ["pf_1 (3 accounts)"], "ip": ["10.0.0.0/24 (2 accounts)"]}},
    }


def test_timeline_sizes_and_revisions() -> None:
    """Episodes count once (first revision) in the timeline; sizes use the latest revision."""
    alerts = [
        _alert("c1", "cluster", ["a", "b"], "2026-03-01T00:10:00Z", "chain_of_thought"),
        _alert("c1", "cluster", ["a", "b", "c", "d"], "2026-03-01T02:10:00Z", "chain_of_thought", rev=2),
        _alert("a1", "account", ["x"], "2026-03-01T01:59:00Z", None),
    ]
    cats, series, unit = timeline([a for a in alerts if a["revision"] == 1])
    assert unit == "hour" and cats == ["03-01 00:00", "03-01 01:00"]
    assert series == {"(none)": [0.0, 1.0], "chain_of_thought": [1.0, 0.0]}
    size_cats, sizes = cluster_sizes([a for a in latest(alerts) if a["kind"] == "cluster"])
    assert sizes["chain_of_thought"][size_cats.index("3-5")] == 1


def _keys(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["account_id", "family", "key"], orient="row")


def test_graph_from_keys_pairs_and_common_keys() -> None:
    """Pairs sharing a key become typed edges; a key most accounts use links nobody."""
    rows = [("a", "payment", "pf1"), ("b", "payment", "pf1"), ("b", "ip", "n1"), ("c", "ip", "n1")]
    rows += [(f"o{i}", "client", "popular") for i in range(60)] + [(a, "client", "popular") for a in "abc"]
    alert = _alert("c", "cluster", ["a", "b", "c"], "2026-03-01T00:00:00Z", None)
    g = graph_from_keys(alert, _keys(rows), 0.2, 5)
    names = [n[0] for n in g.nodes]
    edges = {(names[a], names[b], kind) for a, b, kind in g.edges}
    assert edges == {("a", "b", "payment"), ("b", "c", "ip")}
    assert g.source == "events"


def test_graph_from_keys_switches_to_key_nodes_for_big_cliques() -> None:
    """A key shared by many accounts is drawn as one node, not as a clique of pairs."""
    members = [f"m{i:03d}" for i in range(40)]
    rows = [(m, "reseller", "rs1") for m in members]
    g = graph_from_keys(_alert("c", "cluster", members, "2026-03-01T00:00:00Z", None), _keys(rows), 0.9, 500)
    assert MAX_PAIR_EDGES < 40 * 39 // 2
    assert len(g.nodes) == 41 and len(g.edges) == 40
    assert {kind for _, _, kind in g.edges} == {"reseller"}


def test_graph_from_evidence() -> None:
    """Without events: a hub for the cluster and one node per shared value, typed by family."""
    g = graph_from_evidence(_alert("c9", "cluster", ["a", "b", "c"], "2026-03-01T00:00:00Z", None))
    assert g.nodes[0][0] == "c9" and len(g.nodes) == 3
    assert sorted(kind for _, _, kind in g.edges) == ["ip", "payment"]


# ----------------------------------------------------------------------------------------------
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    _missing("chromium not installed (apt-get install chromium; scripts/test.sh does it)")
    raise AssertionError("unreachable")


def _browse(page: Path, tmp: Path, *action: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *action, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _console(stderr: str) -> list[str]:
    """Messages the page's scripts wrote or raised (Chromium logs them as CONSOLE lines)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_console_capture_sees_script_errors(tmp_path: Path) -> None:
    """Control: the capture used below does report an uncaught error, so its silence means something."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>notDefinedAnywhere();</script></body></html>")
    res = _browse(page, tmp_path, "--dump-dom")
    assert any("Uncaught ReferenceError" in line for line in _console(res.stderr)), res.stderr[-2000:]


@pytest.mark.slow
def test_report_renders_in_headless_chromium(run: tuple[Path, Path], tmp_path: Path) -> None:
    """Chromium runs the page's script without errors and takes a full-page screenshot."""
    events, alerts = run
    page = tmp_path / "report.html"
    build_report(alerts, page, [events])
    rows = page.read_text().count("<tr>") - 1
    dom = _browse(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console(dom.stderr) == [], _console(dom.stderr)
    # the inline script ran to its end: it marks the page ready with the table's row count
    assert f'data-report-ready="{rows}"' in dom.stdout
    shot = tmp_path / "report.png"
    res = _browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400")
    assert res.returncode == 0, res.stderr[-2000:]
    assert _console(res.stderr) == []
    assert _png_size(shot) == (1280, 2400)
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few kilobytes
