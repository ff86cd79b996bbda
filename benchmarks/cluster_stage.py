"""The cluster stage's cost and its churn: what an incremental link graph could save (issue 13).

Replays a file, recording the inputs of every ``build_clusters`` call of the engine (the key table as
of each cluster tick, and the accounts); then, for each call in turn: the key rows it reads, how many
of them are new, changed (a later use) or gone since the previous call, the accounts with such a row,
the keys whose holder count moved, the call's CPU (best of ``--repeat``) and the CPU of finding those
changes by comparing the two tables (what an incremental stage that is not told its changes would pay
first). Prints one row per call and the totals; ``--steps`` also prints the CPU of each statement of
``build_clusters`` over all the calls.

    .venv/bin/python benchmarks/cluster_stage.py out/d1/events.parquet [--models] [--repeat 3] [--steps]
"""

from __future__ import annotations

import argparse
import ast
import inspect
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from detector import engine as engine_module
from detector.app import build_engine
from detector.engine import Engine
from detector.runtime.replay import replay
from detector.settings import LinkSettings
from detector.window import link
from detector.window.link import Clusters, build_clusters

ROOT = Path(__file__).resolve().parents[1]
ROW = ["account_id", "family", "key"]


@dataclass(frozen=True)
class Call:
    """One ``build_clusters`` call of a replay: its inputs and what it returned."""

    keys: pl.DataFrame
    accounts: pl.DataFrame
    clusters: Clusters


def record(path: Path, models: bool) -> tuple[list[Call], Engine]:
    """Replay ``path`` and keep every ``build_clusters`` call's inputs and result, in order (and the
    engine, after the replay)."""
    calls: list[Call] = []

    def kept(keys: pl.DataFrame, accounts: pl.DataFrame, cfg: LinkSettings) -> Clusters:
        clusters = build_clusters(keys, accounts, cfg)
        calls.append(Call(keys, accounts, clusters))
        return clusters

    engine = build_engine(ROOT / "rules", models=models)
    engine_module.build_clusters = kept  # type: ignore[attr-defined]
    try:
        replay([path], engine, None)
    finally:
        engine_module.build_clusters = build_clusters  # type: ignore[attr-defined]
    return calls, engine


