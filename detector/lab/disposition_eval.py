"""Score alerts against analysts' dispositions: precision overall, per rule and per severity.

An alert's latest disposition labels it: ``confirm`` is a true positive; ``false_positive`` and
``benign_explained`` (real behaviour, legitimate customer) are not. An alert counts under every rule
and model among its reasons (any revision) and under the severity of its latest revision.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
from pydantic import BaseModel
from rich.table import Table

from detector.contracts import SEVERITY_RANK
from detector.decide.dispositions import DispositionStore


class Precision(BaseModel):
    """Labelled alerts of one group and how many analysts confirmed."""

    name: str
    labelled: int
    confirmed: int
    false_positive: int
    benign_explained: int
    precision: float | None


class DispositionEval(BaseModel):
    """Everything ``evaluate --dispositions`` reports."""

    alerts: int
    labelled: int
    overall: Precision
    by_rule: list[Precision]
    by_severity: list[Precision]


def _row(name: str, c: Counter[str]) -> Precision:
    n = c["confirm"] + c["false_positive"] + c["benign_explained"]
    return Precision(
        name=name,
        labelled=n,
        confirmed=c["confirm"],
        false_positive=c["false_positive"],
        benign_explained=c["benign_explained"],
        precision=c["confirm"] / n if n else None,
    )


def evaluate_dispositions(alerts_path: Path, store_path: Path) -> DispositionEval:
    """Precision of the alerts in ``alerts_path`` by the dispositions in the store at ``store_path``."""
    store = DispositionStore(store_path)
    latest = store.latest()
    store.close()
    rules: dict[str, set[str]] = {}
    severity: dict[str, str] = {}
    revision: dict[str, int] = {}
    for line in alerts_path.read_bytes().splitlines():
        if not line.strip():
            continue
        a = orjson.loads(line)
        aid = a["alert_id"]
        rules.setdefault(aid, set()).update(
            r["name"] if r["source"] == "rule" else f"model:{r['name']}" for r in a["reasons"]
        )
        if a["revision"] >= revision.get(aid, 0):
            revision[aid], severity[aid] = a["revision"], a["severity"]
    overall: Counter[str] = Counter()
    per_rule: dict[str, Counter[str]] = {}
    per_sev: dict[str, Counter[str]] = {}
    for aid, d in latest.items():
        if aid not in severity:
            continue  # a disposition on an alert of another run
        overall[d.verdict] += 1
        for r in rules[aid]:
            per_rule.setdefault(r, Counter())[d.verdict] += 1
        per_sev.setdefault(severity[aid], Counter())[d.verdict] += 1
    return DispositionEval(
        alerts=len(severity),
        labelled=sum(overall.values()),
        overall=_row("all", overall),
        by_rule=[_row(r, c) for r, c in sorted(per_rule.items())],
        by_severity=[_row(s, per_sev[s]) for s in sorted(per_sev, key=SEVERITY_RANK.__getitem__)],
    )


def render_dispositions(result: DispositionEval) -> Table:
    """One table: overall, then per severity, then per rule."""
    t = Table(title=f"Alerts against analyst dispositions ({result.labelled} of {result.alerts} labelled)")
    t.add_column("group")
    for col in ("labelled", "confirmed", "false pos.", "benign expl.", "precision"):
        t.add_column(col, justify="right")
    rows = [result.overall, None, *result.by_severity, None, *result.by_rule]
    for p in rows:
        if p is None:
            t.add_section()
            continue
        prec = "-" if p.precision is None else f"{100 * p.precision:.1f}%"
        t.add_row(
            p.name, str(p.labelled), str(p.confirmed), str(p.false_positive), str(p.benign_explained), prec
        )
    return t
