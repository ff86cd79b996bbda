"""Generate the Grafana dashboards (``ts-overview.json``, ``pipeline-health.json``) from one description.

Run ``python dashboards/build.py`` after editing; ``tests/test_dashboards.py`` fails when the committed
JSON differs from what this script writes. Every panel query filters on ``instance=~"$instance"`` and
uses ``$__rate_interval`` for rate windows, so the same panels work for one daemon or a fleet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance"'
RI = "$__rate_interval"

Panel = dict[str, Any]

#: Marks on every time series: each rule reload (SIGHUP or changed files), red when it failed.
ANNOTATIONS: list[dict[str, Any]] = [
    {
        "name": f"Rule reloads ({result})",
        "datasource": DS,
        "enable": True,
        "iconColor": colour,
        "expr": f'changes(detector_rule_reloads_total{{{SEL}, result="{result}"}}[1m]) > 0',
        "step": "60s",
        "titleFormat": f"rules reloaded ({result})",
        "textFormat": "{{instance}}",
        "useValueForTime": False,
    }
    for result, colour in (("ok", "#5794F2"), ("failed", "#F2495C"))
]


def _targets(queries: list[tuple[str, str]], fmt: str) -> list[dict[str, Any]]:
    extra: dict[str, Any] = {"format": fmt, "instant": True} if fmt != "time_series" else {}
    return [
        {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend, **extra}
        for i, (expr, legend) in enumerate(queries)
    ]


def panel(
    kind: str,
    title: str,
    description: str,
    queries: list[tuple[str, str]],
    w: int,
    h: int,
    unit: str = "short",
    stacked: bool = False,
    bars: bool = False,
    options: dict[str, Any] | None = None,
    fmt: str = "time_series",
) -> Panel:
    """One panel; ids and positions are filled in by ``layout``."""
    custom: dict[str, Any] = {}
    if kind == "timeseries":
        custom = {
            "drawStyle": "bars" if bars else "line",
            "fillOpacity": 60 if bars else 10,
            "lineWidth": 1,
            "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
            "showPoints": "never",
        }
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": _targets(queries, fmt),
        "fieldConfig": {"defaults": {"unit": unit, "custom": custom}, "overrides": []},
        "options": options or {},
        "gridPos": {"w": w, "h": h, "x": 0, "y": 0},
    }


def row(title: str) -> Panel:
    """A collapsible row header."""
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24, "h": 1}}


def layout(panels: list[Panel]) -> list[Panel]:
    """Assign ids and flow panels left to right, top to bottom, on Grafana's 24-column grid."""
    x = y = line_h = 0
    for i, p in enumerate(panels, start=1):
        p["id"] = i
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if p["type"] == "row" or x + w > 24:
            x, y, line_h = 0, y + line_h, 0
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x += w
        line_h = max(line_h, h)
        if p["type"] == "row":
            x, y, line_h = 0, y + h, 0
    return panels


