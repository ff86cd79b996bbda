"""Days of a router's customers for the seat tests (``test_team_seat``, ``test_lone_seat``): ordinary chat
and 600 customers of the router, nothing else; and who the engine names on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import polars as pl

from detector.app import build_engine
from detector.contracts import SEVERITY_RANK
from detector.lab.simulate import FAMILIES, SimParams
from detector.runtime.replay import replay
from detector.settings import EngineSettings

ROOT = Path(__file__).resolve().parents[1]


def router_params() -> SimParams:
    """Ordinary chat and the router's customers only: its team, calibration researchers, judges."""
    base = SimParams()
    update: dict[str, Any] = {f: getattr(base, f).model_copy(update={"campaigns": 0}) for f in FAMILIES}
    for name, persona in base:
        if hasattr(persona, "accounts") and name != "casual":
            update[name] = persona.model_copy(update={"accounts": 0})
    update["router_customers"] = base.router_customers.model_copy(update={"accounts": 600})
    return base.model_copy(update=update)


def named(events: Path, out: Path, settings: EngineSettings | None = None) -> dict[str, str]:
    """Account id -> the highest severity of its account alerts (every account alert)."""
    replay([events], build_engine(ROOT / "rules", settings=settings), out)
    found: dict[str, str] = {}
    for line in out.read_bytes().splitlines():
        alert = orjson.loads(line)
        if alert["kind"] != "account":
            continue
        for a in alert["account_ids"]:
            if SEVERITY_RANK[alert["severity"]] >= SEVERITY_RANK[found.get(a, "low")]:
                found[a] = alert["severity"]
    return found


def accused(names: dict[str, str]) -> set[str]:
    """The accounts of ``named`` at medium or above."""
    return {a for a, sev in names.items() if SEVERITY_RANK[sev] >= SEVERITY_RANK["medium"]}


def opened_at(events: pl.DataFrame, accounts: list[str], created: pl.Expr, path: Path) -> Path:
    """``events`` with ``accounts`` opened at ``created`` (``account.created_at``), written to ``path``."""
    opened = pl.col("account").struct.with_fields(created.alias("created_at"))
    events.with_columns(
        pl.when(pl.col("account_id").is_in(accounts))
        .then(opened)
        .otherwise(pl.col("account"))
        .alias("account")
    ).write_parquet(path)
    return path
