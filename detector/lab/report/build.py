"""The analyst report: one static HTML page from an alerts file (and optionally the events behind it).

It answers who, since when, how sure, why and what next. Headline numbers count **episodes** (one per
``alert_id``; revisions are updates). Charts: new episodes over time (accusations by campaign type, low
leads apart), cluster sizes, top reasons by rule title, and a linkage picture of the largest accused
cluster (its strongest shared keys labelled, its members grouped by the keys they hold). The episode
explorer lists every episode (no cut): filter by severity, campaign type, kind and time; expand a
cluster to its members, the keys that link them, its evidence per axis, its score with the model's
explanation, its account alerts and its timeline; select episodes and export their accounts as CSV or
JSON for enforcement.

The page is one self-contained file (inline CSS, SVG, data and script; no network) and carries no
prompt text: alerts never hold any, and with ``--events`` the events go through the engine, whose
enrichment drops prompt text before anything is kept; the report reads only linkage keys (hashes and
prefixes) from its state.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from detector.contracts import SEVERITIES, SEVERITY_RANK, Severity
from detector.lab.report import svg
from detector.lab.report.episodes import build_episodes
from detector.lab.report.linkage import (
    FAMILY_COLOURS,
    Linkage,
    draw,
    linkage_from_evidence,
    linkage_from_keys,
)

#: One colour per severity, lowest first.
SEVERITY_COLOURS = dict(zip(SEVERITIES, ("#9ecae1", "#fdae6b", "#e6550d", "#a50f15"), strict=True))
SIZE_BUCKETS = ((2, 2), (3, 5), (6, 10), (11, 20), (21, 50), (51, 100), (101, 500), (501, 10**9))
NO_CAMPAIGN = "(none)"
#: The timeline's series for low-severity episodes (leads for an analyst, not accusations).
LOW_LEADS = "low leads (any campaign)"


@dataclass
class ReportSummary:
    """What went into a report (printed by the command)."""

    revisions: int
    episodes: int
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


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _campaign_name(e: dict[str, Any]) -> str:
    return str(e.get("campaign") or NO_CAMPAIGN)


# ----------------------------------------------------------------------------------------------
def timeline(episodes: Sequence[dict[str, Any]]) -> tuple[list[str], dict[str, list[float]], str]:
    """New episodes per hour (or per day beyond three days) when first raised: episodes at medium or
    above by campaign type, low leads as one series of their own (listed last)."""
    if not episodes:
        return [], {}, "hour"
    times = [_ts(e["detected"]) for e in episodes]
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
    for e, t in zip(episodes, times, strict=True):
        name = LOW_LEADS if e["severity"] == "low" else _campaign_name(e)
        series[name][int((t - t0) / step)] += 1
    ordered = sorted(k for k in series if k != LOW_LEADS) + ([LOW_LEADS] if LOW_LEADS in series else [])
    return cats, {k: series[k] for k in ordered}, unit


def cluster_sizes(clusters: Sequence[dict[str, Any]]) -> tuple[list[str], dict[str, list[float]]]:
    """Cluster episodes (latest revision) per size bucket, by campaign type."""
    cats = [
        f"{lo}" if lo == hi else (f">{lo - 1}" if hi >= 10**9 else f"{lo}-{hi}") for lo, hi in SIZE_BUCKETS
    ]
    series: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(cats))
    for e in clusters:
        size = len(e["accounts"])
        for i, (lo, hi) in enumerate(SIZE_BUCKETS):
            if lo <= size <= hi:
                series[_campaign_name(e)][i] += 1
                break
    return cats, dict(sorted(series.items()))


def top_reasons(episodes: Sequence[dict[str, Any]], n: int = 12) -> list[tuple[str, float]]:
    """How many episodes cite each rule (by title) or model (by name)."""
    counts = Counter(r.get("title") or r["name"] for e in episodes for r in e.get("reasons") or [])
    return [(name, float(c)) for name, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


# ----------------------------------------------------------------------------------------------
def linkage_keys(events: Sequence[Path]) -> tuple[Any, float, int]:
    """Replay ``events`` through a fresh engine; its linkage keys and common-key thresholds."""
    from detector.app import build_engine
    from detector.io.files import expand_inputs
    from detector.runtime.replay import replay

    engine = build_engine()
    replay(expand_inputs(list(events)), engine, None)
    link = engine.settings.link
    return engine.state.key_rows(), link.common_share, link.common_min_accounts


# ----------------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
h4{margin:6px 0}h5{margin:6px 0 2px;font-size:12px;text-transform:uppercase;color:#555}
.sub{color:#666;font-size:13px}.tiles{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.tile{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:120px}
.tile b{display:block;font-size:22px}.tile span{color:#666;font-size:12px}
.legend{font-size:12px;margin:4px 0 8px}.key{margin-right:14px;white-space:nowrap}
.key i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
svg{width:100%;height:auto}table{border-collapse:collapse;width:100%;font-size:12px}
th,td{border-bottom:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#fafafa}.note{font-size:12px;color:#555}td.n{text-align:right}
.sev-critical{color:#a50f15;font-weight:600}.sev-high{color:#e6550d;font-weight:600}
.sev-medium{color:#b35806;font-weight:600}.sev-low{color:#4a7ba6}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:24px}
.filters{display:flex;flex-wrap:wrap;gap:14px;align-items:center;background:#f6f8fa;padding:10px;
border-radius:6px;font-size:13px;position:sticky;top:0;z-index:2}
.filters label{white-space:nowrap}button{cursor:pointer}
tr.ep:hover{background:#fbfbf2}tr.detail>td{background:#fcfcfd;border-bottom:2px solid #ccd}
.detail-grid{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:16px}
.detail-grid section{min-width:0}.d-keys{grid-column:span 2}
.d-members,.d-children,.d-timeline{grid-column:1/-1}
.member-list{columns:4;font-size:11px;margin:0;padding-left:16px;max-height:320px;overflow:auto}
table.keys-table{table-layout:fixed}.keys-table th:first-child{width:80px}
.keys-table th:last-child{width:150px}
code.key{font-size:11px;word-break:break-all}.bar{display:inline-block;height:8px;background:#90a4ae}
.fam{font-weight:600}td.why{max-width:420px}
"""