def dashboard(uid: str, title: str, description: str, tags: list[str], panels: list[Panel]) -> dict[str, Any]:
    """A dashboard in Grafana's JSON model with the ``datasource`` and ``instance`` variables."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["distillation-detector", *tags],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "utc",
        "annotations": {"list": ANNOTATIONS},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": "instance",
                    "label": "Instance",
                    "type": "query",
                    "datasource": DS,
                    "definition": "label_values(detector_build_info, instance)",
                    "query": {"query": "label_values(detector_build_info, instance)", "refId": "instance"},
                    "refresh": 2,
                    "multi": True,
                    "includeAll": True,
                    "allValue": ".*",
                    "current": {},
                    "hide": 0,
                    "sort": 1,
                },
            ]
        },
        "panels": layout(panels),
    }


def ts_overview() -> dict[str, Any]:
    """What T&S analysts watch: alerts, who is under alert, clusters, extraction signals, suppressions."""
    share = (
        f'sum by (signal) (rate(detector_signal_events_total{{{SEL}, signal=~"{{sig}}"}}[{RI}]))'
        f" / ignoring(signal) group_left sum(rate(detector_events_processed_total{{{SEL}}}[{RI}]))"
    )
    return dashboard(
        "detector-ts-overview",
        "T&S overview",
        "Distillation-attack alerts for trust-and-safety analysts: volume by severity and campaign type, "
        "accounts under alert, cluster sizes, extraction signals and allow-list suppressions. "
        "No account ids: drill into the alerts topic or `detector report` for who.",
        ["trust-and-safety"],
        [
            row("Alerts"),
            panel(
                "stat",
                "Alert episodes in range",
                "New alert episodes (one per alert_id) in the selected time range; revisions, which "
                "update an episode, are not counted.",
                [(f"sum(increase(detector_alert_episodes_total{{{SEL}}}[$__range]))", "episodes")],
                6,
                5,
            ),
            panel(
                "stat",
                "Accounts under alert",
                "Distinct accounts named by open alert episodes.",
                [(f"sum(detector_accounts_under_alert{{{SEL}}})", "accounts")],
                6,
                5,
            ),
            panel(
                "stat",
                "Clusters tracked",
                "Linked account clusters at the last cluster build.",
                [(f"sum(detector_clusters_tracked{{{SEL}}})", "clusters")],
                6,
                5,
            ),
            panel(
                "stat",
                "High and critical alerts in range",
                "New alert episodes that opened at severity high or critical in the selected time range.",
                [
                    (
                        f"sum(increase(detector_alert_episodes_total"
                        f'{{{SEL}, severity=~"high|critical"}}[$__range]))',
                        "high+critical",
                    )
                ],
                6,
                5,
            ),
            panel(
                "timeseries",
                "Alerts over time by severity",
                "New alert episodes per rate interval, stacked by the severity they opened at.",
                [
                    (
                        f"sum by (severity) (increase(detector_alert_episodes_total{{{SEL}}}[{RI}]))",
                        "{{severity}}",
                    )
                ],
                12,
                8,
                stacked=True,
                bars=True,
            ),
            panel(
                "timeseries",
                "Alerts over time by campaign type",
                "New alert episodes per rate interval, stacked by campaign type (what is being extracted).",
                [
                    (
                        f"sum by (campaign_type) (increase(detector_alert_episodes_total{{{SEL}}}[{RI}]))",
                        "{{campaign_type}}",
                    )
                ],
                12,
                8,
                stacked=True,
                bars=True,
            ),
            panel(
                "timeseries",
                "Alerts by kind",
                "New account versus cluster (hydra) alert episodes, and revisions (updates: escalations "
                "and growth) of either kind, per rate interval.",
                [
                    (f"sum by (kind) (increase(detector_alert_episodes_total{{{SEL}}}[{RI}]))", "{{kind}}"),
                    (f"sum(increase(detector_alert_revisions_total{{{SEL}}}[{RI}]))", "revisions"),
                ],
                8,
                8,
            ),
            panel(
                "timeseries",
                "Open alert episodes",
                "Alert episodes still open (a verdict within episode_idle), and those closed as idle.",
                [
                    (f"sum(detector_alert_episodes_open{{{SEL}}})", "open"),
                    (f"sum(increase(detector_alert_episodes_closed_total{{{SEL}}}[{RI}]))", "closed"),
                ],
                8,
                8,
            ),
            panel(
                "bargauge",
                "Cluster sizes (accounts per cluster alert)",
                "How many cluster alerts named at most N accounts, cumulative since start.",
                [(f"sum by (le) (detector_alert_cluster_size_bucket{{{SEL}}})", "{{le}}")],
                8,
                8,
                options={"displayMode": "gradient", "orientation": "vertical", "showUnfilled": True},
                fmt="heatmap",
            ),
            panel(
                "timeseries",
                "Cluster size, p50 and p90",
                "Quantiles of accounts per cluster alert over the rate interval (empty while none fire).",
                [
                    (
                        f"histogram_quantile(0.5, sum by (le) "
                        f"(rate(detector_alert_cluster_size_bucket{{{SEL}}}[{RI}])))",
                        "p50",
                    ),
                    (
                        f"histogram_quantile(0.9, sum by (le) "
                        f"(rate(detector_alert_cluster_size_bucket{{{SEL}}}[{RI}])))",
                        "p90",
                    ),
                ],
                8,
                8,
            ),
            row("Extraction signals"),
            panel(
                "timeseries",
                "CoT-extraction share of traffic",
                "Share of processed requests eliciting chain-of-thought or coercing the reasoning trace.",
                [(share.replace("{sig}", "cot|coercion"), "{{signal}}")],
                8,
                8,
                unit="percentunit",
            ),
            panel(
                "timeseries",
                "New-model pivot share",
                "Share of processed requests sent to a newly launched model (the pivot signal).",
                [(share.replace("{sig}", "new_model"), "{{signal}}")],
                8,
                8,
                unit="percentunit",
            ),
            panel(
                "timeseries",
                "Other signal shares",
                "Logprob harvesting, tool-heavy (agentic) and hosted-IP shares of processed requests.",
                [(share.replace("{sig}", "logprob|tools_heavy|hosted_ip"), "{{signal}}")],
                8,
                8,
                unit="percentunit",
            ),
            row("Rules and allow-list"),
            panel(
                "timeseries",
                "Rule hits by rule",
                "Rule hits per rate interval; shadow rules (evaluated, never alerting) have mode=shadow.",
                [
                    (
                        f"sum by (rule, mode) (increase(detector_rule_hits_total{{{SEL}}}[{RI}]))",
                        "{{rule}} ({{mode}})",
                    )
                ],
                12,
                8,
            ),
            panel(
                "bargauge",
                "Rule hits in range",
                "Hits per rule in the selected range, live and shadow.",
                [
                    (
                        f"sort_desc(sum by (rule, mode) "
                        f"(increase(detector_rule_hits_total{{{SEL}}}[$__range])))",
                        "{{rule}} ({{mode}})",
                    )
                ],
                6,
                8,
                options={"displayMode": "basic", "orientation": "horizontal"},
            ),
            panel(
                "timeseries",
                "Allow-list suppressions by type",
                "Alerts suppressed by allow-list entries, by entry type, per rate interval.",
                [
                    (
                        f"sum by (type) (increase(detector_allowlist_suppressed_total{{{SEL}}}[{RI}]))",
                        "{{type}}",
                    )
                ],
                6,
                8,
            ),
            row("Response"),
            panel(
                "timeseries",
                "Decisions by action",
                "Response decisions applied per rate interval, by action (docs/response.md): what the "
                "gateway was asked to enforce. Dry-run decisions count too.",
                [
                    (
                        f'sum by (action) (increase(detector_decisions_total{{{SEL}, op="apply"}}[{RI}]))',
                        "{{action}}",
                    )
                ],
                8,
                8,
                stacked=True,
                bars=True,
            ),
            panel(
                "timeseries",
                "Lifts by action and reason",
                "Decisions lifted per rate interval: expired (event time) or withdrawn (an analyst's "
                "false positive).",
                [
                    (
                        f"sum by (action, reason) "
                        f'(increase(detector_decisions_total{{{SEL}, op="lift"}}[{RI}]))',
                        "{{action}} {{reason}}",
                    )
                ],
                8,
                8,
            ),
            panel(
                "timeseries",
                "Dispositions and false-positive share",
                "Analyst dispositions per rate interval by verdict, and the share of false positives "
                "among the dispositions of the selected range.",
                [
                    (
                        f"sum by (verdict) (increase(detector_dispositions_total{{{SEL}}}[{RI}]))",
                        "{{verdict}}",
                    ),
                    (
                        f'sum(increase(detector_dispositions_total{{{SEL}, verdict="false_positive"}}'
                        f"[$__range])) / clamp_min(sum(increase(detector_dispositions_total{{{SEL}}}"
                        f"[$__range])), 1)",
                        "false-positive share",
                    ),
                ],
                8,
                8,
            ),
            row("Models"),
            panel(
                "timeseries",
                "Model score quantiles",
                "Median and 90th percentile of each ONNX model's scores over the accounts and clusters it "
                "scored (a drift in the distribution is the first sign a model no longer fits the traffic).",
                [
                    (
                        f"histogram_quantile({q}, sum by (le, model) "
                        f"(rate(detector_model_score_bucket{{{SEL}}}[{RI}])))",
                        "{{model}} p" + str(int(q * 100)),
                    )
                    for q in (0.5, 0.9)
                ],
                16,
                8,
                unit="percentunit",
            ),
            panel(
                "table",
                "Model execution provider",
                "The onnxruntime execution provider each model runs on (CUDA when a GPU is present).",
                [(f"max by (instance, model, provider) (detector_model_provider{{{SEL}}})", "{{model}}")],
                8,
                8,
                options={"showHeader": True},
                fmt="table",
            ),
        ],
    )


def pipeline_health() -> dict[str, Any]:
    """What SREs watch: throughput, lag, latency, rejects, checkpoints, state."""
    return dashboard(
        "detector-pipeline-health",
        "Pipeline health",
        "The detector daemon as a stream processor: throughput, consumer lag, event-time delay, batch "
        "latency, rejects by reason, checkpoint health and state size.",
        ["sre"],
        [
            row("Throughput and lag"),
            panel(
                "timeseries",
                "Throughput",
                "Records read, decoded into events and folded into window state, per second.",
                [
                    (f"sum(rate(detector_events_consumed_total{{{SEL}}}[{RI}]))", "consumed"),
                    (f"sum(rate(detector_events_decoded_total{{{SEL}}}[{RI}]))", "decoded"),
                    (f"sum(rate(detector_events_processed_total{{{SEL}}}[{RI}]))", "processed"),
                ],
                12,
                8,
                unit="reqps",
            ),
            panel(
                "timeseries",
                "Consumer lag by partition",
                "Records behind the end of each source partition.",
                [(f"sum by (partition) (detector_consumer_lag{{{SEL}}})", "partition {{partition}}")],
                12,
                8,
            ),
            panel(
                "timeseries",
                "Watermark delay",
                "Wall clock minus the event-time watermark (includes the allowed lateness).",
                [(f"max(detector_watermark_delay_seconds{{{SEL}}})", "delay")],
                8,
                8,
                unit="s",
            ),
            panel(
                "stat",
                "Seconds since last batch",
                "Wall-clock seconds since the daemon last read a batch from its source.",
                [(f"time() - max(detector_last_batch_timestamp_seconds{{{SEL}}})", "seconds")],
                8,
                8,
                unit="s",
            ),
            panel(
                "timeseries",
                "Ticks closed",
                "Event-time ticks closed per second (features computed, rules run).",
                [(f"sum(rate(detector_ticks_total{{{SEL}}}[{RI}]))", "ticks/s")],
                8,
                8,
            ),
            row("Latency and errors"),
            panel(
                "timeseries",
                "Batch processing latency",
                "Quantiles of wall time per source batch.",
                [
                    (
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(detector_batch_seconds_bucket{{{SEL}}}[{RI}])))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.95, 0.99)
                ],
                12,
                8,
                unit="s",
            ),
            panel(
                "timeseries",
                "Rejects by reason",
                "Records sent to the dead-letter output per second, by reason code.",
                [(f"sum by (reason) (rate(detector_events_rejected_total{{{SEL}}}[{RI}]))", "{{reason}}")],
                12,
                8,
                unit="reqps",
                stacked=True,
            ),
            panel(
                "timeseries",
                "Duplicates and late events",
                "Events dropped as already counted, and events older than the closed ticks.",
                [
                    (f"sum(rate(detector_events_duplicate_total{{{SEL}}}[{RI}]))", "duplicates"),
                    (f"sum(rate(detector_events_late_total{{{SEL}}}[{RI}]))", "late"),
                ],
                12,
                8,
                unit="reqps",
            ),
            panel(
                "stat",
                "Reject ratio",
                "Rejected records over records read, over the rate interval.",
                [
                    (
                        f"sum(rate(detector_events_rejected_total{{{SEL}}}[{RI}])) / "
                        f"clamp_min(sum(rate(detector_events_consumed_total{{{SEL}}}[{RI}])), 1e-9)",
                        "rejects",
                    )
                ],
                12,
                8,
                unit="percentunit",
            ),
            row("Checkpoints and state"),
            panel(
                "timeseries",
                "Checkpoint duration",
                "p50 and p95 wall time of one commit (flush sinks, write state, commit offsets).",
                [
                    (
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(detector_checkpoint_seconds_bucket{{{SEL}}}[{RI}])))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.95)
                ],
                8,
                8,
                unit="s",
            ),
            panel(
                "timeseries",
                "Checkpoints and failures",
                "Commits per rate interval, and failed commits.",
                [
                    (f"sum(increase(detector_checkpoint_seconds_count{{{SEL}}}[{RI}]))", "commits"),
                    (f"sum(increase(detector_checkpoint_failures_total{{{SEL}}}[{RI}]))", "failures"),
                ],
                8,
                8,
            ),
            panel(
                "timeseries",
                "State size by table",
                "Estimated bytes held in window state, per table.",
                [(f"sum by (table) (detector_state_bytes{{{SEL}}})", "{{table}}")],
                8,
                8,
                unit="bytes",
                stacked=True,
            ),
            panel(
                "timeseries",
                "Accounts and clusters tracked",
                "Accounts in window state and linked clusters at the last build.",
                [
                    (f"sum(detector_accounts_tracked{{{SEL}}})", "accounts"),
                    (f"sum(detector_clusters_tracked{{{SEL}}})", "clusters"),
                ],
                12,
                8,
            ),
            panel(
                "timeseries",
                "Process memory",
                "Resident and virtual memory of each daemon process (client_python's process collector).",
                [
                    (
                        f"sum by (instance) (process_resident_memory_bytes{{{SEL}}}) "
                        f"and on (instance) detector_build_info{{{SEL}}}",
                        "{{instance}} resident",
                    ),
                ],
                12,
                8,
                unit="bytes",
            ),
            panel(
                "timeseries",
                "Process CPU",
                "CPU cores used by each daemon process (rate of process_cpu_seconds_total).",
                [
                    (
                        f"sum by (instance) (rate(process_cpu_seconds_total{{{SEL}}}[{RI}])) "
                        f"and on (instance) detector_build_info{{{SEL}}}",
                        "{{instance}}",
                    ),
                ],
                12,
                8,
            ),
            panel(
                "table",
                "Build info",
                "Version of each running daemon.",
                [(f"max by (instance, version) (detector_build_info{{{SEL}}})", "{{instance}} {{version}}")],
                12,
                8,
                options={"showHeader": True},
                fmt="table",
            ),
        ],
    )


DASHBOARDS = {"ts-overview.json": ts_overview, "pipeline-health.json": pipeline_health}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


def main() -> None:
    """Write the dashboards beside this script."""
    for name, text in render().items():
        (HERE / name).write_text(text)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
