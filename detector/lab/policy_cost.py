"""What a response policy would have cost: per action, the honest and attacking accounts and requests
it would have touched, from a replay's decisions, the events and the simulator's labels.

A request is affected by the decision in force for its account at its event time: from an ``apply``
until the decision expires, is lifted, or is replaced by the account's next ``apply``. An account counts
under every action it received. Requests of unlabelled accounts count as ``unlabelled``.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
from pydantic import BaseModel
from rich.table import Table

from detector.decide.policy import ACTION_RANK
from detector.io.files import expand_inputs
from detector.schema import UTC_US, parse_ts


class ActionCost(BaseModel):
    """One action's reach."""

    action: str
    decisions: int
    honest_accounts: int
    attacker_accounts: int
    unlabelled_accounts: int
    honest_requests: int
    attacker_requests: int
    unlabelled_requests: int


class PolicyCost(BaseModel):
    """Per action, plus the honest personas that received more than ``monitor``."""

    dry_run_decisions: int
    actions: list[ActionCost]
    #: persona -> highest action any of its accounts received (honest personas only)
    honest_max_action: dict[str, str]


def read_decisions(path: Path) -> pl.DataFrame:
    """The decisions file as a frame: op, account_id, action, event_ts, expires_event_ts, dry_run."""
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    frame = pl.DataFrame(
        {
            "op": [r["op"] for r in rows],
            "account_id": [r["account_id"] for r in rows],
            "action": [r["action"] for r in rows],
            "event_ts": [r["event_ts"] for r in rows],
            "expires_event_ts": [r.get("expires_event_ts") for r in rows],
            "dry_run": [bool(r.get("dry_run")) for r in rows],
        },
        schema={
            "op": pl.String,
            "account_id": pl.String,
            "action": pl.String,
            "event_ts": pl.String,
            "expires_event_ts": pl.String,
            "dry_run": pl.Boolean,
        },
    )
    return frame.with_columns(parse_ts(pl.col("event_ts")), parse_ts(pl.col("expires_event_ts")))


def _events(paths: list[Path]) -> pl.DataFrame:
    """(account_id, ts) of every request in the inputs (Parquet or JSON Lines)."""
    parts = []
    for p in expand_inputs(paths):
        scan = pl.scan_parquet(p) if p.suffix == ".parquet" else pl.scan_ndjson(p, infer_schema_length=1000)
        parts.append(scan.select("account_id", parse_ts(pl.col("ts").cast(pl.String))).collect())
    return pl.concat(parts) if parts else pl.DataFrame(schema={"account_id": pl.String, "ts": UTC_US})


def policy_cost(decisions_path: Path, events: list[Path], labels_path: Path) -> PolicyCost:
    """The cost table of one replay's decisions."""
    labels = orjson.loads(labels_path.read_bytes())["accounts"]
    lab = pl.DataFrame(
        {
            "account_id": list(labels),
            "role": ["attacker" if v.get("attacker") else "honest" for v in labels.values()],
            "persona": [str(v.get("persona")) for v in labels.values()],
        },
        schema={"account_id": pl.String, "role": pl.String, "persona": pl.String},
    )
    d = read_decisions(decisions_path).sort("account_id", "event_ts", maintain_order=True)
    # an apply holds until it expires or the account's next decision (a lift or a replacing apply)
    spans = (
        d.with_columns(pl.col("event_ts").shift(-1).over("account_id").alias("_next"))
        .filter(pl.col("op") == "apply")
        .with_columns(pl.min_horizontal("expires_event_ts", "_next").alias("end"))
        .select("account_id", "action", pl.col("event_ts").alias("start"), "end")
        .join(lab, on="account_id", how="left")
        .with_columns(pl.col("role").fill_null("unlabelled"))
    )
    ev = _events(events).join(spans.select("account_id").unique(), on="account_id", how="semi")
    hit = (
        ev.join(spans, on="account_id", how="inner")
        .filter((pl.col("ts") >= pl.col("start")) & (pl.col("ts") < pl.col("end")))
        .group_by("action", "role")
        .len("requests")
    )
    accts = spans.group_by("action", "role").agg(pl.col("account_id").n_unique().alias("accounts"))
    n_dec = spans.group_by("action").len("decisions")
    rows = []
    for action in sorted(ACTION_RANK, key=ACTION_RANK.__getitem__):

        def get(frame: pl.DataFrame, role: str, col: str, action: str = action) -> int:
            v = frame.filter((pl.col("action") == action) & (pl.col("role") == role))[col]
            return int(v[0]) if v.len() else 0

        nd = n_dec.filter(pl.col("action") == action)["decisions"]
        rows.append(
            ActionCost(
                action=action,
                decisions=int(nd[0]) if nd.len() else 0,
                honest_accounts=get(accts, "honest", "accounts"),
                attacker_accounts=get(accts, "attacker", "accounts"),
                unlabelled_accounts=get(accts, "unlabelled", "accounts"),
                honest_requests=get(hit, "honest", "requests"),
                attacker_requests=get(hit, "attacker", "requests"),
                unlabelled_requests=get(hit, "unlabelled", "requests"),
            )
        )
    worst = (
        spans.filter(pl.col("role") == "honest")
        .with_columns(pl.col("action").replace_strict(ACTION_RANK, return_dtype=pl.Int64).alias("_r"))
        .sort("_r", descending=True)
        .group_by("persona", maintain_order=True)
        .first()
    )
    return PolicyCost(
        dry_run_decisions=int(d.filter(pl.col("dry_run") & (pl.col("op") == "apply")).height),
        actions=rows,
        honest_max_action=dict(sorted(zip(worst["persona"], worst["action"], strict=True))),
    )


def render_cost(cost: PolicyCost) -> Table:
    """The cost as a table: one row per action."""
    t = Table(title="What the policy would have cost (per action)")
    t.add_column("action")
    for col in ("decisions", "honest accts", "attacker accts", "honest reqs", "attacker reqs", "unlabelled"):
        t.add_column(col, justify="right")
    for a in cost.actions:
        t.add_row(
            a.action,
            str(a.decisions),
            str(a.honest_accounts),
            str(a.attacker_accounts),
            str(a.honest_requests),
            str(a.attacker_requests),
            f"{a.unlabelled_accounts} / {a.unlabelled_requests}",
        )
    worst = ", ".join(f"{p}: {a}" for p, a in cost.honest_max_action.items()) or "none"
    t.caption = f"honest personas, strongest action: {worst}; dry-run decisions {cost.dry_run_decisions}"
    return t
