"""The linkage picture of one cluster: its strongest shared keys, labelled, joined to groups of members.

A drawing of every account and every pair is an unreadable tangle; an analyst asks "what links them,
and who shares what". So the picture is bipartite: on the left the cluster's most-shared keys (payment
fingerprints, network prefixes, client fingerprints, reseller, system-prompt and template hashes), each
labelled with its family and how many members share it; on the right the members grouped by which of
those keys they hold (one box per group, with its size and a few account ids). Edge colour is the key's
family, edge width the group's size. With only the alert (no events), per-account keys are unknown:
every key joins one box, the whole cluster.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from html import escape
from typing import Any

from detector.lab.report.episodes import shared_keys

#: One colour per linkage family (``LINK_FAMILIES``; tests/test_vocabulary.py checks they match).
FAMILY_COLOURS = {
    "payment": "#e15759",
    "ip": "#4e79a7",
    "client": "#59a14f",
    "reseller": "#b07aa1",
    "sysprompt": "#f28e2b",
    "template": "#c9a800",
    "signup": "#76b7b2",
}
#: Keys drawn (the strongest: most members) and member groups drawn (the largest; the rest pooled).
TOP_KEYS = 12
TOP_GROUPS = 9


@dataclass
class Linkage:
    """What links one cluster's members: (family, key, members or None when unknown, members sharing)."""

    alert_id: str
    subject: str
    members: list[str]
    keys: list[tuple[str, str, list[str] | None, int]] = field(default_factory=list)
    source: str = "evidence"
    note: str = ""


def linkage_from_evidence(alert: dict[str, Any]) -> Linkage:
    """From the alert alone: the shared keys its evidence lists, with their counts."""
    link = Linkage(alert["alert_id"], alert["subject"], sorted(alert["account_ids"]))
    for family, key, n in shared_keys(alert.get("evidence") or {}):
        link.keys.append((family, key, None, n or 0))
    link.note = (
        "From the alert's evidence: the most-shared keys per family and how many members share each. "
        "Pass --events to group the members by the keys they hold."
    )
    return link


def linkage_from_keys(alert: dict[str, Any], keys: Any, common_share: float, common_min: int) -> Linkage:
    """From the engine's linkage table (account_id, family, key, ...) after replaying the events.

    Keys held by more than ``common_share`` of all accounts (and more than ``common_min``) link nobody,
    as in linkage itself; sign-up slots are time windows, not shared values, and are left out.
    """
    import polars as pl

    members = sorted(alert["account_ids"])
    link = Linkage(alert["alert_id"], alert["subject"], members, source="events")
    total = keys["account_id"].n_unique() if keys.height else 0
    limit = max(common_share * total, common_min)
    popular = keys.group_by("family", "key").agg(pl.col("account_id").n_unique().alias("n_all"))
    groups = (
        keys.filter(pl.col("account_id").is_in(members) & (pl.col("family") != "signup"))
        .join(popular, on=["family", "key"])
        .filter(pl.col("n_all") <= limit)
        .group_by("family", "key")
        .agg(pl.col("account_id").unique().sort())
        .filter(pl.col("account_id").list.len() >= 2)
        .sort("family", "key")
    )
    for family, key, accounts in groups.iter_rows():
        link.keys.append((family, key, list(accounts), len(accounts)))
    link.keys.sort(key=lambda k: (-k[3], k[0], k[1]))
    held = {a for _, _, accts, _ in link.keys for a in accts or []}
    link.note = (
        f"Recomputed from the events: {len(link.keys)} keys shared inside the cluster; "
        f"{len(members) - len(held)} of {len(members)} members hold none of them any more."
    )
    return link


