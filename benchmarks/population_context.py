"""Round 15 (issue 13): the population context's size per tick, and what building it costs.

Replays a file with ``context_lag`` on, in this process, and prints JSON: the process CPU seconds of
the replay (all threads), and where ``detector.detect.context`` exists (round 15 on) the seconds inside
``build_contexts`` (the cluster stage's part) and, per tick's context, its bytes (``to_bytes``) and rows
per kind (median, max). On a checkout before round 15 (``PYTHONPATH`` at one) it prints the CPU only,
so one shell can alternate before and after (``/tmp/base``: ``git archive b521c00 detector models rules |
tar -x -C /tmp/base``; not ``python -m detector`` from the repository root, which imports the root's):

    .venv/bin/python benchmarks/population_context.py out/d1/events.parquet             # sizes
    .venv/bin/python benchmarks/population_context.py out/d1/events.parquet --cpu-only  # after
    PYTHONPATH=/tmp/base .venv/bin/python benchmarks/population_context.py out/d1/events.parquet --cpu-only
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from detector.app import build_engine
from detector.engine import Observers
from detector.runtime.replay import replay
from detector.settings import EngineSettings

try:
    from detector.window.framing import Budget
except ImportError:  # before round 18
    Budget = None  # type: ignore[assignment,misc]


def _spread(values: list[int]) -> dict[str, float]:
    return {"median": statistics.median(values), "max": max(values)} if values else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("--cpu-only", action="store_true", help="no sizes (to_bytes costs CPU of its own)")
    args = parser.parse_args()
    settings = EngineSettings().model_copy(update={"context_lag": True})
    sizes: list[int] = []
    decoded: list[int] = []
    rows: dict[str, list[int]] = {}
    built = [0.0]
    observers: dict[str, Any] = {}
    try:
        ctx_module: Any = importlib.import_module("detector.detect.context")
    except ImportError:
        ctx_module = None
    if ctx_module is not None:
        build = ctx_module.build_contexts

        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.process_time()
            try:
                return build(*a, **k)
            finally:
                built[0] += time.process_time() - t0

        ctx_module.build_contexts = timed

        def record(ctx: Any) -> Any:
            data = ctx.to_bytes()
            sizes.append(len(data))
            if Budget is not None:  # round 18 on: what the account stage decodes it to
                budget = Budget(1 << 62, "population context")
                type(ctx).from_bytes(data, budget)
                decoded.append(budget.used)
            for kind, n in ctx.rows().items():
                rows.setdefault(kind, []).append(n)
            return ctx

        if not args.cpu_only:
            observers["on_context"] = record
    engine = build_engine(settings=settings, observers=Observers(**observers))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.process_time()
        replay([args.events], engine, Path(tmp) / "alerts.jsonl")
        cpu = time.process_time() - t0
    out: dict[str, Any] = {"events": str(args.events), "replay_cpu_s": round(cpu, 2)}
    if ctx_module is not None:
        out["build_contexts_cpu_s"] = round(built[0], 2)
    if sizes:  # the recorder's own to_bytes is outside build_contexts but inside the replay's CPU
        out |= {
            "contexts": len(sizes),
            "bytes": _spread(sizes) | {"total": sum(sizes)},
            "decoded_bytes": _spread(decoded),
            "decoded_ratio_max": round(
                max((d / b for d, b in zip(decoded, sizes, strict=False)), default=0), 2
            ),
            "rows": {k: _spread(v) for k, v in rows.items()},
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