def _tile(value: object, label: str) -> str:
    return f'<div class="tile"><b>{escape(str(value))}</b><span>{escape(label)}</span></div>'


def _filters(campaigns: list[str]) -> str:
    sev = "".join(
        f'<label><input type="checkbox" class="f-sev" value="{s}" checked> {s}</label>'
        for s in reversed(SEVERITIES)
    )
    camp = "".join(f'<option value="{escape(c)}">{escape(c or NO_CAMPAIGN)}</option>' for c in campaigns)
    return (
        '<div class="filters">'
        f"<span>Severity {sev}</span>"
        f'<label>Campaign <select id="f-campaign"><option value="*">all</option>{camp}</select></label>'
        '<label>Kind <select id="f-kind"><option value="*">all</option><option value="cluster">cluster'
        '</option><option value="account">account</option></select></label>'
        '<label>Raised after <input type="datetime-local" id="f-from"></label>'
        '<label>and before <input type="datetime-local" id="f-to"></label> <span class="note">(UTC)</span>'
        '<label><input type="checkbox" id="pick-shown"> select all shown</label>'
        '<button id="clear-picks" type="button">clear selection</button>'
        '<button id="export-csv" type="button">Export accounts (CSV)</button>'
        '<button id="export-json" type="button">Export accounts (JSON)</button>'
        '<span id="export-status" class="note"></span></div>'
        '<p id="shown-count" class="note"></p>'
    )


_HEAD = (
    "",
    "",
    "severity",
    "kind",
    "subject",
    "campaign",
    "accounts",
    "score",
    "evidence since",
    "first raised",
    "revisions",
    "why",
)


