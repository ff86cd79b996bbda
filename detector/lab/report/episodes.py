"""Alert records -> the episodes the analyst report explores (one per ``alert_id``; revisions are updates).

Each episode is a JSON-ready dict the page's script filters and expands: the latest revision's
severity, score, campaign type, accounts and sentence; its reasons with titles; its evidence sorted by
axis (coordination, extraction, trust, network); the shared linkage keys (hashes, prefixes, client
fingerprints; never content) with how many members share each; its revision timeline; and, for account
episodes, the cluster episodes that hold the account (the page nests them there).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from detector.contracts import SEVERITY_RANK

#: Evidence features by the axis of the evidence model they speak to (issue 17): are these accounts
#: one actor (coordination), are they harvesting capability (extraction), does a known customer explain
#: it (trust). Features not listed here are shown under "other".
AXES: dict[str, tuple[str, ...]] = {
    "coordination": (
        "accounts",
        "active_accounts_24h",
        "link_families",
        "orgs",
        "synchrony_24h",
        "signup_spread_hours",
        "new_account_share",
        "template_top_share_24h",
        "shared_keys_payment",
        "shared_keys_reseller",
        "shared_keys_ip",
        "shared_keys_client",
        "shared_keys_sysprompt",
        "shared_keys_template",
        "shared_keys_signup",
    ),
    "extraction": (
        "requests_24h",
        "requests_1h",
        "requests_per_account_24h",
        "cot_share_24h",
        "coercion_share_24h",
        "rubric_share_24h",
        "logprob_share_24h",
        "n_gt1_share_24h",
        "tools_heavy_share_24h",
        "new_model_share_24h",
        "active_hours_24h",
        "interarrival_cv_24h",
    ),
    "trust": ("account_age_days", "verified", "verified_share", "tier", "tenure_days", "paid_share"),
    "network": ("hosted_ip_share_24h",),
}
_AXIS_OF = {feature: axis for axis, features in AXES.items() for feature in features}
#: Evidence keys that are not features (shown elsewhere, or bookkeeping).
_NOT_FEATURES = {"shared", "links", "revision_event_ts"}
_SHARED = re.compile(r"^(?P<key>.*) \((?P<n>\d+) accounts?\)$")


def shared_keys(evidence: dict[str, Any]) -> list[list[Any]]:
    """[[family, key, accounts sharing it], ...] from an alert's ``evidence.shared``, most shared first."""
    out: list[list[Any]] = []
    for family, values in sorted((evidence.get("shared") or {}).items()):
        for value in values or []:
            m = _SHARED.match(str(value))
            out.append([family, m["key"], int(m["n"])] if m else [family, str(value), None])
    return sorted(out, key=lambda r: (-(r[2] or 0), r[0], r[1]))


def axes(evidence: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """Evidence feature values grouped by axis: {axis: [[feature, value], ...]} (axes in a fixed order)."""
    out: dict[str, list[list[Any]]] = {axis: [] for axis in (*AXES, "other")}
    for name, value in evidence.items():
        if name in _NOT_FEATURES or isinstance(value, dict | list):
            continue
        out[_AXIS_OF.get(name, "other")].append([name, value])
    order = {f: i for i, f in enumerate(f for fs in AXES.values() for f in fs)}
    return {
        axis: sorted(rows, key=lambda r: (order.get(r[0], 10**6), r[0])) for axis, rows in out.items() if rows
    }


def _reason(r: dict[str, Any]) -> dict[str, Any]:
    keep = ("source", "name", "title", "severity", "score", "output", "detail")
    return {k: r.get(k) for k in keep}


def build_episodes(alerts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per episode, most severe first, then largest, then oldest."""
    records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in alerts:
        records[str(a["alert_id"])].append(a)
    episodes: list[dict[str, Any]] = []
    for alert_id, revs in records.items():
        revs.sort(key=lambda a: int(a.get("revision") or 1))
        last = revs[-1]
        evidence = last.get("evidence") or {}
        reasons = [_reason(r) for r in last.get("reasons") or []]
        episodes.append(
            {
                "id": alert_id,
                "kind": last["kind"],
                "subject": last["subject"],
                "severity": last["severity"],
                "score": last.get("score"),
                "campaign": last.get("campaign_type") or "",
                "first": last["first_event_ts"],
                "detected": last["detected_event_ts"],
                "updated": evidence.get("revision_event_ts") or last["detected_event_ts"],
                "accounts": sorted(last["account_ids"]),
                "output": last.get("output")
                or next((r["output"] for r in reasons if r.get("output")), "")
                or "",
                "reasons": reasons,
                "axes": axes(evidence),
                "shared": shared_keys(evidence),
                "links": [str(x) for x in evidence.get("links") or []],
                "timeline": [
                    [
                        int(a.get("revision") or 1),
                        (a.get("evidence") or {}).get("revision_event_ts") or a["detected_event_ts"],
                        a["severity"],
                        len(a["account_ids"]),
                    ]
                    for a in revs
                ],
                "parents": [],
                "children": [],
            }
        )
    clusters = [e for e in episodes if e["kind"] == "cluster"]
    holders: dict[str, list[str]] = defaultdict(list)
    for c in clusters:
        for account in c["accounts"]:
            holders[account].append(c["id"])
    by_id = {e["id"]: e for e in episodes}
    for e in episodes:
        if e["kind"] == "account":
            e["parents"] = sorted(holders.get(e["subject"], []))
            for cid in e["parents"]:
                by_id[cid]["children"].append(e["id"])
    episodes.sort(
        key=lambda e: (-SEVERITY_RANK.get(e["severity"], 0), -len(e["accounts"]), e["detected"], e["id"])
    )
    return episodes
