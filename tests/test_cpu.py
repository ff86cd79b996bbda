"""CPU-time readings behind the benchmarks' CPU-per-event figures."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from detector.lab.bench.replay import READER_ROW, budget_lines, parts_lines
from detector.runtime.cpu import cores, own_seconds, pid_seconds


def test_a_busy_child_is_charged_its_cpu_and_an_idle_one_nothing() -> None:
    busy = "\n".join(
        [
            "import time",
            "t = time.process_time()",
            "while time.process_time() - t < 0.6: pass",
            "print(1, flush=True)",
            "time.sleep(30)",
        ]
    )
    idle = "import time; print(1, flush=True); time.sleep(30)"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) for code in (busy, idle)]
    try:
        for p in procs:
            assert p.stdout is not None
            p.stdout.readline()  # the busy one has spun its 0.6 s of CPU, the idle one has started
        spent = [pid_seconds(p.pid) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert spent[0] is not None and spent[1] is not None
    assert spent[0] >= 0.5
    assert spent[1] < spent[0] / 2  # start-up only
    assert pid_seconds(2**22 + 12345) is None  # no such process


def test_own_cpu_counts_work_not_sleep() -> None:
    t0 = own_seconds()
    time.sleep(0.3)
    slept = own_seconds() - t0
    t1 = own_seconds()
    while own_seconds() - t1 < 0.2:
        pass
    assert slept < 0.1
    assert own_seconds() - t1 >= 0.2
    assert 1 <= cores() <= (os.cpu_count() or 1)


def test_budget_is_cores_over_the_target_rate() -> None:
    def row(stage: str, eps: float, cpu: float = 0.0, busy: float = 1.0) -> dict[str, float | str]:
        return {"stage": stage, "events_per_s": eps, "cpu_us_per_event": cpu, "cores_busy": busy}

    rows = [
        row("jsonl ceiling: polars read_ndjson(schema)", 400_000.0),
        row("jsonl decode + enrich (prompt features)", 250_000.0, cpu=7.0),
        row("jsonl replay end to end", 40_000.0, cpu=48.0, busy=1.9),
        row("parquet engine only", 45_000.0, cpu=30.0),
    ]
    (line,) = budget_lines(rows, 2)
    # 0.6 x 400,000 = 240,000 events/s on 2 cores: 2 / 240,000 s = 8.3 µs per event; 48 is 5.8x that,
    # and 2 cores at 48 µs per event reach 41,667 events/s; decoding leaves 8.3 - 7.0 = 1.3 µs
    assert "240,000 events/s on 2 cores" in line
    assert "at most 8.3 CPU µs per event" in line
    assert "(5.8x the budget" in line
    assert "it would reach 41,667 events/s" in line
    assert "leaving 1.3 for the engine, which spends 30.0" in line
    # no Parquet rows: no Parquet target line
    assert all("parquet target" not in x for x in budget_lines(rows, 2))


def test_parts_line_sets_replay_beside_reader_plus_engine() -> None:
    def row(stage: str, cpu: float) -> dict[str, float | str]:
        return {"stage": stage, "events_per_s": 1.0, "cpu_us_per_event": cpu, "cores_busy": 1.0}

    rows = [
        row("parquet replay end to end", 123.0),
        row(READER_ROW, 14.0),
        row("parquet engine only", 105.0),
    ]
    (line,) = parts_lines(rows)
    assert "reader 14.0 + engine 105.0 = 119.0" in line
    assert "not accounted for +4.0 (1.03x the parts)" in line
    # without the reader row there is nothing to add up
    assert parts_lines([r for r in rows if r["stage"] != READER_ROW]) == []