def render_html(alerts: Sequence[dict[str, Any]], link: Linkage | None, title: str, source: str) -> str:
    """The whole page."""
    episodes = build_episodes(alerts)
    clusters = [e for e in episodes if e["kind"] == "cluster"]
    accused = {a for e in episodes if Severity(e["severity"]) >= Severity.MEDIUM for a in e["accounts"]}
    leads = {a for e in episodes for a in e["accounts"]} - accused
    by_sev = Counter(e["severity"] for e in episodes)
    campaigns = sorted({e["campaign"] for e in episodes})
    names = [*sorted({_campaign_name(e) for e in episodes if e["severity"] != "low"}), LOW_LEADS]
    camp_colours = {c: svg.colour(i) for i, c in enumerate(names)} | {LOW_LEADS: "#c6dbef"}
    cats, series, unit = timeline(episodes)
    size_cats, size_series = cluster_sizes([e for e in clusters if e["severity"] != "low"])
    data = json.dumps(episodes, separators=(",", ":"), sort_keys=True).replace("</", "<\\/")
    script = resources.files("detector.lab.report").joinpath("explorer.js").read_text(encoding="utf-8")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<div class="sub">From {escape(source)}. Event times in UTC. Counted in episodes (one per alert '
        "id; revisions are updates). No prompt text: alerts carry counts, shares, hashes and prefixes.</div>",
        '<div class="tiles">',
        _tile(len(episodes), "alert episodes"),
        _tile(len(alerts), "revisions (updates included)"),
        _tile(len(accused), "accounts accused (medium+)"),
        _tile(len(leads), "accounts in low leads only"),
        _tile(len(clusters), "cluster episodes"),
        *(_tile(by_sev.get(s, 0), f"{s} episodes") for s in reversed(SEVERITIES)),
        "</div>",
        f"<h2>New episodes per {unit}: accusations by campaign type, low leads apart</h2>",
        svg.legend(list(series), camp_colours) if series else "",
        svg.stacked_bars(cats, series, camp_colours, y_label="episodes") if cats else "<p>No alerts.</p>",
        '<div class="grid"><div>',
        "<h2>Cluster sizes (accused clusters)</h2>",
        svg.legend(sorted(size_series), camp_colours) if size_series else "",
        svg.stacked_bars(size_cats, size_series, camp_colours, width=520, height=240, y_label="clusters")
        if size_series
        else "<p>No cluster accused at medium or above.</p>",
        "</div><div>",
        "<h2>Top reasons (episodes citing each)</h2>",
        svg.hbars(top_reasons(episodes)) if episodes else "<p>No alerts.</p>",
        "</div></div>",
        "<h2>Linkage of the largest accused cluster</h2>",
    ]
    if link is None:
        parts.append("<p>No cluster alerts.</p>")
    else:
        families = sorted({k[0] for k in link.keys})
        parts += [
            f'<p class="note">Alert {escape(link.alert_id)}, cluster {escape(link.subject)}, '
            f"{len(link.members)} accounts. {escape(link.note)} "
            "Edge colour = key family; width = group size.</p>",
            svg.legend(families, {f: FAMILY_COLOURS.get(f, "#999999") for f in families}),
            draw(link),
        ]
    parts += [
        "<h2>Episodes</h2>",
        '<p class="note">Every episode, most severe first. ▸ expands one: members, shared keys, evidence by '
        "axis, score and model explanation, account alerts, timeline. Export takes the selected episodes' "
        "accounts (all shown episodes when none is selected).</p>",
        _filters(campaigns),
        '<table id="episodes"><thead><tr>' + "".join(f"<th>{h}</th>" for h in _HEAD) + "</tr></thead>"
        "<tbody></tbody></table>",
        f'<script type="application/json" id="episodes-data">{data}</script>',
        f"<script>{script}</script>",
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
    link: Linkage | None = None
    if clusters:
        biggest = max(
            clusters,
            key=lambda a: (
                a["severity"] != "low",
                len(a["account_ids"]),
                SEVERITY_RANK[a["severity"]],
                a["alert_id"],
            ),
        )
        if events:
            keys, share, minimum = linkage_keys(events)
            link = linkage_from_keys(biggest, keys, share, minimum)
        else:
            link = linkage_from_evidence(biggest)
    source = alerts_path.name + (f" and {len(events)} event input(s)" if events else "")
    html = render_html(alerts, link, title or "Distillation detector: analyst report", source)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return ReportSummary(
        revisions=len(alerts),
        episodes=len(current),
        accounts=len({x for a in current for x in a["account_ids"]}),
        clusters=len(clusters),
        graph_source=link.source if link else None,
        out=out,
    )