def _groups(
    link: Linkage, shown: list[tuple[str, str, list[str] | None, int]]
) -> list[tuple[set[int], list[str]]]:
    """Members grouped by the set of shown keys they hold (largest groups first; the rest pooled)."""
    if any(accts is None for _, _, accts, _ in shown) or not shown:
        return [(set(range(len(shown))), link.members)]
    holds: dict[str, set[int]] = defaultdict(set)
    for i, (_, _, accts, _) in enumerate(shown):
        for a in accts or []:
            holds[a].add(i)
    by_sig: dict[frozenset[int], list[str]] = defaultdict(list)
    for a in link.members:
        by_sig[frozenset(holds.get(a, set()))].append(a)
    ranked = sorted(by_sig.items(), key=lambda kv: (-len(kv[1]), sorted(kv[0])))
    out = [(set(sig), accts) for sig, accts in ranked[:TOP_GROUPS]]
    rest = ranked[TOP_GROUPS:]
    if rest:
        out.append((set().union(*(sig for sig, _ in rest)), [a for _, accts in rest for a in accts]))
    return out


def _label(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def draw(link: Linkage) -> str:
    """The picture as one ``<svg>`` (labels escaped; same input, same bytes)."""
    shown = link.keys[:TOP_KEYS]
    groups = _groups(link, shown)
    row_h, top, width = 44, 30, 1000
    height = top + max(len(shown), len(groups), 1) * row_h + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="linkage of cluster {escape(link.subject)}" font-family="system-ui, sans-serif" '
        'font-size="12">',
        f'<text x="10" y="18" font-weight="600">Strongest shared keys '
        f"({len(shown)} of {len(link.keys)})</text>",
        f'<text x="640" y="18" font-weight="600">Members grouped by the keys they hold '
        f"({len(link.members)} accounts)</text>",
    ]
    key_y = [top + i * row_h + row_h / 2 for i in range(len(shown))]
    group_y = [top + i * row_h + row_h / 2 for i in range(len(groups))]
    biggest = max((len(accts) for _, accts in groups), default=1)
    for gi, (sig, accts) in enumerate(groups):
        for ki in sorted(sig):
            family = shown[ki][0]
            w = 1 + 7 * len(accts) / biggest
            colour = FAMILY_COLOURS.get(family, "#999999")
            y1, y2 = key_y[ki], group_y[gi]
            parts.append(
                f'<path d="M370,{y1:.0f} C505,{y1:.0f} 505,{y2:.0f} 640,{y2:.0f}" fill="none" '
                f'stroke="{colour}" stroke-opacity="0.55" stroke-width="{w:.1f}" '
                f'class="link e-{escape(family)}"/>'
            )
    for ki, (family, key, _, n) in enumerate(shown):
        y = key_y[ki]
        colour = FAMILY_COLOURS.get(family, "#999999")
        parts.append(
            f'<g class="key"><title>{escape(family)}: {escape(key)} ({n} members)</title>'
            f'<rect x="10" y="{y - 16:.0f}" width="360" height="32" rx="5" fill="#fff" stroke="{colour}" '
            'stroke-width="2"/>'
            f'<text x="20" y="{y + 4:.0f}"><tspan fill="{colour}" font-weight="600">{escape(family)}</tspan> '
            f'{escape(_label(key, 30))} <tspan font-weight="600">({n})</tspan></text></g>'
        )
    for gi, (sig, accts) in enumerate(groups):
        y = group_y[gi]
        sample = ", ".join(_label(a, 16) for a in accts[:3]) + (" …" if len(accts) > 3 else "")
        held = f"{len(sig)} key{'s' if len(sig) != 1 else ''}" if sig else "no shown key"
        parts.append(
            f'<g class="group"><title>{escape(", ".join(accts))}</title>'
            f'<rect x="640" y="{y - 18:.0f}" width="350" height="36" rx="5" fill="#f4f6f8" stroke="#90a4ae"/>'
            f'<text x="650" y="{y - 3:.0f}" font-weight="600">{len(accts)} account'
            f"{'s' if len(accts) != 1 else ''} · {held}</text>"
            f'<text x="650" y="{y + 12:.0f}" fill="#555" font-size="11">{escape(sample)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def family_counts(link: Linkage) -> Counter[str]:
    """How many shared keys of each family the cluster has (for the legend)."""
    return Counter(family for family, _, _, _ in link.keys)
