"""The analyst report: one static HTML page from an alerts file (and optionally the events behind it).

Sections: headline numbers, alert timeline by campaign type, cluster-size distribution, the largest
cluster's linkage graph with edge types, top reasons, and a table of the most severe alerts. The page
is self-contained (inline CSS and SVG, one small inline script for sorting the table) and carries no
prompt text: alerts never hold any, and with ``--events`` the events go through the engine, whose
enrichment drops prompt text before anything is kept; the report reads only linkage keys (hashes and
prefixes) from its state.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape
from itertools import combinations
from pathlib import Path
from typing import Any

from detector.lab.report import svg

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
SEVERITY_COLOURS = {"low": "#9ecae1", "medium": "#fdae6b", "high": "#e6550d", "critical": "#a50f15"}
SIZE_BUCKETS = ((2, 2), (3, 5), (6, 10), (11, 20), (21, 50), (51, 100), (101, 500), (501, 10**9))
FAMILY_COLOURS = {
    "payment": "#e15759",
    "ip": "#4e79a7",
    "client": "#59a14f",
    "reseller": "#b07aa1",
    "sysprompt": "#f28e2b",
    "template": "#edc948",
    "signup": "#76b7b2",
}
#: Most accounts drawn in the linkage graph; a bigger cluster shows its most-linked members.
MAX_NODES = 80
#: Above this many account pairs the drawing switches to one node per shared key (a key shared by k
#: accounts gives k(k-1)/2 pairs: a clique nobody can read).
MAX_PAIR_EDGES = 400
NO_CAMPAIGN = "(none)"


@dataclass
class ClusterGraph:
    """What the linkage drawing shows."""

    alert_id: str
    subject: str
    accounts: int
    nodes: list[tuple[str, str, str]] = field(default_factory=list)
    edges: list[tuple[int, int, str]] = field(default_factory=list)
    source: str = "evidence"
    note: str = ""


@dataclass
class ReportSummary:
    """What went into a report (printed by the command)."""

    alerts: int
    alert_ids: int
    accounts: int
    clusters: int
    graph_source: str | None
    out: Path


# ----------------------------------------------------------------------------------------------
def load_alerts(path: Path) -> list[dict[str, Any]]:
    """Alert records from a JSON Lines file (blank lines ignored)."""
    out: list[dict[str, Any]] = []
    with path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not JSON: {exc.msg}") from exc
    return out


def latest(alerts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest revision of each alert id, in first-seen order."""
    best: dict[str, dict[str, Any]] = {}
    for a in alerts:
        cur = best.get(a["alert_id"])
        if cur is None or a["revision"] >= cur["revision"]:
            best[a["alert_id"]] = a
    return list(best.values())


