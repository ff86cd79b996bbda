"""Round 18 (issue 13): the cluster stage's work per tick, fed as a daemon feeds it, and what a tick changes.

The events file is decoded and enriched first (outside the figures), then fed to one engine
(``stage="cluster"``, the lag on, contexts published as ``runtime/shards.py`` does) one 15-minute slice
at a time, so that each ``process`` call closes about one tick, as a daemon's do (a replay closes many
ticks a call). Printed as JSON:

- ``cpu``: process CPU (``time.process_time``: every thread, polars' own included; no reader thread
  runs) of the whole feed and of each part, in seconds and in ms per tick (the parts nest: the
  contexts' parts are inside ``build_contexts``, the verdicts' inside ``_cluster_verdicts``).
- with ``--changes`` (a second feed; its CPU is not the figures'): per tick, what changed since the tick
  before in the key table the contexts read (rows added and gone, accounts whose rows changed, templates
  whose holders changed, templates held by an account whose template or network rows changed: what a
  per-template incremental room test would ask again) and whether each context kind's rows equal the
  previous tick's; per cluster tick, the clusters, the clusters scored, the clusters whose members are
  the previous cluster tick's, and the scored clusters whose feature row equals the previous one's.

    .venv/bin/python benchmarks/cluster_ticks.py out/d185/events.parquet --changes
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

import detector.detect.context as contexts
import detector.engine as engine_module
from detector.app import build_engine
from detector.io.files import iter_parquet
from detector.runtime.shards import Publication
from detector.settings import EngineSettings

#: (owner, attribute, label) of every part timed
_PARTS: list[tuple[Any, str, str]] = [
    (engine_module.Engine, "_close_ticks", "close_ticks (everything)"),
    (engine_module, "new_model_flags", "fold: new_model_flags"),
    (engine_module.WindowState, "drop_seen", "fold: drop_seen"),
    (engine_module.WindowState, "add", "fold: state.add"),
    (engine_module.WindowState, "evict", "fold: state.evict"),
    (contexts, "build_contexts", "contexts (build_contexts)"),
    (contexts.RoomContext, "population", "contexts: key table then"),
    (contexts, "room_templates", "contexts: rooms"),
    (contexts, "team_groups", "contexts: teams"),
    (contexts, "wide_texts", "contexts: sheets"),
    (engine_module.Engine, "_cluster_verdicts", "cluster verdicts (_cluster_verdicts)"),
    (engine_module, "build_clusters", "verdicts: build_clusters"),
    (engine_module, "cluster_features", "verdicts: cluster_features"),
    (engine_module, "with_cluster_samples", "verdicts: samples"),
    (engine_module, "add_axes", "verdicts: add_axes"),
    (engine_module.Engine, "_evaluate", "verdicts: rules and models"),
    (engine_module, "accused", "verdicts: accused"),
]


def _wrap(owner: Any, name: str, hook: Callable[..., Any]) -> Callable[[], None]:
    """Put ``hook(inner, *args, **kwargs)`` in place of ``owner.name``; return the undo."""
    inner = getattr(owner, name)
    setattr(owner, name, lambda *a, **k: hook(inner, *a, **k))
    return lambda: setattr(owner, name, inner)


def _feed(events: Path) -> tuple[Any, int, list[pl.DataFrame]]:
    """A cluster stage fed ``events`` a 15-minute slice at a time; the engine and the events fed."""
    engine = build_engine(
        settings=EngineSettings().model_copy(update={"context_lag": True}),
        observers=Publication().observers(),
    )
    engine.stage = "cluster"
    chunks = [engine.enrich(c.batch.events) for c in iter_parquet(events)]
    enriched = pl.concat(chunks, how="vertical_relaxed").sort("ts")
    slices = enriched.with_columns(pl.col("ts").dt.truncate("15m").alias("_slice")).partition_by(
        "_slice", maintain_order=True, include_key=False
    )
    return engine, enriched.height, slices


def cpu(events: Path) -> dict[str, Any]:
    """Process CPU of the feed and of each part."""
    spent: dict[str, float] = {}
    calls: dict[str, int] = {}

    def timer(label: str) -> Callable[..., Any]:
        def hook(inner: Callable[..., Any], *a: Any, **k: Any) -> Any:
            c0 = time.process_time()
            try:
                return inner(*a, **k)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - c0
                calls[label] = calls.get(label, 0) + 1

        return hook

    undo = [_wrap(owner, name, timer(label)) for owner, name, label in _PARTS]
    try:
        engine, n, slices = _feed(events)
        c0 = time.process_time()
        for part in slices:
            engine.process(part, enriched=True)
        engine.flush()
        total = time.process_time() - c0
    finally:
        for u in reversed(undo):
            u()
    ticks = engine.stats.ticks
    parts = {
        label: {
            "s": round(spent[label], 3),
            "calls": calls[label],
            "ms_per_tick": round(spent[label] / ticks * 1e3, 1),
        }
        for _, _, label in _PARTS
        if label in spent
    }
    return {
        "events": n,
        "ticks": ticks,
        "cpu_s": round(total, 2),
        "us_per_event": round(total / n * 1e6, 1),
        **parts,
    }


def _rows_hash(df: pl.DataFrame) -> tuple[int, int]:
    """Rows and an order-free hash of them."""
    return df.height, int(df.hash_rows().sum()) if df.height else 0


def changes(events: Path) -> dict[str, Any]:
    """What each tick changes (module docstring), summarised over the ticks."""
    ticks: list[dict[str, Any]] = []
    cluster_ticks: list[dict[str, Any]] = []
    last: dict[str, Any] = {}
    row: dict[str, Any] = {}

    def rooms(inner: Callable[..., Any], keys: pl.DataFrame, *a: Any, **k: Any) -> Any:
        out = inner(keys, *a, **k)
        now = keys.select("account_id", "family", "key").unique()
        row.update(keys=now.height, rooms=out.height, rooms_same=_rows_hash(out) == last.get("rooms"))
        if "keys" in last:
            on = ["account_id", "family", "key"]
            added, gone = now.join(last["keys"], on=on, how="anti"), last["keys"].join(now, on=on, how="anti")
            moved = pl.concat([added, gone])
            tpl = pl.col("family") == "template"
            local = moved.filter(pl.col("family").is_in(["template", "ip"]))["account_id"].unique()
            both = pl.concat([now, last["keys"]]).filter(tpl)
            row.update(
                added=added.height,
                gone=gone.height,
                accounts=now["account_id"].n_unique(),
                accounts_changed=moved["account_id"].n_unique(),
                templates=now.filter(tpl)["key"].n_unique(),
                templates_holders_changed=moved.filter(tpl)["key"].n_unique(),
                templates_asked_again=both.filter(pl.col("account_id").is_in(local.implode()))[
                    "key"
                ].n_unique(),
            )
        last["keys"], last["rooms"] = now, _rows_hash(out)
        return out

    def kind(name: str) -> Callable[..., Any]:
        def hook(inner: Callable[..., Any], *a: Any, **k: Any) -> Any:
            out = inner(*a, **k)
            seen = _rows_hash(out.select(sorted(out.columns)))
            row.update({name: out.height, f"{name}_same": seen == last.get(name)})
            last[name] = seen
            if name == "sheets":  # the tick's last kind
                ticks.append(dict(row))
                row.clear()
            return out

        return hook

    def clusters(inner: Callable[..., Any], *a: Any, **k: Any) -> Any:
        out = inner(*a, **k)
        groups = out.members.group_by("cluster_id").agg(pl.col("account_id").sort().hash().alias("_g"))
        same = groups.join(last["groups"], on=["cluster_id", "_g"]).height if "groups" in last else None
        cluster_ticks.append({"clusters": groups.height, "same_members": same})
        last["groups"] = groups
        return out

    def features(inner: Callable[..., Any], *a: Any, **k: Any) -> Any:
        out = inner(*a, **k)
        rows = out.select("cluster_id", pl.struct(sorted(out.columns)).hash().alias("_f"))
        same = rows.join(last["features"], on=["cluster_id", "_f"]).height if "features" in last else None
        cluster_ticks[-1].update(scored=out.height, scored_same_features=same)
        last["features"] = rows
        return out

    hooks = [
        (contexts, "room_templates", rooms),
        (contexts, "team_groups", kind("teams")),
        (contexts, "wide_texts", kind("sheets")),
        (engine_module, "build_clusters", clusters),
        (engine_module, "cluster_features", features),
    ]
    undo = [_wrap(owner, name, hook) for owner, name, hook in hooks]
    try:
        engine, _, slices = _feed(events)
        for part in slices:
            engine.process(part, enriched=True)
        engine.flush()
    finally:
        for u in reversed(undo):
            u()
    return {"ticks": _summary(ticks), "cluster_ticks": _summary(cluster_ticks)}


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per field: the median of numbers, or how many of the rows are true (of those with a value)."""
    out: dict[str, Any] = {"n": len(rows)}
    for name in dict.fromkeys(k for r in rows for k in r):
        values = [r[name] for r in rows if r.get(name) is not None]
        if values and isinstance(values[0], bool):
            out[name] = f"{sum(values)} of {len(values)}"
        elif values:
            out[name] = {"median": statistics.median(values), "max": max(values)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("--changes", action="store_true", help="also what each tick changes (a second feed)")
    args = parser.parse_args()
    out: dict[str, Any] = {"cpu": cpu(args.events)}
    if args.changes:
        out["changes"] = changes(args.events)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
