"""``simulate``: generate a labelled run and write events.jsonl, events.parquet and labels.json."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
from pydantic import BaseModel

from detector.lab.simulate.assemble import build_frame, iso_ms, select_rows, text_free_accounts
from detector.lab.simulate.block import Block, concat
from detector.lab.simulate.campaigns import run_families
from detector.lab.simulate.lookalikes import after_families, lookalike_blocks
from detector.lab.simulate.params import SimParams
from detector.lab.simulate.personas import GENERATORS
from detector.lab.simulate.prompts import PromptBank
from detector.lab.simulate.world import World


class SimSummary(BaseModel):
    """What a simulation wrote (counts only, never content)."""

    out_dir: str
    n_events: int
    n_accounts: int
    n_attacker_accounts: int
    n_campaigns: int
    events_by_persona: dict[str, int]
    start: str
    end: str
    new_model_id: str
    launch_ts: str
    jsonl_bytes: int
    seconds: float


def _labels(w: World, b: Block, days: float, scale: float, seed: int) -> dict[str, Any]:
    seen, first = np.unique(b.acct, return_index=True)
    accounts: dict[str, Any] = {}
    for idx, pos in zip(seen.tolist(), first.tolist(), strict=True):
        a = w.accounts[idx]
        accounts[a.account_id] = {
            "attacker": a.campaign_id is not None,
            "persona": a.persona,
            "campaign_id": a.campaign_id,
            "campaign_type": a.campaign_type,
            "created_at": iso_ms(a.created_ms),
            "first_ts": iso_ms(int(b.ts[pos])),
        }
    seen_set = set(seen.tolist())
    campaigns: dict[str, dict[str, Any]] = {
        c.campaign_id: {
            "family": c.family,
            "campaign_type": c.campaign_type,
            "start_ts": iso_ms(c.start_ms),
            "n_accounts": sum(1 for m in c.members if m in seen_set),
        }
        for c in w.campaigns
    }
    return {
        "seed": seed,
        "days": days,
        "scale": scale,
        "start": iso_ms(w.start_ms),
        "end": iso_ms(w.end_ms),
        "new_model": {"id": w.params.new_model_id, "launch_ts": iso_ms(w.launch_ms)},
        "accounts": dict(sorted(accounts.items())),
        "campaigns": {k: v for k, v in sorted(campaigns.items()) if int(v["n_accounts"]) > 0},
    }


def simulate(
    out_dir: Path,
    days: float,
    seed: int,
    scale: float = 1.0,
    prompts_dir: Path | None = None,
    params: SimParams | None = None,
) -> SimSummary:
    """Generate ``days`` of labelled gateway traffic into ``out_dir``.

    Writes ``events.jsonl`` (one contract event per line, by time), ``events.parquet`` (the same rows,
    nested objects as structs) and ``labels.json`` (who is an attacker, in which campaign). The same
    arguments give byte-identical files. ``scale`` multiplies account counts; ``prompts_dir`` (the
    shared ``data/prompts`` folder) adds real prompt material to the built-in set.
    """
    if days <= 0 or scale <= 0:
        raise ValueError("simulate: days and scale must be positive")
    t0 = time.perf_counter()
    params = params or SimParams()
    w = World(seed, params, PromptBank.load(prompts_dir), days, scale)
    blocks = [gen(w, params) for gen in GENERATORS.values()]
    blocks += lookalike_blocks(w, params)
    blocks += run_families(w, params)
    b = select_rows(w, concat(blocks))
    frame = build_frame(w, b, text_free_accounts(w, np.unique(b.acct)))
    # look-alikes added later are assembled on streams of their own and merged by time (ties after
    # the others): every other row keeps its bytes and its order
    late = select_rows(w, concat(after_families(w, params)))
    if len(late):
        key = "after_families"
        extra = build_frame(w, late, text_free_accounts(w, np.unique(late.acct), key), key)
        order = np.argsort(np.concatenate([b.ts, late.ts]), kind="stable")
        b = concat([b, late]).take(order)
        frame = pl.concat([frame, extra])[order]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.write_ndjson(out_dir / "events.jsonl")
    frame.write_parquet(out_dir / "events.parquet", compression="zstd", statistics=True)
    labels = _labels(w, b, days, scale, seed)
    (out_dir / "labels.json").write_bytes(orjson.dumps(labels, option=orjson.OPT_INDENT_2) + b"\n")
    personas = pl.Series([w.accounts[int(i)].persona for i in b.acct]).value_counts()
    by_persona = {str(k): int(v) for k, v in sorted(personas.iter_rows())}
    return SimSummary(
        out_dir=str(out_dir),
        n_events=frame.height,
        n_accounts=len(labels["accounts"]),
        n_attacker_accounts=sum(1 for a in labels["accounts"].values() if a["attacker"]),
        n_campaigns=len(labels["campaigns"]),
        events_by_persona=by_persona,
        start=labels["start"],
        end=labels["end"],
        new_model_id=params.new_model_id,
        launch_ts=labels["new_model"]["launch_ts"],
        jsonl_bytes=(out_dir / "events.jsonl").stat().st_size,
        seconds=round(time.perf_counter() - t0, 2),
    )
