"""The evasion matrix: every campaign family drawn with random knobs, scored per (family, knob value).

A *draw* is one simulated run (a seed): the honest personas at ``scale`` plus one campaign of every
family, each family with its own knob values drawn from wide ranges (``knobs.draw_knobs``). The run is
replayed through the engine with and without IP intelligence and scored with ``lab.evaluate``.

Reported per (family, knob, value) cell, and per family over all draws (knob "all"): campaigns,
recall at medium, hours from the campaign's start to its first accusation (median), and the requests
an attacking account had sent when it was first named at medium (median and 90th percentile, over
named accounts); per honest persona: accounts, flagged at medium, flagged at high, and which reasons
(rules and models) first named its flagged accounts (``lab.evaluate``: ``reasons``).

**Held-out draws.** Draw indices ``HELD_OUT_FROM`` and above are held out: nobody looks at them while
writing rules or training models. ``detector evaluate-matrix`` runs the development block (indices
0..draws-1) unless ``--held-out`` is given, which runs indices ``HELD_OUT_FROM``.. instead. A draw's seed
is ``SEED_BASE + index``: the same index always gives the same run.

Every draw also holds the honest look-alikes at realistic sizes whatever ``scale`` (``LOOKALIKE_SIZES``,
the team's size drawn per draw):
a hackathon cohort, an evaluation startup, a tutoring platform, a translation company, a team with one
internal tool, the router's honest customers and the residential proxy network's honest users. The
router and the proxy exits are the ones the ``reseller`` and ``network`` knobs send campaigns through.
"""

from __future__ import annotations

import statistics
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
from pydantic import BaseModel

from detector.errors import ConfigError
from detector.lab.evaluate import _read_alerts, evaluate, most_first, top_reasons
from detector.lab.knobs import SEED_BASE, VERIFIED_CELLS, draw_params, knob_cells
from detector.lab.simulate import simulate

#: Draw indices at and above this are the held-out block (never looked at while writing rules/training).
HELD_OUT_FROM = 1000
#: Draw indices reserved for calibrating models (``detector train --calibration-draws``): fitted on by
#: no one, and never a matrix draw, development or held out.
CALIBRATION_RESERVE = range(5000, 6000)


@dataclass(frozen=True)
class MatrixConfig:
    """How big the matrix is. Defaults fit minutes on two shared cores; scale them up for the gates."""

    draws: int = 4
    held_out: bool = False
    days: float = 1.0
    #: Honest population multiplier (1.0: about 1,650 honest accounts).
    scale: float = 0.25
    #: Accounts per campaign (before churn).
    attack_accounts: int = 20
    rules_dir: Path = Path("rules")
    ip_intel_dir: Path | None = None
    #: The first draw index; None: 0, or ``HELD_OUT_FROM`` with ``held_out``. A held-out block that has
    #: been looked at is spent: the next one starts past it (e.g. 1020), never below ``HELD_OUT_FROM``.
    first_draw: int | None = None
    verified: str | None = None  # every family's verified knob forced to this; None: drawn


class MatrixResult(BaseModel):
    """Rows of the two tables, per IP-intelligence setting ("on", "off")."""

    config: dict[str, Any]
    draw_indices: list[int]
    cells: list[dict[str, Any]]
    personas: list[dict[str, Any]]
    #: One row per (intel, draw, family): its knob values, accounts, accounts named at medium and hours
    #: to the first accusation; the rows the cells are summed from, to see which campaigns were missed.
    campaigns: list[dict[str, Any]] = []


def _requests_when_named(events: pl.DataFrame, first: dict[str, Any], members: list[str]) -> list[int]:
    """Per named member: its requests up to and including its first naming at medium."""
    named = [m for m in members if m in first]
    if not named:
        return []
    when = pl.DataFrame({"account_id": named, "_t": [first[m] for m in named]}).with_columns(
        pl.col("_t").dt.cast_time_unit("us")
    )
    counts = (
        events.join(when, on="account_id", how="inner")
        .filter(pl.col("ts") <= pl.col("_t"))
        .group_by("account_id")
        .len()
    )
    return counts["len"].to_list()


