"""Grafana dashboards: structure, freshness, and every panel query against a real Prometheus.

The end-to-end test starts ``detector demo`` (embedded broker, simulated traffic, the daemon serving
/metrics) and the real Prometheus server (Debian package ``prometheus``) scraping it every second with
the project's alerting rules loaded, waits until scrapes have data, and runs every target of every
panel through ``/api/v1/query`` with the template variables substituted: each must parse and return a
non-empty result. The same scrape is checked for account ids and prompt text.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import _missing
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "dashboards"
ALERT_RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
#: Substitutions for Grafana's built-in variables: 30 s covers 30 scrapes at the test's 1 s interval.
GRAFANA_VARS = {"$__rate_interval": "30s", "$__range": "5m", "$__interval": "5s"}
#: Account ids in the simulator's traffic (and the usual shape of real ones in this project).
ACCOUNT_ID = re.compile(r"acct_[0-9a-f]{6,}")


def _load_build() -> Any:
    spec = importlib.util.spec_from_file_location("dashboards_build", DASHBOARDS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def _queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title / refId, expr) for every target of every panel."""
    return [
        (f"{p['title']} / {t['refId']}", t["expr"])
        for p in dash["panels"]
        if p["type"] != "row"
        for t in p["targets"]
    ]


# ----------------------------------------------------------------------------------------------
# static checks
def test_dashboards_match_generator() -> None:
    """The committed JSON is exactly what ``dashboards/build.py`` writes (edit the script, not the JSON)."""
    rendered = _load_build().render()
    assert sorted(rendered) == sorted(_dashboards())
    for name, text in rendered.items():
        assert (DASHBOARDS / name).read_text() == text, f"{name} is stale: run python dashboards/build.py"


