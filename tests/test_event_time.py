"""Event time that one record cannot move (issue 14, items 2 and 3).

A copy of a normal event dated 2099 (or a day ahead) is screened out as ``future_timestamp`` and the
alerts are the same as without it; timestamps in years 0001 and 9999 cost nothing; late events are
bounded; readiness says when the clock is implausible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from detector.app import build_engine
from detector.checkpoint import pending_events
from detector.contracts import Alert
from detector.decode_parquet import decode_frame
from detector.engine import Engine
from detector.runtime.replay import replay
from detector.window.eventtime import FUTURE, IMPLAUSIBLE

ROOT = Path(__file__).resolve().parents[1]
BATCH = 2_000  # events per poll, as the daemon feeds them


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from detector.lab.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    simulate(out, days=1.0, seed=5, scale=0.2)
    return out


@pytest.fixture(scope="module")
def events(sim: Path) -> pl.DataFrame:
    """The simulated day decoded, in arrival (time) order."""
    raw = pl.read_parquet(sim / "events.parquet")
    decoded = decode_frame(raw, lambda i: f"row{i}")
    assert not decoded.rejects
    return decoded.events.drop("_pos").sort("ts", "request_id")


def _with_copy(events: pl.DataFrame, ts: datetime) -> pl.DataFrame:
    """A copy of the event a fifth of the way in, re-dated to ``ts`` (new request id), inserted there."""
    at = events.height // 5
    copy = events.slice(at, 1).with_columns(
        pl.lit(ts).cast(pl.Datetime("us", "UTC")).alias("ts"), pl.lit("forged-1").alias("request_id")
    )
    return pl.concat([events.head(at), copy, events.slice(at)])


def _stream(engine: Engine, events: pl.DataFrame, *, guard: bool = True) -> tuple[list[Alert], int]:
    """Feed ``events`` in polls as the daemon does (one partition); alerts and screened-out count."""
    alerts: list[Alert] = []
    screened = 0
    for start in range(0, events.height, BATCH):
        batch = events.slice(start, BATCH).with_columns(pl.lit(0, pl.Int32).alias("_part"))
        if guard:
            batch, out = engine.time_guard.screen(batch, "_part")
            screened += out.height
            assert set(out["_reason"].to_list()) <= {FUTURE}
        alerts += engine.process(batch.drop("_part"))
    return alerts + engine.flush(), screened


def _accused(alerts: list[Alert]) -> set[tuple[str, str]]:
    return {(str(a.kind), acc) for a in alerts for acc in a.account_ids}


@pytest.fixture(scope="module")
def clean(events: pl.DataFrame) -> list[Alert]:
    alerts, screened = _stream(build_engine(ROOT / "rules", models=False), events)
    assert screened == 0 and alerts
    return alerts


@pytest.mark.parametrize("ahead", ["2099", "+1 day"])
def test_one_future_event_is_dead_lettered_and_changes_no_alert(
    events: pl.DataFrame, clean: list[Alert], ahead: str
) -> None:
    last = events["ts"].max()
    assert isinstance(last, datetime)
    when = datetime(2099, 6, 1, tzinfo=UTC) if ahead == "2099" else last + timedelta(days=1)
    forged = _with_copy(events, when)

    engine = build_engine(ROOT / "rules", models=False)
    alerts, screened = _stream(engine, forged)
    assert screened == 1
    assert engine.stats.late == 0
    assert _accused(alerts) == _accused(clean)  # recall (and everything else) unchanged

    # without the guard the same copy makes most of the rest late: the test can fail
    bare = build_engine(ROOT / "rules", models=False)
    _stream(bare, forged, guard=False)
    assert bare.stats.late > events.height // 2


def test_replay_dead_letters_the_future_copy(sim: Path, events: pl.DataFrame, tmp_path: Path) -> None:
    lines = (sim / "events.jsonl").read_text().splitlines()
    forged = json.loads(lines[len(lines) // 5])
    forged["request_id"], forged["ts"] = "forged-1", "2099-06-01T00:00:00Z"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "\n".join([*lines[: len(lines) // 5], json.dumps(forged), *lines[len(lines) // 5 :]]) + "\n"
    )
    base = replay([sim / "events.jsonl"], build_engine(ROOT / "rules", models=False), tmp_path / "a.jsonl")
    s = replay([bad], build_engine(ROOT / "rules", models=False), tmp_path / "b.jsonl", tmp_path / "r.jsonl")
    assert s.rejects == {FUTURE: 1}
    assert s.records == s.events + sum(s.rejects.values()) + s.duplicates
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    dead = json.loads((tmp_path / "r.jsonl").read_text())
    assert dead["reason"] == FUTURE and "forged-1" in dead["position"]
    assert base.events == s.events


def test_a_real_jump_in_time_is_followed_after_a_few_events(events: pl.DataFrame) -> None:
    """A gap in the logs: the first events after it are dead-lettered until ``min_support`` arrive."""
    engine = build_engine(ROOT / "rules", models=False)
    first = events.head(3_000)
    later = events.slice(3_000, 200).with_columns(pl.col("ts") + pl.duration(days=2))
    kept_total = 0
    screened_total = 0
    for batch in [first, *[later.slice(i, 1) for i in range(later.height)]]:
        kept, out = engine.time_guard.screen(batch, key="p")
        kept_total += kept.height
        screened_total += out.height
    assert screened_total == engine.settings.event_time.min_support - 1
    assert kept_total == 3_200 - screened_total


def test_sparse_traffic_with_quiet_hours_in_one_batch_is_all_kept(events: pl.DataFrame) -> None:
    """Every run of events is judged as a whole: hours of silence inside a batch reject nothing."""
    engine = build_engine(ROOT / "rules", models=False)
    sparse = pl.concat(
        [events.slice(i * 100, 20).with_columns(pl.col("ts") + pl.duration(hours=3 * i)) for i in range(8)]
    )
    kept, out = engine.time_guard.screen(sparse, key="p")
    assert out.height == 0 and kept.height == 160


def test_ingest_clock_rejects_what_the_partition_cannot(events: pl.DataFrame) -> None:
    """A lone event in its own poll is judged against the daemon's wall clock."""
    engine = build_engine(ROOT / "rules", models=False)
    now = events["ts"].max()
    assert isinstance(now, datetime)
    lone = events.slice(0, 1).with_columns(
        pl.lit(0).alias("_part"), pl.lit(now + timedelta(days=1)).cast(pl.Datetime("us", "UTC")).alias("ts")
    )
    kept, out = engine.time_guard.screen(lone, "_part", ingest_now=now)
    assert kept.height == 0 and out["_reason"].to_list() == [FUTURE]
    kept, out = engine.time_guard.screen(
        lone.with_columns(pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("ts")), "_part", ingest_now=now
    )
    assert kept.height == 1 and out.height == 0


