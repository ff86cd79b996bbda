"""The analyst report: contents, privacy, the command, and rendering in the real headless Chromium."""

from __future__ import annotations

import csv
import json
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from cdp import Browser
from conftest import _missing

from detector.app import build_engine
from detector.lab.report.build import LOW_LEADS, build_report, cluster_sizes, latest, load_alerts, timeline
from detector.lab.report.episodes import build_episodes
from detector.lab.report.linkage import TOP_GROUPS, draw, linkage_from_evidence, linkage_from_keys
from detector.lab.simulate import simulate
from detector.runtime.replay import replay

ROOT = Path(__file__).resolve().parents[1]


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
    """Alerts only: every section is there, every episode is in the data (no cut), no prompt text."""
    events, alerts = run
    out = tmp_path / "r.html"
    summary = build_report(alerts, out)
    html = out.read_text()
    records = load_alerts(alerts)
    assert summary.episodes == len(latest(records)) > 30 and summary.revisions == len(records)
    assert summary.clusters > 0 and summary.graph_source == "evidence"
    for heading in (
        "New episodes per hour: accusations by campaign type, low leads apart",
        "Cluster sizes (accused clusters)",
        "Linkage of the largest accused cluster",
        "Top reasons (episodes citing each)",
        "<h2>Episodes</h2>",
    ):
        assert heading in html
    assert html.count("<svg") == 4
    data = json.loads(re.search(r'id="episodes-data">(.*?)</script>', html, flags=re.S).group(1))  # type: ignore[union-attr]
    assert {e["id"] for e in data} == {a["alert_id"] for a in records}
    assert "<script" in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    _assert_no_prompt_text(html, events)


def test_report_with_events_groups_members_by_key(run: tuple[Path, Path], tmp_path: Path) -> None:
    """With events: the engine is replayed and the picture joins labelled keys to member groups."""
    events, alerts = run
    out = tmp_path / "r.html"
    summary = build_report(alerts, out, [events])
    assert summary.graph_source == "events"
    html = out.read_text()
    assert "Recomputed from the events" in html
    assert re.search(r'class="link e-(payment|ip|client|reseller|sysprompt|template)"', html)
    assert 'class="group"' in html and 'class="key"' in html
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
    aid: str,
    kind: str,
    accounts: list[str],
    ts: str,
    campaign: str | None,
    rev: int = 1,
    severity: str = "high",
) -> dict[str, object]:
    return {
        "alert_id": aid,
        "revision": rev,
        "kind": kind,
        "subject": aid if kind == "cluster" else accounts[0],
        "account_ids": accounts,
        "severity": severity,
        "score": 0.9,
        "campaign_type": campaign,
        "first_event_ts": ts,
        "detected_event_ts": ts,
        "reasons": [
            {"source": "rule", "name": "r1", "title": "Rule one", "output": "3 accounts share a card"}
        ],
        "evidence": {
            "accounts": len(accounts),
            "cot_share_24h": 0.5,
            "account_age_days": 2.0,
            "hosted_ip_share_24h": 1.0,
            "shared": {"payment": ["pf_1 (3 accounts)"], "ip": ["10.0.0.0/24 (2 accounts)"]},
        },
    }


def test_episodes_timeline_sizes_and_nesting() -> None:
    """One episode per alert id (latest revision); low leads apart in the timeline; account alerts
    nest under the cluster holding their account; evidence sorted by axis; shared keys parsed."""
    alerts = [
        _alert("c1", "cluster", ["a", "b"], "2026-03-01T00:10:00Z", "chain_of_thought"),
        _alert("c1", "cluster", ["a", "b", "c", "d"], "2026-03-01T00:10:00Z", "chain_of_thought", rev=2),
        _alert("a1", "account", ["a"], "2026-03-01T01:59:00Z", None, severity="low"),
        _alert("x1", "account", ["x"], "2026-03-01T01:30:00Z", "logprob_harvest", severity="medium"),
    ]
    episodes = build_episodes(alerts)
    by_id = {e["id"]: e for e in episodes}
    assert len(episodes) == 3 and by_id["c1"]["accounts"] == ["a", "b", "c", "d"]
    assert [t[0] for t in by_id["c1"]["timeline"]] == [1, 2]
    assert (
        by_id["a1"]["parents"] == ["c1"]
        and by_id["c1"]["children"] == ["a1"]
        and by_id["x1"]["parents"] == []
    )
    assert by_id["c1"]["shared"] == [["payment", "pf_1", 3], ["ip", "10.0.0.0/24", 2]]
    axes = by_id["c1"]["axes"]
    assert ["accounts", 4] in axes["coordination"] and ["cot_share_24h", 0.5] in axes["extraction"]
    assert ["account_age_days", 2.0] in axes["trust"] and ["hosted_ip_share_24h", 1.0] in axes["network"]
    assert by_id["c1"]["output"] == "3 accounts share a card"
    cats, series, unit = timeline(episodes)
    assert unit == "hour" and cats == ["03-01 00:00", "03-01 01:00"]
    assert series == {"chain_of_thought": [1.0, 0.0], "logprob_harvest": [0.0, 1.0], LOW_LEADS: [0.0, 1.0]}
    assert list(series)[-1] == LOW_LEADS
    size_cats, sizes = cluster_sizes([e for e in episodes if e["kind"] == "cluster"])
    assert sizes["chain_of_thought"][size_cats.index("3-5")] == 1


