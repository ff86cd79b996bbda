"""Replay end to end: contract examples, determinism, alerts valid per the alert schema, CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from detector.app import build_engine
from detector.cli import app, main
from detector.runtime.replay import EXIT_REJECTED_INPUTS, replay

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _validator(shared_dir: Path) -> jsonschema.Draft202012Validator:
    schema = json.loads((shared_dir / "contracts" / "alert.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_good_examples_replay_with_no_rejects(shared_dir: Path, tmp_path: Path) -> None:
    good = sorted((shared_dir / "contracts" / "examples" / "good").iterdir())
    s = replay(good, build_engine(ROOT / "rules"), tmp_path / "a.jsonl")
    assert s.records == len(good) and s.events == len(good) and not s.rejects


def test_bad_examples_each_rejected_with_reason_and_exit_5(
    shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the entry point a user runs (errors become one line and an exit status there)."""
    bad_dir = shared_dir / "contracts" / "examples" / "bad"
    bad = sorted(bad_dir.iterdir())
    code = main(
        [
            "replay",
            str(bad_dir),
            "--alerts-out",
            str(tmp_path / "a.jsonl"),
            "--rejects-out",
            str(tmp_path / "r.jsonl"),
            "--rules",
            str(ROOT / "rules"),
            "--json",
        ],
    )
    out = capsys.readouterr()
    assert code == EXIT_REJECTED_INPUTS == 5, out  # completed, inputs rejected
    assert out.err.count("\n") == 1 and "no events processed" in out.err  # one line, no traceback
    summary = json.loads(out.out)
    assert summary["events"] == 0 and sum(summary["rejects"].values()) == len(bad)
    rejects = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert sorted(Path(r["position"].rsplit(":", 1)[0]).name for r in rejects) == sorted(p.name for p in bad)
    assert all(r["reason"] and r["detail"] for r in rejects)


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from detector.lab.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    simulate(out, days=1.5, seed=3, scale=0.3)
    return out


def test_replay_is_deterministic_and_alerts_follow_the_contract(
    sim_dir: Path, tmp_path: Path, shared_dir: Path
) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    replay([sim_dir / "events.jsonl"], build_engine(ROOT / "rules"), a)
    replay([sim_dir / "events.jsonl"], build_engine(ROOT / "rules"), b)
    assert a.read_bytes() == b.read_bytes()
    lines = a.read_text().splitlines()
    assert lines, "the simulated campaigns should raise alerts"
    validator = _validator(shared_dir)
    for line in lines:
        validator.validate(json.loads(line))