def _one_draw(index: int, cfg: MatrixConfig, work: Path) -> list[dict[str, Any]]:
    """Simulate draw ``index``; replay with and without IP intel; per-campaign and per-persona rows."""
    from detector.app import build_engine
    from detector.runtime.replay import replay

    knobs, params = draw_params(index, cfg.attack_accounts, cfg.scale, cfg.verified)
    out = work / f"draw{index}"
    simulate(out, cfg.days, SEED_BASE + index, scale=cfg.scale, params=params)
    labels = orjson.loads((out / "labels.json").read_bytes())
    events = pl.read_parquet(out / "events.parquet", columns=["account_id", "ts"]).with_columns(
        pl.col("ts").str.to_datetime(time_unit="us", time_zone="UTC")
        if pl.read_parquet_schema(out / "events.parquet")["ts"] == pl.String
        else pl.col("ts").dt.cast_time_unit("us")
    )
    rows: list[dict[str, Any]] = []
    settings = [("on", cfg.ip_intel_dir), ("off", None)] if cfg.ip_intel_dir else [("off", None)]
    for intel, path in settings:
        alerts = out / f"alerts_{intel}.jsonl"
        replay([out / "events.parquet"], build_engine(cfg.rules_dir, ip_intel=path), alerts)
        result = evaluate(out / "labels.json", alerts)
        det = _read_alerts(alerts)
        by_campaign: dict[str, list[str]] = {}
        for acct, info in labels["accounts"].items():
            if info.get("attacker"):
                by_campaign.setdefault(str(info["campaign_id"]), []).append(acct)
        for c in result.campaigns:
            rows.append(
                {
                    "kind": "campaign",
                    "intel": intel,
                    "draw": index,
                    "family": c.family,
                    "knobs": knob_cells(knobs[c.family]),
                    "accounts": c.n_accounts,
                    "detected": c.n_detected,
                    "ttd_hours": c.ttd_hours,
                    "requests_when_named": _requests_when_named(
                        events, det.first, by_campaign.get(c.campaign_id, [])
                    ),
                    "reasons": c.reasons,
                }
            )
        for p in result.personas:
            rows.append(
                {
                    "kind": "persona",
                    "intel": intel,
                    "draw": index,
                    "persona": p.persona,
                    "accounts": p.n_accounts,
                    "medium": p.flagged_medium,
                    "high": p.flagged_high,
                    "reasons": p.reasons,
                }
            )
    return rows


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarise(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Cells per (intel, family, knob, value) and personas per (intel, persona)."""
    cells: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["kind"] == "campaign":
            cells.setdefault((r["intel"], r["family"], "all", "all"), []).append(r)
            for knob, value in r["knobs"].items():
                cells.setdefault((r["intel"], r["family"], knob, value), []).append(r)
    out_cells = []
    for (intel, family, knob, value), rs in sorted(cells.items()):
        acc = sum(r["accounts"] for r in rs)
        named = [n for r in rs for n in r["requests_when_named"]]
        ttd = [r["ttd_hours"] for r in rs if r["ttd_hours"] is not None]
        out_cells.append(
            {
                "intel": intel,
                "family": family,
                "knob": knob,
                "value": value,
                "campaigns": len(rs),
                "recall": sum(r["detected"] for r in rs) / acc if acc else 0.0,
                "ttd_hours_median": statistics.median(ttd) if ttd else None,
                "requests_when_named_median": _pct(named, 50),
                "requests_when_named_p90": _pct(named, 90),
            }
        )
    personas: dict[tuple[str, str], list[int]] = {}
    by_reason: dict[tuple[str, str], Counter[str]] = {}
    for r in rows:
        if r["kind"] == "persona":
            t = personas.setdefault((r["intel"], r["persona"]), [0, 0, 0])
            t[0] += r["accounts"]
            t[1] += r["medium"]
            t[2] += r["high"]
            by_reason.setdefault((r["intel"], r["persona"]), Counter()).update(r.get("reasons", {}))
    out_personas = [
        {
            "intel": i,
            "persona": p,
            "accounts": a,
            "medium": m,
            "high": h,
            "fp_rate_medium": m / a if a else 0.0,
            "reasons": most_first(by_reason[(i, p)]),
        }
        for (i, p), (a, m, h) in sorted(personas.items())
    ]
    return out_cells, out_personas


def run_matrix(cfg: MatrixConfig, work_dir: Path | None = None) -> MatrixResult:
    """Run the configured draws and summarise them."""
    start = cfg.first_draw if cfg.first_draw is not None else (HELD_OUT_FROM if cfg.held_out else 0)
    if (start >= HELD_OUT_FROM) != cfg.held_out or (start + cfg.draws > HELD_OUT_FROM and not cfg.held_out):
        raise ConfigError(
            f"draws {start}..{start + cfg.draws - 1} cross the held-out line ({HELD_OUT_FROM}); "
            "use --held-out for draws from there, and only there",
            "--first-draw",
        )
    if start < CALIBRATION_RESERVE.stop and start + cfg.draws > CALIBRATION_RESERVE.start:
        raise ConfigError(
            f"draws {start}..{start + cfg.draws - 1} reach into {CALIBRATION_RESERVE.start}.."
            f"{CALIBRATION_RESERVE.stop - 1}, the models' calibration reserve; the matrix never runs them",
            "--first-draw",
        )
    if cfg.verified not in (None, *VERIFIED_CELLS):
        raise ConfigError(f"{cfg.verified!r}: use {' or '.join(VERIFIED_CELLS)}", "--verified")
    indices = list(range(start, start + cfg.draws))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for i in indices:
            rows += _one_draw(i, cfg, Path(tmp))
    cells, personas = summarise(rows)
    campaigns = [
        {
            k: r[k]
            for k in ("intel", "draw", "family", "knobs", "accounts", "detected", "ttd_hours", "reasons")
        }
        for r in rows
        if r["kind"] == "campaign"
    ]
    config = {
        "draws": cfg.draws,
        "held_out": cfg.held_out,
        "first_draw": start,
        "days": cfg.days,
        "scale": cfg.scale,
        "attack_accounts": cfg.attack_accounts,
        "ip_intel": str(cfg.ip_intel_dir) if cfg.ip_intel_dir else None,
        "verified": cfg.verified,
    }
    return MatrixResult(
        config=config, draw_indices=indices, cells=cells, personas=personas, campaigns=campaigns
    )


def render_markdown(result: MatrixResult) -> str:
    """The two tables as Markdown (docs/detection.md pastes them)."""

    def f(x: float | None, digits: int = 1) -> str:
        return "-" if x is None else f"{x:.{digits}f}"

    lines = [
        "| intel | family | knob | value | campaigns | recall@medium | first accusation (h, median) "
        "| requests when named (median / p90) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in result.cells:
        lines.append(
            f"| {c['intel']} | {c['family']} | {c['knob']} | {c['value']} | {c['campaigns']} "
            f"| {c['recall']:.2f} | {f(c['ttd_hours_median'])} "
            f"| {f(c['requests_when_named_median'], 0)} / {f(c['requests_when_named_p90'], 0)} |"
        )
    lines += [
        "",
        "| intel | persona | accounts | flagged medium | flagged high | FP rate (medium) "
        "| named by (accounts) |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in result.personas:
        lines.append(
            f"| {p['intel']} | {p['persona']} | {p['accounts']} | {p['medium']} | {p['high']} "
            f"| {p['fp_rate_medium']:.4f} | {top_reasons(p.get('reasons', {}))} |"
        )
    return "\n".join(lines) + "\n"