def _keys(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["account_id", "family", "key"], orient="row")


def test_linkage_groups_members_by_the_keys_they_hold() -> None:
    """Keys shared inside the cluster, strongest first; a key most accounts use links nobody; members
    holding the same keys form one group; sign-up slots are not keys."""
    members = [f"m{i}" for i in range(6)]
    rows = [(m, "payment", "pf1") for m in members[:4]] + [(m, "ip", "n1") for m in members[2:]]
    rows += [(m, "signup", "slot9") for m in members]
    rows += [(f"o{i}", "client", "popular") for i in range(60)] + [(m, "client", "popular") for m in members]
    link = linkage_from_keys(
        _alert("c", "cluster", members, "2026-03-01T00:00:00Z", None), _keys(rows), 0.2, 5
    )
    assert [(f, k, n) for f, k, _, n in link.keys] == [("ip", "n1", 4), ("payment", "pf1", 4)]
    svg = draw(link)
    assert svg.count('class="group"') == 3  # {pf1}, {pf1, n1}, {n1}
    assert "payment</tspan> pf1" in svg and "(4)" in svg
    big = [f"a{i:03d}" for i in range(40)]
    many = [(a, "template", f"t{i % 12}") for i, a in enumerate(big)] + [(a, "ip", "p") for a in big]
    link = linkage_from_keys(_alert("c", "cluster", big, "2026-03-01T00:00:00Z", None), _keys(many), 0.9, 500)
    assert draw(link).count('class="group"') <= TOP_GROUPS + 1


def test_linkage_from_evidence() -> None:
    """Without events: the shared keys of the evidence, labelled with their counts, one member box."""
    link = linkage_from_evidence(_alert("c9", "cluster", ["a", "b", "c"], "2026-03-01T00:00:00Z", None))
    assert [(f, k, n) for f, k, _, n in link.keys] == [("payment", "pf_1", 3), ("ip", "10.0.0.0/24", 2)]
    svg = draw(link)
    assert svg.count('class="group"') == 1 and svg.count('class="key"') == 2


