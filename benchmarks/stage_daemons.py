"""CPU per event of the daemon split on Kafka (``DETECTOR_STAGE``) against one ``all`` daemon.

Starts the embedded broker, produces a simulated file's events to a 4-partition input topic, and runs
``detector run --drain`` as child processes, each in its own consumer group and state directory:

- ``all``: today's daemon (lag off), then ``all`` with ``DETECTOR_CONTEXT_LAG=true``;
- the split: one ``cluster`` stage and two ``account`` stages, started together (lag on).

Each child's CPU (user + system, its threads and its decoding workers) is read from ``wait4`` (the
workers, its own children, are reaped into it). The same run on an empty topic gives each process's fixed
cost (imports, models, joining the group), printed apart and subtracted for the per-event figures.
Prints JSON.

    .venv/bin/python benchmarks/stage_daemons.py out/half/events.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import kafka_broker as kb  # noqa: E402

CONTEXTS = "detector-contexts"


def _run(settings: Any, runs: list[dict[str, str]], logs: Path) -> list[dict[str, float]]:
    """Start every run (its environment) together; wait for all; each one's CPU and wall seconds."""
    t0 = time.monotonic()
    procs = []
    for i, env in enumerate(runs):
        log = logs / f"{env.get('DETECTOR_STAGE', 'all')}-{i}.log"
        procs.append(kb.start_daemon_process(settings, "--drain", log_file=log, env_extra=env))
    out = []
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"a daemon failed ({proc.returncode}); logs in {logs}")
        out.append({"cpu_s": usage.ru_utime + usage.ru_stime, "wall_s": time.monotonic() - t0})
    return out


def measure(events_file: Path, work: Path) -> dict[str, Any]:
    events = kb.read_events(events_file)
    lag = {"DETECTOR_CONTEXT_LAG": "true"}
    cases = {
        "all": [{}],
        "all_lag": [lag],
        "split": [{**lag, "DETECTOR_STAGE": s} for s in ("cluster", "account", "account")],
    }
    result: dict[str, Any] = {"events": len(events)}
    for empty in (True, False):
        with kb.EmbeddedBroker() as broker:
            kb.make_topics(broker.bootstrap, extra={CONTEXTS: 1})
            if not empty:
                kb.produce_events(broker.bootstrap, events)
            for name, runs in cases.items():
                where = work / f"{name}-{'empty' if empty else 'full'}"
                where.mkdir(parents=True)
                settings = kb.stream_settings(
                    broker.bootstrap, where / "state", group_id=f"bench-{name}", commit_interval_s=5.0
                )
                result[f"{name}{'_fixed' if empty else ''}"] = _run(settings, runs, where)
    n = len(events)
    for name in cases:
        full, fixed = result[name], result[f"{name}_fixed"]
        total = sum(r["cpu_s"] for r in full)
        net = total - sum(r["cpu_s"] for r in fixed)
        result[f"{name}_cpu_us_per_event"] = round(total / n * 1e6, 1)
        result[f"{name}_net_cpu_us_per_event"] = round(net / n * 1e6, 1)
    base = result["all_net_cpu_us_per_event"]
    result["split_vs_all_net"] = round(result["split_net_cpu_us_per_event"] / base, 2)
    result["all_lag_vs_all_net"] = round(result["all_lag_net_cpu_us_per_event"] / base, 2)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("events", type=Path, help="a simulated events.jsonl")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="stage-daemons-") as tmp:
        print(json.dumps(measure(args.events, Path(tmp)), indent=1))


if __name__ == "__main__":
    main()
