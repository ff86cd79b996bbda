"""Rules alone vs. rules plus models, on a held-out simulator run (the issue's acceptance table).

Both sides are the real engine: the run is replayed twice (``--no-models`` and with the models, so the
fusion is exactly what ships, model-only hits capped at low included) and each alert file is scored by
``detector.lab.evaluate``. Per campaign family: accounts flagged at medium or above and the median hours
from each account's first request to its detection; per honest persona: accounts flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Row:
    """One family or persona, rules alone vs. rules plus models."""

    group: str
    attack: bool
    n: int
    rules: int
    fused: int
    #: Median hours from an account's first request to its detection (worst campaign of the family).
    rules_ttd_h: float | None
    fused_ttd_h: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _by_group(result: Any) -> dict[tuple[str, bool], tuple[int, int, float | None]]:
    out: dict[tuple[str, bool], tuple[int, int, float | None]] = {}
    for c in result.campaigns:
        n, d, t = out.get((c.family, True), (0, 0, None))
        ttd = c.median_account_ttd_hours
        worst = ttd if t is None else (t if ttd is None else max(t, ttd))
        out[(c.family, True)] = (n + c.n_accounts, d + c.n_detected, worst)
    for p in result.personas:
        out[(p.persona, False)] = (p.n_accounts, p.flagged_medium, None)
    return out


def compare(run_dir: Path, rules_dir: Path, models_dir: Path, work: Path) -> list[Row]:
    """Replay ``run_dir/events.parquet`` with rules alone and with the models; tabulate both."""
    from detector.app import build_engine
    from detector.lab.evaluate import evaluate
    from detector.runtime.replay import replay

    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, models in (("rules", False), ("fused", models_dir)):
        out = work / f"alerts-{name}.jsonl"
        replay([run_dir / "events.parquet"], build_engine(rules_dir, models=models), out)
        results[name] = _by_group(evaluate(run_dir / "labels.json", out))
    rows = [
        Row(g, att, n, d, results["fused"][(g, att)][1], t, results["fused"][(g, att)][2])
        for (g, att), (n, d, t) in results["rules"].items()
    ]
    return sorted(rows, key=lambda r: (not r.attack, r.group))


def render(rows: list[Row], seed: int) -> str:
    """The Markdown table of ``compare``'s rows."""
    out = [
        f"Simulator seed {seed}, the real engine with and without the models: accounts flagged at medium or "
        "above (recall for campaign families, false positives for honest personas); TTD = median hours from "
        "each account's first request to its detection (worst campaign of the family).",
        "",
        "| group | kind | accounts | rules | rules + models | rules TTD h | rules + models TTD h |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kind = "campaign" if r.attack else "honest"
        out.append(
            f"| {r.group} | {kind} | {r.n} | {r.rules} ({r.rules / r.n:.2f}) "
            f"| {r.fused} ({r.fused / r.n:.2f}) "
            f"| {r.rules_ttd_h if r.rules_ttd_h is not None else '-'} "
            f"| {r.fused_ttd_h if r.fused_ttd_h is not None else '-'} |"
        )
    att = [r for r in rows if r.attack]
    ben = [r for r in rows if not r.attack]
    na, nb = sum(r.n for r in att), sum(r.n for r in ben)
    out.append(
        f"| **all campaigns** | | {na} | {sum(r.rules for r in att)} | {sum(r.fused for r in att)} | | |"
    )
    out.append(f"| **all honest** | | {nb} | {sum(r.rules for r in ben)} | {sum(r.fused for r in ben)} | | |")
    return "\n".join(out)
