"""Replay end to end: contract examples, determinism, alerts valid per the alert schema, CLI."""

from __future__ import annotations

import json
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


def test_streaming_merge_of_time_ordered_files_matches_the_global_sort(
    sim_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three time-ordered Parquet files interleaved in time (split by account) stream through the
    reader thread's merge in small chunks; a shuffled copy takes the global sort. Both give the alerts
    of the single JSON Lines file, and so does a streaming run with a failing reader (it raises)."""
    import polars as pl

    import detector.runtime.replay as rp

    events = pl.read_parquet(sim_dir / "events.parquet")
    parts = []
    for i in range(3):
        part = events.filter(pl.col("account_id").hash(seed=1) % 3 == i)
        parts.append(tmp_path / f"part{i}.parquet")
        part.write_parquet(parts[-1])
    shuffled = tmp_path / "shuffled.parquet"
    events.sample(fraction=1.0, shuffle=True, seed=5).write_parquet(shuffled)
    assert all(rp.time_ordered(p) for p in parts)
    assert not rp.time_ordered(shuffled) and not rp.time_ordered(sim_dir / "events.jsonl")
    # in order as text, not as time (the decoder accepts an unpadded hour): judged on parsed times
    tricky = tmp_path / "tricky.parquet"
    pl.DataFrame({"ts": ["2026-03-02T10:00:00.123Z", "2026-03-02T9:59:59.1230Z"]}).write_parquet(tricky)
    assert not rp.time_ordered(tricky)

    ref = tmp_path / "ref.jsonl"
    replay([sim_dir / "events.jsonl"], build_engine(ROOT / "rules"), ref)
    monkeypatch.setattr(rp, "STREAM_ROWS", 1_000)  # many chunks: many frontier releases
    merged, glob = tmp_path / "merged.jsonl", tmp_path / "glob.jsonl"
    s = replay(parts, build_engine(ROOT / "rules"), merged)
    replay([shuffled], build_engine(ROOT / "rules"), glob)
    assert s.events == events.height
    assert merged.read_bytes() == ref.read_bytes() == glob.read_bytes()

    shipped = rp.iter_parquet

    def broken(path: Path, rows: int) -> object:
        yield from shipped(path, rows)
        raise OSError("disk went away")

    monkeypatch.setattr(rp, "iter_parquet", broken)
    with pytest.raises(OSError, match="disk went away"):
        replay(parts, build_engine(ROOT / "rules"), tmp_path / "x.jsonl")


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
