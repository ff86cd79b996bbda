"""Where today's engine CPU goes, by the stage it would run in after issue 13's two-stage split.

Replays a file in this process with a process-CPU timer (all threads: polars runs several) around the
engine's pieces; each call's exclusive time (its own less the timed pieces it called) goes to the
stage the piece would run in: the partition-parallel **account** stage (reader, decode, enrichment,
state upkeep, account features, the account verdicts' own part), the single-owner **cluster** stage
(the link graph, cluster verdicts, and the population context the account verdicts read today: the
room's and the team's groups and the key table as of a tick), or **both** (the alert book, the key
table's upkeep). ``--half 0|1`` replays only the accounts whose id hashes to that half: one of two
replicas' partitions (its account stage is what one replica would run; its cluster part is not the
split's, which runs once over every account). Prints JSON, with the sizes of the context a cluster
stage would publish, read from the state at the end.

    .venv/bin/python benchmarks/stage_split.py out/d1/events.parquet [--half 0] [--no-models]
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

import detector.alert.verdict as verdict
import detector.detect.context as context
import detector.detect.room as room
import detector.detect.seat as seat
import detector.engine as engine_module
import detector.window.asof as asof
import detector.window.state as state_module
from detector.app import build_engine
from detector.runtime.replay import replay
from detector.window.sheets import reasoning_rows

#: (owner, attribute) -> (stage, label)
PIECES: dict[tuple[Any, str], tuple[str, str]] = {
    (engine_module.Engine, "_close_ticks"): ("account", "close_ticks rest: clock, de-duplication, tick loop"),
    (engine_module.Engine, "_account_verdicts"): ("account", "account verdicts rest: evaluate, book changes"),
    (engine_module, "account_features_in_parts"): ("account", "account features"),
    (context, "account_sheets"): ("account", "account sheets (holders: every account's, or the context's)"),
    (context, "build_contexts"): ("cluster", "population context rest: sheet texts, key table walk"),
    (room, "room_requests"): ("account", "room walk rest: own templates and requests"),
    (state_module.WindowState, "add"): ("account", "state add rest: buckets, templates, sheets, accounts"),
    (state_module.WindowState, "evict"): ("account", "evict"),
    (state_module.WindowState, "mark_new_models"): ("account", "mark_new_models"),
    (asof.KeyTimeline, "at_points"): ("account", "own keys at points"),
    (engine_module.Engine, "_cluster_verdicts"): ("cluster", "cluster verdicts rest: features, evaluate"),
    (engine_module, "build_clusters"): ("cluster", "build_clusters: the link graph"),
    (room, "room_templates"): ("cluster", "room: the templates' holders and venues"),
    (seat, "team_groups"): ("cluster", "seat: the tool keys' groups"),
    (asof.KeyTimeline, "at"): ("cluster", "key table as of a tick"),
    (verdict.AlertBook, "update"): ("both", "alert book update"),
    (state_module, "add_key_uses"): ("both", "key table upkeep"),
}


class Timers:
    """Exclusive process-CPU seconds and calls per label."""

    def __init__(self) -> None:
        self.cpu: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._stack: list[float] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        fn: Callable[..., Any] = getattr(owner, name)

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            self._stack.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.process_time() - start
                inner = self._stack.pop()
                self.cpu[label] += spent - inner
                self.calls[label] += 1
                if self._stack:
                    self._stack[-1] += spent

        setattr(owner, name, timed)


def context_sizes(engine: Any) -> dict[str, int]:
    """What a cluster stage would publish, sized on the state's last 24 h."""
    st, ev = engine.state, engine.settings.evidence
    sheets = reasoning_rows(st.sheet_rows(engine.clock.last_closed - engine.settings.windows.long))
    held = sheets.group_by("text_fp").agg(pl.col("account_id").n_unique().alias("n"))
    wide = held.filter(pl.col("n") >= ev.sheet_min_accounts)
    keys = st.key_rows()
    per_key = keys.group_by("family", "key").agg(pl.col("account_id").n_unique().alias("n"))
    family = pl.col("family").cast(pl.String)
    return {
        "accounts tracked": st.accounts.height,
        "texts held by >= sheet_min_accounts": wide.height,
        "(text, holder) rows of those": int(wide["n"].sum() or 0),
        "key table rows": keys.height,
        "template keys with >= room_min_accounts holders": per_key.filter(
            (family == "template") & (pl.col("n") >= ev.room_min_accounts)
        ).height,
        "sysprompt/template keys with >= team_min_seats holders": per_key.filter(
            family.is_in(["sysprompt", "template"]) & (pl.col("n") >= ev.team_min_seats)
        ).height,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("file", type=Path, help="A Parquet file of gateway events.")
    ap.add_argument("--half", type=int, choices=(0, 1), help="Only the accounts hashing to this half.")
    ap.add_argument("--no-models", action="store_true", help="Rules only.")
    args = ap.parse_args()
    timers = Timers()
    for (owner, name), (stage, label) in PIECES.items():
        timers.wrap(owner, name, f"{stage}: {label}")
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file
        if args.half is not None:
            path = Path(tmp) / "half.parquet"
            events = pl.read_parquet(args.file)
            events.filter(pl.col("account_id").hash(seed=0) % 2 == args.half).write_parquet(path)
        engine = build_engine(models=not args.no_models)
        start = time.process_time()
        replay([path], engine, Path(tmp) / "alerts.jsonl")
        total = time.process_time() - start
    inside = sum(timers.cpu.values())
    stages = Counter({"account": total - inside})  # reader, decoding, enrichment, sinks
    for label, cpu in timers.cpu.items():
        stages[label.split(":")[0]] += cpu
    out = {
        "file": str(args.file),
        "half": args.half,
        "events": engine.stats.events,
        "replay_cpu_s": round(total, 2),
        "stages_cpu_s": {k: round(v, 2) for k, v in stages.items()},
        "cluster_over_account": round(stages["cluster"] / stages["account"], 3),
        "pieces_cpu_s": {k: round(v, 3) for k, v in timers.cpu.most_common()},
        "calls": dict(timers.calls),
        "account stage outside the engine's ticks (reader, decoding, enrichment, sinks)": round(
            total - inside, 2
        ),
        "context_sizes": context_sizes(engine),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