def first(alerts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The earliest revision of each alert id (when the episode was first raised)."""
    best: dict[str, dict[str, Any]] = {}
    for a in alerts:
        cur = best.get(a["alert_id"])
        if cur is None or a["revision"] < cur["revision"]:
            best[a["alert_id"]] = a
    return list(best.values())


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _campaign(a: dict[str, Any]) -> str:
    return str(a.get("campaign_type") or NO_CAMPAIGN)


# ----------------------------------------------------------------------------------------------
def timeline(episodes: Sequence[dict[str, Any]]) -> tuple[list[str], dict[str, list[float]], str]:
    """New alert episodes per hour (or per day beyond three days) by campaign type."""
    if not episodes:
        return [], {}, "hour"
    times = [_ts(a["detected_event_ts"]) for a in episodes]
    start, end = min(times), max(times)
    step = timedelta(hours=1) if end - start <= timedelta(days=3) else timedelta(days=1)
    unit = "hour" if step == timedelta(hours=1) else "day"
    t0 = start.replace(minute=0, second=0, microsecond=0)
    if unit == "day":
        t0 = t0.replace(hour=0)
    n = int((end - t0) / step) + 1
    fmt = "%m-%d %H:00" if unit == "hour" else "%Y-%m-%d"
    cats = [(t0 + i * step).strftime(fmt) for i in range(n)]
    series: dict[str, list[float]] = defaultdict(lambda: [0.0] * n)
    for a, t in zip(episodes, times, strict=True):
        series[_campaign(a)][int((t - t0) / step)] += 1
    return cats, dict(sorted(series.items())), unit


def cluster_sizes(clusters: Sequence[dict[str, Any]]) -> tuple[list[str], dict[str, list[float]]]:
    """Cluster alerts (latest revision) per size bucket, by campaign type."""
    cats = [
        f"{lo}" if lo == hi else (f">{lo - 1}" if hi >= 10**9 else f"{lo}-{hi}") for lo, hi in SIZE_BUCKETS
    ]
    series: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(cats))
    for a in clusters:
        size = len(a["account_ids"])
        for i, (lo, hi) in enumerate(SIZE_BUCKETS):
            if lo <= size <= hi:
                series[_campaign(a)][i] += 1
                break
    return cats, dict(sorted(series.items()))


def top_reasons(alerts: Sequence[dict[str, Any]], n: int = 12) -> list[tuple[str, float]]:
    """How many alerts (latest revisions) cite each rule or model."""
    counts = Counter(r["name"] for a in alerts for r in a.get("reasons") or [])
    return [(name, float(c)) for name, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


# ----------------------------------------------------------------------------------------------
def _short(account: str) -> str:
    return account if len(account) <= 14 else account[:13] + "…"


def graph_from_evidence(alert: dict[str, Any]) -> ClusterGraph:
    """Without events: the cluster as a hub, linked to each shared value in its evidence, by family."""
    g = ClusterGraph(alert["alert_id"], alert["subject"], len(alert["account_ids"]))
    g.nodes.append((alert["subject"], f"cluster {alert['subject']}: {g.accounts} accounts", "#333333"))
    shared: dict[str, list[str]] = (alert.get("evidence") or {}).get("shared") or {}
    for family in sorted(shared):
        for value in shared[family]:
            label = value if len(value) <= 28 else value[:27] + "…"
            g.nodes.append((label, f"{family}: {value}", FAMILY_COLOURS.get(family, "#999999")))
            g.edges.append((0, len(g.nodes) - 1, family))
    g.note = (
        "Drawn from the alert's evidence (the most-shared linkage values, each with how many of the "
        "cluster's accounts share it). Pass --events to draw account-to-account edges."
    )
    return g


def graph_from_keys(alert: dict[str, Any], keys: Any, common_share: float, common_min: int) -> ClusterGraph:
    """With events: accounts as nodes, one edge per pair of members sharing a key, typed by family.

    ``keys`` is the engine state's linkage table (account_id, family, key, ...). Keys used by more
    than ``common_share`` of all accounts (and more than ``common_min``) link nobody, as in linkage.
    """
    import polars as pl

    members = sorted(alert["account_ids"])
    g = ClusterGraph(alert["alert_id"], alert["subject"], len(members), source="events")
    total = keys["account_id"].n_unique() if keys.height else 0
    limit = max(common_share * total, common_min)
    popular = keys.group_by("family", "key").agg(pl.col("account_id").n_unique().alias("n_all"))
    groups = (
        keys.filter(pl.col("account_id").is_in(members))
        .join(popular, on=["family", "key"])
        .filter(pl.col("n_all") <= limit)
        .group_by("family", "key")
        .agg(pl.col("account_id").unique().sort())
        .filter(pl.col("account_id").list.len() >= 2)
        .sort("family", "key")
    )
    degree: Counter[str] = Counter()
    for accts in groups["account_id"].to_list():
        degree.update(accts)
    shown = sorted(members, key=lambda a: (-degree[a], a))[:MAX_NODES]
    index = {a: i for i, a in enumerate(sorted(shown))}
    g.nodes = [(_short(a), f"{a}: in {degree[a]} shared keys", "#cfd8dc") for a in index]
    shared = [
        (family, key, [index[a] for a in accts if a in index])
        for family, key, accts in groups.select("family", "key", "account_id").iter_rows()
    ]
    shared = [(f, k, inside) for f, k, inside in shared if len(inside) >= 2]
    pairs = {(a, b, f) for f, _, inside in shared for a, b in combinations(sorted(inside), 2)}
    if len(pairs) <= MAX_PAIR_EDGES:
        g.edges = sorted(pairs, key=lambda e: (e[2], e[0], e[1]))
        how = "an edge joins two accounts that share a linkage key"
    else:
        for family, key, inside in shared:
            label = key if len(key) <= 20 else key[:19] + "…"
            fill = FAMILY_COLOURS.get(family, "#999999")
            g.nodes.append((label, f"{family}: {key} ({len(inside)} accounts)", fill))
            g.edges += [(a, len(g.nodes) - 1, family) for a in inside]
        how = (
            f"{len(pairs)} account pairs share keys, too many to draw, so each shared key is a coloured "
            "node joined to the accounts that use it"
        )
    notes = []
    if len(members) > len(shown):
        notes.append(f"showing the {len(shown)} most-linked of {len(members)} accounts")
    unlinked = sum(1 for a in members if degree[a] == 0)
    if unlinked:
        notes.append(f"{unlinked} accounts have no shared key left in state at the end of the events")
    g.note = f"Recomputed from the events: {how}" + (" (" + "; ".join(notes) + ")." if notes else ".")
    return g


def linkage_keys(events: Sequence[Path]) -> tuple[Any, float, int]:
    """Replay ``events`` through a fresh engine; its linkage keys and common-key thresholds."""
    from detector.app import build_engine
    from detector.io.files import expand_inputs
    from detector.runtime.replay import replay

    engine = build_engine()
    replay(expand_inputs(list(events)), engine, None)
    link = engine.settings.link
    return engine.state.keys, link.common_share, link.common_min_accounts


# ----------------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.sub{color:#666;font-size:13px}.tiles{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.tile{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:120px}
.tile b{display:block;font-size:22px}.tile span{color:#666;font-size:12px}
.legend{font-size:12px;margin:4px 0 8px}.key{margin-right:14px;white-space:nowrap}
.key i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
svg{width:100%;height:auto}table{border-collapse:collapse;width:100%;font-size:12px}
th,td{border-bottom:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top}
th{cursor:pointer;background:#fafafa}.note{font-size:12px;color:#555}
.sev-critical{color:#a50f15;font-weight:600}.sev-high{color:#e6550d;font-weight:600}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:24px}
"""

SCRIPT = """
(function () {
  var table = document.getElementById("alerts");
  var heads = table.querySelectorAll("th");
  heads.forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var dir = th.dataset.dir === "asc" ? -1 : 1;
      th.dataset.dir = dir === 1 ? "asc" : "desc";
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v || a.cells[col].textContent;
        var y = b.cells[col].dataset.v || b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        if (!isNaN(nx) && !isNaN(ny)) { return dir * (nx - ny); }
        return dir * x.localeCompare(y);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  document.documentElement.dataset.reportReady = String(body_rows());
  function body_rows() { return table.tBodies[0].rows.length; }
})();
"""


def _tile(value: object, label: str) -> str:
    return f'<div class="tile"><b>{escape(str(value))}</b><span>{escape(label)}</span></div>'


def _alerts_table(alerts: Sequence[dict[str, Any]], n: int = 30) -> str:
    ranked = sorted(
        alerts,
        key=lambda a: (-SEVERITY_RANK.get(a["severity"], 0), -len(a["account_ids"]), a["alert_id"]),
    )[:n]
    rows = []
    for a in ranked:
        who = a["subject"] if a["kind"] == "account" else f"{a['subject']} ({len(a['account_ids'])} accounts)"
        reasons = ", ".join(r["name"] for r in a.get("reasons") or [])
        sev = a["severity"]
        rows.append(
            "<tr>"
            f"<td>{escape(a['alert_id'])}</td><td>{escape(a['kind'])}</td>"
            f'<td class="sev-{escape(sev)}" data-v="{SEVERITY_RANK.get(sev, 0)}">{escape(sev)}</td>'
            f"<td>{escape(_campaign(a))}</td><td>{escape(who)}</td>"
            f'<td data-v="{len(a["account_ids"])}">{len(a["account_ids"])}</td>'
            f"<td>{escape(a['first_event_ts'])}</td><td>{escape(a['detected_event_ts'])}</td>"
            f"<td>{escape(reasons)}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("alert", "kind", "severity", "campaign", "subject", "accounts", "since", "detected", "why")
    )
    return f'<table id="alerts"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def render_html(alerts: Sequence[dict[str, Any]], graph: ClusterGraph | None, title: str, source: str) -> str:
    """The whole page."""
    current = latest(alerts)
    episodes = first(alerts)
    clusters = [a for a in current if a["kind"] == "cluster"]
    accounts = {acct for a in current for acct in a["account_ids"]}
    by_sev = Counter(a["severity"] for a in current)
    campaigns = sorted({_campaign(a) for a in current})
    camp_colours = {c: svg.colour(i) for i, c in enumerate(campaigns)}

    cats, series, unit = timeline(episodes)
    size_cats, size_series = cluster_sizes(clusters)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<div class="sub">From {escape(source)}. Event times in UTC. No prompt text: alerts carry '
        "counts, shares, hashes and prefixes only.</div>",
        '<div class="tiles">',
        _tile(len(current), "alerts (episodes)"),
        _tile(len(alerts), "alert records incl. revisions"),
        _tile(len(accounts), "accounts accused"),
        _tile(len(clusters), "cluster alerts"),
        *(_tile(by_sev.get(s, 0), s) for s in ("critical", "high", "medium", "low")),
        "</div>",
        f"<h2>Alert timeline by campaign type (new episodes per {unit})</h2>",
        svg.legend(campaigns, camp_colours) if campaigns else "",
        svg.stacked_bars(cats, series, camp_colours, y_label="alerts") if cats else "<p>No alerts.</p>",
        '<div class="grid"><div>',
        "<h2>Cluster-size distribution</h2>",
        svg.legend(sorted(size_series), camp_colours) if size_series else "",
        svg.stacked_bars(size_cats, size_series, camp_colours, width=520, height=240, y_label="clusters")
        if size_series
        else "<p>No cluster alerts.</p>",
        "</div><div>",
        "<h2>Top reasons</h2>",
        svg.hbars(top_reasons(current)) if current else "<p>No alerts.</p>",
        "</div></div>",
    ]
    parts.append("<h2>Largest cluster: linkage graph</h2>")
    if graph is None:
        parts.append("<p>No cluster alerts.</p>")
    else:
        families = sorted({kind for _, _, kind in graph.edges})
        colours = {f: FAMILY_COLOURS.get(f, "#999999") for f in families}
        parts += [
            f'<p class="note">Alert {escape(graph.alert_id)}, cluster {escape(graph.subject)}, '
            f"{graph.accounts} accounts. {escape(graph.note)} Edge colour = linkage family.</p>",
            svg.legend(families, colours),
            svg.graph(graph.nodes, graph.edges, colours),
        ]
    parts += [
        "<h2>Most severe alerts</h2>",
        '<p class="note">Click a column header to sort.</p>',
        _alerts_table(current),
        f"<script>{SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)


def build_report(
    alerts_path: Path, out: Path, events: Sequence[Path] | None = None, title: str | None = None
) -> ReportSummary:
    """Read alerts (and optionally events), write the HTML page to ``out``."""
    alerts = load_alerts(alerts_path)
    current = latest(alerts)
    clusters = [a for a in current if a["kind"] == "cluster"]
    graph: ClusterGraph | None = None
    if clusters:
        biggest = max(clusters, key=lambda a: (len(a["account_ids"]), a["alert_id"]))
        if events:
            keys, share, minimum = linkage_keys(events)
            graph = graph_from_keys(biggest, keys, share, minimum)
        else:
            graph = graph_from_evidence(biggest)
    source = alerts_path.name + (f" and {len(events)} event input(s)" if events else "")
    html = render_html(alerts, graph, title or "Distillation detector: analyst report", source)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return ReportSummary(
        alerts=len(alerts),
        alert_ids=len(current),
        accounts=len({x for a in current for x in a["account_ids"]}),
        clusters=len(clusters),
        graph_source=graph.source if graph else None,
        out=out,
    )