def changes(before: pl.DataFrame, after: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The key rows new or changed (a later use, more uses) and the rows gone (left the link window)
    between two calls: what an incremental stage that is not told its changes finds first."""
    return (
        after.join(before, on=[*ROW, "last_seen", "uses"], how="anti"),
        before.join(after, on=ROW, how="anti"),
    )


def _linking(n: str, total: int, cfg: LinkSettings) -> pl.Expr:
    """A key with ``n`` holders can link (``build_clusters``: two holders, not common; tenants aside)."""
    common = (pl.col(n) > cfg.common_min_accounts) & (pl.col(n) / max(total, 1) > cfg.common_share)
    return (pl.col(n) >= 2) & ~common


def churn(
    before: pl.DataFrame, after: pl.DataFrame, totals: tuple[int, int], cfg: LinkSettings
) -> dict[str, int]:
    """What changed in the key table between two calls (``changes``): the rows, the accounts holding
    them, and the keys whose holder count moved while they could link (``totals``: each call's
    accounts, the common-key test's denominator; tenants left out)."""
    changed, gone = changes(before, after)
    n_before = before.group_by("family", "key").agg(pl.len().alias("n"))
    n_after = after.group_by("family", "key").agg(pl.len().alias("n_after"))
    moved = (
        n_after.join(n_before, on=["family", "key"], how="full", coalesce=True)
        .with_columns(pl.col("n", "n_after").fill_null(0))
        .filter(pl.col("n_after") != pl.col("n"))
        .filter(_linking("n", totals[0], cfg) | _linking("n_after", totals[1], cfg))
    )
    # keys that began or stopped linking (two holders, the common-key share): their holders' top keys
    # and pairs change with them; the other moved keys change only the link tests of their groups
    crossed = moved.filter(_linking("n", totals[0], cfg) != _linking("n_after", totals[1], cfg))
    holding = {
        name: after.join(frame.select("family", "key"), on=["family", "key"], how="semi")["account_id"]
        for name, frame in (("moved", moved), ("crossed", crossed))
    }
    changed_ids = pl.concat([changed["account_id"], gone["account_id"]])
    return {
        "rows": after.height,
        "changed": changed.height,
        "gone": gone.height,
        "accounts": after["account_id"].n_unique(),
        "accounts_changed": changed_ids.n_unique(),
        "accounts_crossed": pl.concat([changed_ids, holding["crossed"]]).n_unique(),
        "accounts_moved": pl.concat([changed_ids, holding["moved"]]).n_unique(),
        "keys": n_after.height,
        "keys_moved": moved.height,
        "keys_crossed": crossed.height,
    }


def steps(calls: list[Call], cfg: LinkSettings, repeat: int) -> list[tuple[int, str, float]]:
    """CPU seconds of each top-level statement of ``build_clusters`` (line in ``window/link.py``, its
    first line, seconds), summed over ``calls``, mean of ``repeat`` runs, most first: a copy of the
    function that reads the CPU clock before each statement (and after the call)."""
    source = inspect.getsource(link)
    tree = ast.parse(source)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_clusters")
    body: list[ast.stmt] = [fn.body[0]]  # the docstring
    for stmt in fn.body[1:]:
        body += [ast.Expr(ast.Call(ast.Name("_step", ast.Load()), [ast.Constant(stmt.lineno)], [])), stmt]
    fn.body = body
    spent: Counter[int] = Counter()
    at = {"line": 0, "t": 0.0}

    def step(line: int) -> None:
        now = time.process_time()
        spent[at["line"]] += now - at["t"]
        at["line"], at["t"] = line, now

    namespace = {**vars(link), "_step": step}
    code = compile(ast.fix_missing_locations(ast.Module([fn], [])), link.__file__ or "link.py", "exec")
    exec(code, namespace)  # noqa: S102 - our own module's function, with clock reads added
    timed: Callable[..., Clusters] = namespace["build_clusters"]
    for _ in range(repeat):
        for call in calls:
            at["line"], at["t"] = 0, time.process_time()
            timed(call.keys, call.accounts, cfg)
            step(0)
    lines = source.splitlines()
    return sorted(
        ((line, lines[line - 1].strip(), sec / repeat) for line, sec in spent.items() if line),
        key=lambda row: -row[2],
    )


def _cpu(fn: object, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()  # type: ignore[operator]
        best = min(best, time.process_time() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("file", type=Path, help="A JSONL or Parquet file of gateway events.")
    ap.add_argument("--models", action="store_true", help="Replay with the models (clusters are the same).")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", action="store_true", help="Also the CPU of each statement of build_clusters.")
    args = ap.parse_args()
    calls, engine = record(args.file, args.models)
    cfg = engine.settings.link
    empty = calls[0].keys.clear() if calls else pl.DataFrame()
    print(f"{args.file}: {len(calls)} build_clusters calls, CPU best of {args.repeat} each")
    print(
        "| call | key rows | new or changed | gone | accounts changed | ... or holding a key that crossed "
        "| ... or that moved | keys moved (crossed) | stage ms | diff ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    totals: dict[str, float] = {}
    for i, call in enumerate(calls):
        before = calls[i - 1].keys if i else empty
        c = churn(before, call.keys, (calls[i - 1].accounts.height if i else 0, call.accounts.height), cfg)
        stage = _cpu(lambda call=call: build_clusters(call.keys, call.accounts, cfg), args.repeat)
        diff = _cpu(lambda before=before, call=call: changes(before, call.keys), args.repeat)
        print(
            f"| {i} | {c['rows']:,} | {c['changed']:,} | {c['gone']:,} | "
            f"{c['accounts_changed']:,} of {c['accounts']:,} | {c['accounts_crossed']:,} | "
            f"{c['accounts_moved']:,} | {c['keys_moved']:,} ({c['keys_crossed']:,}) of {c['keys']:,} | "
            f"{stage * 1e3:.1f} | {diff * 1e3:.1f} |"
        )
        if i:  # the first call has nothing to compare with: every row is new
            for name, value in {**c, "stage": stage, "diff": diff}.items():
                totals[name] = totals.get(name, 0) + value
    if totals:
        rows = totals["rows"]
        print(
            f"calls after the first: {int(rows):,} key rows read, "
            f"{(totals['changed'] + totals['gone']) / rows:.1%} new, changed or gone; "
            f"{totals['accounts_changed'] / totals['accounts']:.1%} of accounts changed "
            f"({totals['accounts_crossed'] / totals['accounts']:.1%} with those holding a key that "
            f"began or stopped linking, {totals['accounts_moved'] / totals['accounts']:.1%} with those "
            "holding one whose holders moved); "
            f"{totals['keys_moved'] / totals['keys']:.1%} of keys moved, "
            f"{totals['keys_crossed'] / totals['keys']:.1%} crossed; "
            f"stage {totals['stage']:.3f} s CPU, diff {totals['diff']:.3f} s"
        )
    if args.steps:
        print(f"build_clusters' 20 costliest statements, {len(calls)} calls (mean of {args.repeat} runs):")
        print("| line of window/link.py | statement | ms |")
        print("|---|---|---|")
        for line, text, sec in steps(calls, cfg, args.repeat)[:20]:
            print(f"| {line} | `{text[:60]}` | {sec * 1e3:.1f} |")


if __name__ == "__main__":
    main()