# ----------------------------------------------------------------------------------------------
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    _missing("chromium not installed (apt-get install chromium; scripts/test.sh does it)")
    raise AssertionError("unreachable")


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_devtools_client_sees_script_errors(tmp_path: Path) -> None:
    """Control: the DevTools client reports an uncaught error, so its silence below means something."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>notDefinedAnywhere();</script></body></html>")
    with Browser(_chromium(), tmp_path / "profile") as b:
        b.open(page.as_uri(), tmp_path)
        b.wait_for("document.readyState === 'complete'")
        assert any("notDefinedAnywhere" in e for e in b.errors()), b.events[-5:]


def _rows(b: Browser) -> list[dict[str, str]]:
    return b.eval(  # type: ignore[no-any-return]
        "Array.from(document.querySelectorAll('#episodes tr.ep')).map(r => ({id: r.dataset.id, "
        "sev: r.cells[2].textContent, kind: r.cells[3].textContent, campaign: r.cells[5].textContent}))"
    )


def _set(b: Browser, selector: str, js: str) -> None:
    b.eval(
        f"(() => {{ const el = document.querySelector({json.dumps(selector)}); {js}; "
        "el.dispatchEvent(new Event('change', {bubbles: true})); })()"
    )


@pytest.mark.slow
def test_report_driven_in_headless_chromium(run: tuple[Path, Path], tmp_path: Path) -> None:
    """Drive the page in the real headless Chromium: filter by kind, severity, campaign and time; expand
    the largest accused cluster to its members and shared keys; select it and export CSV; the exported
    accounts are exactly that alert's accounts in the alert JSON. No script error; a screenshot."""
    events, alerts = run
    page = tmp_path / "report.html"
    build_report(alerts, page, [events])
    records = load_alerts(alerts)
    current = {a["alert_id"]: a for a in latest(records)}
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with Browser(_chromium(), tmp_path / "profile") as b:
        b.open(page.as_uri(), downloads)
        ready = int(b.wait_for("document.documentElement.dataset.reportReady"))
        rows = _rows(b)
        assert ready == len(rows) > 0
        # every episode is reachable: top-level rows plus account alerts nested under shown clusters
        nested = {
            cid
            for r in rows
            for cid in b.eval(
                f"JSON.parse(document.getElementById('episodes-data').textContent)"
                f".find(e => e.id === {json.dumps(r['id'])}).children"
            )
        }
        assert {r["id"] for r in rows} | nested == set(current)
        # filter: clusters only, then no low leads, then one campaign, then a time window
        _set(b, "#f-kind", "el.value = 'cluster'")
        kinds = {r["kind"] for r in _rows(b)}
        assert kinds == {"cluster"}
        assert len(_rows(b)) == sum(1 for a in current.values() if a["kind"] == "cluster")
        _set(b, "input.f-sev[value=low]", "el.checked = false")
        accused = _rows(b)
        assert accused and all(r["sev"] != "low" for r in accused)
        campaign = accused[0]["campaign"]
        _set(b, "#f-campaign", f"el.value = {json.dumps(campaign)}")
        assert {r["campaign"] for r in _rows(b)} == {campaign}
        _set(b, "#f-campaign", "el.value = '*'")
        _set(b, "#f-from", "el.value = '2099-01-01T00:00'")
        assert _rows(b) == []
        _set(b, "#f-from", "el.value = ''")
        # expand the largest accused cluster
        target = max(
            (current[r["id"]] for r in _rows(b)), key=lambda a: (len(a["account_ids"]), a["alert_id"])
        )
        tid = json.dumps(target["alert_id"])
        b.eval(f"document.querySelector('button.expand[data-id=' + JSON.stringify({tid}) + ']').click()")
        detail = f"document.querySelector('tr.detail[data-for=' + JSON.stringify({tid}) + ']')"
        b.wait_for(f"!!{detail}")
        members = b.eval(
            f"Array.from({detail}.querySelectorAll('.member-list li')).map(li => li.dataset.account)"
        )
        assert sorted(members) == sorted(target["account_ids"])
        keys = b.eval(
            f"Array.from({detail}.querySelectorAll('.keys-table code.key')).map(c => c.textContent)"
        )
        shared = [
            v.rsplit(" (", 1)[0] for vs in (target["evidence"].get("shared") or {}).values() for v in vs
        ]
        assert keys and sorted(keys) == sorted(shared)
        assert b.eval(f"{detail}.querySelector('.d-axes h5').textContent") == "coordination"
        assert b.eval(f"{detail}.querySelectorAll('.timeline-table tbody tr').length") == target["revision"]
        # select it, export CSV, compare with the alert JSON
        b.eval(f"document.querySelector('input.pick[data-id=' + JSON.stringify({tid}) + ']').click()")
        b.eval("document.getElementById('export-csv').click()")
        csv_path = downloads / "accounts.csv"
        deadline = time.monotonic() + 30
        while not csv_path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert csv_path.exists(), list(downloads.iterdir())
        exported = list(csv.DictReader(csv_path.open()))
        assert {r["account_id"] for r in exported} == set(target["account_ids"])
        assert len(exported) == len(target["account_ids"])
        assert {r["alert_id"] for r in exported} == {target["alert_id"]}
        assert {r["severity"] for r in exported} == {target["severity"]}
        assert "exported" in b.eval("document.getElementById('export-status').textContent")
        shot = tmp_path / "report.png"
        b.screenshot(shot)
        assert b.errors() == [], b.errors()
    width, height = _png_size(shot)
    assert width == 1400 and height > 1800
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few kilobytes