def test_a_broker_timestamp_rejects_an_event_dated_ahead_of_it(events: pl.DataFrame) -> None:
    """Each record is judged against its own Kafka timestamp where it has one (0 or null: none)."""
    engine = build_engine(ROOT / "rules", models=False)
    batch = events.slice(0, 3)
    first = batch["ts"][0]
    ms = int(first.timestamp() * 1000)
    stamped = batch.with_columns(pl.Series("_stamp", [ms - 7_200_000, 0, None], dtype=pl.Int64))
    kept, out = engine.time_guard.screen(stamped, key="p", stamp="_stamp")
    assert out["request_id"].to_list() == [batch["request_id"][0]] and out["_reason"].to_list() == [FUTURE]
    assert kept.height == 2


def test_years_0001_and_9999_are_rejected_and_cost_nothing(events: pl.DataFrame) -> None:
    engine = build_engine(ROOT / "rules", models=False)
    odd = events.head(4).with_columns(
        pl.Series("ts", [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC)] * 2).cast(
            pl.Datetime("us", "UTC")
        )
    )
    kept, out = engine.time_guard.screen(pl.concat([odd, events.slice(10, 100)]), key="f")
    assert out["_reason"].to_list() == [IMPLAUSIBLE] * 4 and kept.height == 100


def test_the_engine_itself_closes_a_gap_of_two_centuries_in_one_step(events: pl.DataFrame) -> None:
    """The widest gap the guard lets through (its plausible range): the engine used to list one tick
    per 15 minutes in between (7 million here; from year 0001, 19 GB then OverflowError)."""
    engine = build_engine(ROOT / "rules", models=False)
    lo, hi = engine.settings.event_time.plausible_from, engine.settings.event_time.plausible_until
    first = events.head(1_000).with_columns(pl.col("ts") - pl.col("ts").min() + pl.lit(lo))
    far = events.slice(1_000, 1_000).with_columns(
        pl.col("ts") - pl.col("ts").max() + pl.lit(hi - timedelta(days=2))
    )
    t0 = time.monotonic()
    engine.process(first)
    engine.process(far)
    engine.flush()
    assert time.monotonic() - t0 < 10
    assert engine.stats.events == 2_000