def test_parquet_and_jsonl_give_the_same_alerts(sim_dir: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    replay([sim_dir / "events.jsonl"], build_engine(ROOT / "rules"), a)
    replay([sim_dir / "events.parquet"], build_engine(ROOT / "rules"), b)
    assert a.read_bytes() == b.read_bytes()


def test_streaming_merge_of_time_ordered_files_matches_the_single_file(
    sim_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three time-ordered Parquet files interleaved in time (split by account) stream through the
    reader thread's merge in small chunks and give the alerts of the single JSON Lines file, and so does
    a streaming run with a failing reader (it raises)."""
    import polars as pl

    import detector.runtime.replay as rp

    events = pl.read_parquet(sim_dir / "events.parquet")
    parts = []
    for i in range(3):
        part = events.filter(pl.col("account_id").hash(seed=1) % 3 == i)
        parts.append(tmp_path / f"part{i}.parquet")
        part.write_parquet(parts[-1])

    ref = tmp_path / "ref.jsonl"
    replay([sim_dir / "events.jsonl"], build_engine(ROOT / "rules"), ref)
    monkeypatch.setattr(rp, "PIECE_ROWS", 300)  # many pieces: many frontier releases
    merged = tmp_path / "merged.jsonl"
    s = replay(parts, build_engine(ROOT / "rules"), merged, lateness=timedelta(0))
    assert s.events == events.height and s.late == 0
    assert merged.read_bytes() == ref.read_bytes()

    shipped = rp.iter_parquet

    def broken(path: Path, rows: int) -> object:
        yield from shipped(path, rows)
        raise OSError("disk went away")

    monkeypatch.setattr(rp, "iter_parquet", broken)
    with pytest.raises(OSError, match="disk went away"):
        replay(parts, build_engine(ROOT / "rules"), tmp_path / "x.jsonl")


def _shuffled_within(src: Path, dst: Path, window: str) -> None:
    """``src``'s JSON Lines, shuffled within windows of event time (a nearly time-ordered log)."""
    import polars as pl

    lines = src.read_bytes().splitlines(keepends=True)
    ts = pl.read_ndjson(src, schema={"ts": pl.String}).get_column("ts").str.to_datetime(time_zone="UTC")
    order = (
        pl.DataFrame({"w": ts.dt.truncate(window), "i": pl.int_range(len(lines), eager=True)})
        .with_columns(pl.col("i").shuffle(seed=11).over("w").alias("j"))
        .sort("w", maintain_order=True)
        .get_column("j")
    )
    dst.write_bytes(b"".join(lines[j] for j in order.to_list()))


def test_unordered_input_streams_through_a_reorder_buffer_bounded_by_event_time(
    sim_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON Lines shuffled within 5-minute windows (disorder inside the engine's 5-minute allowed
    lateness), read in small chunks, gives the alerts of the time-ordered file byte for byte; so does a
    file shuffled within 2 hours once the bound covers it. With the default bound the 2-hour shuffle is
    replayed, not dropped: every event is processed and the ones beyond the bound are counted late. The
    buffer never holds more than the bound's worth of events plus a chunk."""
    import detector.runtime.replay as rp
    from detector.runtime.merge import EventTimeMerge

    src = sim_dir / "events.jsonl"
    ref = tmp_path / "ref.jsonl"
    replay([src], build_engine(ROOT / "rules"), ref)
    near, far = tmp_path / "near.jsonl", tmp_path / "far.jsonl"
    _shuffled_within(src, near, "5m")
    _shuffled_within(src, far, "2h")
    assert near.read_bytes() != src.read_bytes()

    held: list[int] = []
    shipped = EventTimeMerge.release

    def release(self: EventTimeMerge, highwater: dict[int, int | None]) -> object:
        held.append(self.held())
        return shipped(self, highwater)

    monkeypatch.setattr(EventTimeMerge, "release", release)
    chunk = 400_000
    monkeypatch.setattr(rp, "STREAM_BYTES", chunk)  # ~300 events a chunk: many releases
    out = tmp_path / "near_alerts.jsonl"
    s = replay([near], build_engine(ROOT / "rules"), out)
    assert out.read_bytes() == ref.read_bytes() and s.late == 0
    # 1.5 days of ~9,000 events: a release holds far fewer than the input (5 minutes + one chunk)
    per_chunk = chunk // 1000
    assert len(held) > 20 and max(held) < 2 * per_chunk + 400, max(held)

    # a folder of consecutive logs (six spans of time, each shuffled within 5 minutes) is read file after
    # file, not a chunk of every file at once: the same bound on what is held
    lines = near.read_bytes().splitlines(keepends=True)
    step = len(lines) // 6 + 1
    folder = [tmp_path / f"log{k}.jsonl" for k in range(6)]
    for k, f in enumerate(folder):
        f.write_bytes(b"".join(lines[k * step : (k + 1) * step]))
    held.clear()
    out = tmp_path / "folder_alerts.jsonl"
    s = replay(folder, build_engine(ROOT / "rules"), out)
    assert out.read_bytes() == ref.read_bytes() and s.late == 0
    assert max(held) < 2 * per_chunk + 400, max(held)

    s = replay([far], build_engine(ROOT / "rules"), tmp_path / "far_default.jsonl")
    assert s.events == s.records - sum(s.rejects.values()) - s.duplicates
    assert s.late > 0
    out = tmp_path / "far_alerts.jsonl"
    s = replay([far], build_engine(ROOT / "rules"), out, lateness=timedelta(hours=2))
    assert out.read_bytes() == ref.read_bytes() and s.late == 0


def test_alerts_never_carry_prompt_text(sim_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "a.jsonl"
    replay([sim_dir / "events.jsonl"], build_engine(ROOT / "rules"), out)
    texts = set()
    with (sim_dir / "events.jsonl").open() as fh:
        for i, line in enumerate(fh):
            t = (json.loads(line).get("prompt") or {}).get("text")
            if t and len(t) > 40:
                texts.add(t[:40])
            if i > 3000:
                break
    body = out.read_text()
    assert not any(t in body for t in texts)


def test_cli_simulate_replay_evaluate_end_to_end(tmp_path: Path) -> None:
    s = tmp_path / "s"
    r = runner.invoke(app, ["simulate", "--out", str(s), "--days", "1", "--seed", "5", "--scale", "0.2"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        [
            "replay",
            str(s / "events.jsonl"),
            "--alerts-out",
            str(tmp_path / "a.jsonl"),
            "--rules",
            str(ROOT / "rules"),
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["evaluate", "--labels", str(s / "labels.json"), "--alerts", str(tmp_path / "a.jsonl"), "--json"]
    )
    assert r.exit_code == 0, r.output
    assert "recall" in r.stdout