def test_dashboard_structure() -> None:
    """Grafana's JSON model: titles, variables, unique ids, panels on the 24-column grid, no overlaps."""
    dashes = _dashboards()
    assert {d["title"] for d in dashes.values()} == {"T&S overview", "Pipeline health"}
    assert len({d["uid"] for d in dashes.values()}) == len(dashes)
    for name, d in dashes.items():
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["instance"]["type"] == "query"
        assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), name
        cells: set[tuple[int, int]] = set()
        for p in d["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, (name, p["title"])
            span = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not (span & cells), f"{name}: {p['title']} overlaps another panel"
            cells |= span
            if p["type"] == "row":
                continue
            assert p["title"] and p["description"], name
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert p["targets"], (name, p["title"])
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${datasource}"
                assert 'instance=~"$instance"' in t["expr"], (name, p["title"], t["expr"])
                assert "detector_" in t["expr"], (name, p["title"], t["expr"])


def test_panels_cover_the_issue() -> None:
    """The panels the issue names exist (by title)."""
    titles = {name: {p["title"] for p in d["panels"]} for name, d in _dashboards().items()}
    ts = titles["ts-overview.json"]
    for want in (
        "Alert episodes in range",
        "Open alert episodes",
        "Alerts over time by severity",
        "Alerts over time by campaign type",
        "Accounts under alert",
        "Cluster sizes (accounts per cluster alert)",
        "CoT-extraction share of traffic",
        "New-model pivot share",
        "Allow-list suppressions by type",
        "Rule hits by rule",
        "Model score quantiles",
        "Model execution provider",
    ):
        assert want in ts
    ph = titles["pipeline-health.json"]
    for want in (
        "Throughput",
        "Consumer lag by partition",
        "Batch processing latency",
        "Rejects by reason",
        "Checkpoint duration",
        "Checkpoints and failures",
        "Process memory",
        "Process CPU",
    ):
        assert want in ph
    for name, d in _dashboards().items():
        # counted in episodes, never in revisions (the one unit); reloads annotated
        exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
        assert not any("detector_alerts_total" in e for e in exprs), name
        marks = d["annotations"]["list"]
        assert any("detector_rule_reloads_total" in a["expr"] for a in marks), name
    assert any(
        "detector_alert_episodes_total" in t["expr"]
        for p in _dashboards()["ts-overview.json"]["panels"]
        for t in p.get("targets", [])
    )


def test_provisioning_points_at_dashboards() -> None:
    """Grafana provisioning (deploy/grafana) names the data source variable's type and the folder."""
    import yaml

    prov = ROOT / "deploy" / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yaml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus"
    dash = yaml.safe_load((prov / "dashboards" / "detector.yaml").read_text())
    assert dash["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/detector"


# ----------------------------------------------------------------------------------------------
# against a real Prometheus scraping the daemon
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


def _query(base: str, expr: str) -> dict[str, Any]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        body = _get(url)
    except urllib.error.HTTPError as exc:  # 400 = the query did not parse
        return dict(json.loads(exc.read()))
    return dict(json.loads(body))


@dataclass
class Stack:
    """A running daemon and the Prometheus scraping it."""

    prometheus: str
    metrics_url: str
    instance: str
    daemon_log: Path


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(what: str, check: Any, timeout: float, procs: list[subprocess.Popen[bytes]], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"{what}: {p.args!r} exited early (rc={p.returncode}):\n{log.read_text()}")
        try:
            if check():
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``detector demo`` serving /metrics, and Prometheus scraping it every second."""
    prom_bin = shutil.which("prometheus")
    if prom_bin is None:
        _missing("prometheus not installed (apt-get install prometheus; scripts/test.sh does it)")
    assert prom_bin is not None
    tmp = tmp_path_factory.mktemp("prom")
    metrics_port, prom_port = _free_port(), _free_port()
    target = f"127.0.0.1:{metrics_port}"
    daemon_log = tmp / "daemon.log"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "detector", "demo", "--metrics-port", str(metrics_port), "--duration", "0"],
        cwd=ROOT,
        stdout=daemon_log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {ALERT_RULES}\n"
        "scrape_configs:\n  - job_name: detector\n    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    prom_log = tmp / "prometheus.log"
    prom = subprocess.Popen(
        [
            prom_bin,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=prom_log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{prom_port}"
    try:
        _wait("prometheus ready", lambda: _get(f"{base}/-/ready"), 60, [prom], prom_log)

        def enough() -> bool:
            # 20 scrapes of a counter that has moved: every rate window of 30 s holds >= 2 samples
            res = _query(base, "count_over_time(detector_events_processed_total[1m])")["data"]["result"]
            moved = _query(base, "max(detector_events_processed_total)")["data"]["result"]
            if not res or not moved:
                return False
            return float(res[0]["value"][1]) >= 20 and float(moved[0]["value"][1]) > 0

        _wait("scrapes with data", enough, 240, [prom, daemon], daemon_log)
        yield Stack(base, f"http://{target}/metrics", target, daemon_log)
    finally:
        _stop(daemon)
        _stop(prom)


def _substitute(expr: str, instance: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    # as Grafana does for a regex matcher: regex-escape the value, then escape backslashes for PromQL
    return expr.replace("$instance", re.escape(instance).replace("\\", "\\\\"))


@pytest.mark.prometheus
@pytest.mark.slow
def test_every_panel_query_returns_data(stack: Stack) -> None:
    """Each panel's query parses in Prometheus and returns a non-empty result for the demo daemon."""
    # the instance variable's own query finds the daemon
    values = json.loads(_get(f"{stack.prometheus}/api/v1/label/instance/values?match[]=detector_build_info"))[
        "data"
    ]
    assert stack.instance in values
    failures = []
    count = 0
    for name, dash in _dashboards().items():
        for where, expr in _queries(dash):
            count += 1
            res = _query(stack.prometheus, _substitute(expr, stack.instance))
            if res.get("status") != "success":
                failures.append(f"{name}: {where}: {res.get('error')}")
            elif not res["data"]["result"]:
                failures.append(f"{name}: {where}: empty result for {expr}")
    assert count >= 30
    assert not failures, "\n".join(failures)


@pytest.mark.prometheus
@pytest.mark.slow
def test_alert_rules_load_in_prometheus(stack: Stack) -> None:
    """The real server loaded deploy/prometheus/alerts.yml and evaluates every group without error."""
    groups = json.loads(_get(f"{stack.prometheus}/api/v1/rules"))["data"]["groups"]
    names = {r["name"] for g in groups for r in g["rules"]}
    assert {"DetectorNoEvents", "DetectorConsumerLagGrowing", "DetectorAlertStorm"} <= names
    for g in groups:
        for r in g["rules"]:
            assert r["health"] != "err", (r["name"], r.get("lastError"))


@pytest.mark.prometheus
@pytest.mark.slow
def test_daemon_scrape_has_no_account_ids_or_text(stack: Stack) -> None:
    """/metrics after a run: no account id anywhere; label values short tokens, never free text."""
    text = _get(stack.metrics_url).decode()
    assert "detector_events_processed_total" in text
    assert not ACCOUNT_ID.search(text), ACCOUNT_ID.search(text)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for label, value in sample.labels.items():
                assert len(value) <= 64, (sample.name, label, value)
                assert re.fullmatch(r"[\w.:/+\-]*", value), (sample.name, label, value)