def test_replay_of_years_0001_and_9999_has_bounded_memory(sim: Path, tmp_path: Path) -> None:
    lines = (sim / "events.jsonl").read_text().splitlines()[:5_000]
    odd = []
    for i, ts in enumerate(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]):
        rec = json.loads(lines[i])
        rec["request_id"], rec["ts"] = f"odd-{i}", ts
        odd.append(json.dumps(rec))
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join([odd[0], *lines, odd[1]]) + "\n")
    code = (
        "import json, resource, sys; from pathlib import Path; from detector.app import build_engine; "
        "from detector.runtime.replay import replay; "
        f"rules = Path({str(ROOT / 'rules')!r}); "
        f"s = replay([Path({str(path)!r})], build_engine(rules, models=False), None); "
        "print(json.dumps({'rejects': dict(s.rejects), 'events': s.events, "
        "'rss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))"
    )
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
        check=True,
    )
    took = time.monotonic() - t0
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["rejects"] == {IMPLAUSIBLE: 2} and out["events"] == 5_000
    assert out["rss_kb"] < 1_500_000 and took < 120  # was 19 GB, then OverflowError


def test_late_events_are_bounded_and_readiness_fails_while_the_clock_is_stuck(events: pl.DataFrame) -> None:
    engine = build_engine(ROOT / "rules", models=False)
    engine.settings.event_time.max_late_events = 500
    head = events.head(1_000)
    engine.process(head)
    last = head["ts"].max()
    assert isinstance(last, datetime)
    assert engine.time_healthy(last)
    future = events.slice(1_000, 1).with_columns(
        pl.lit(datetime(2099, 1, 1, tzinfo=UTC)).cast(pl.Datetime("us", "UTC")).alias("ts")
    )
    engine.process(future)  # straight into the engine: what the guard prevents
    assert not engine.time_healthy(last)  # the clock is ahead of the ingest clock
    for start in range(1_001, 5_001, 250):
        engine.process(events.slice(start, 250))
        assert engine.clock.late_waiting <= 500
    assert engine.stats.late_folded >= 3_500
    pending = sum(p.height for p in engine.clock.pending)
    assert pending <= 500 + 1


def test_a_partition_read_again_counts_duplicates_not_late_events(events: pl.DataFrame) -> None:
    engine = build_engine(ROOT / "rules", models=False)
    head = events.head(3_000)
    assert head["request_id"].n_unique() == head.height
    engine.process(head)
    counted, late = engine.stats.events, engine.stats.late
    assert 0 < counted < head.height  # some ticks closed, the last one still pending
    engine.process(head)  # read again from offset 0 (a recreated topic, an older checkpoint restored)
    assert engine.stats.events == counted and engine.stats.late == late  # dropped, not late
    assert engine.stats.duplicates == counted
    pending = pending_events(engine)  # what a checkpoint keeps: the pending copies once
    assert pending is not None and pending.height == head.height - counted
    engine.flush()
    assert engine.stats.events == head.height and engine.stats.duplicates == head.height
