"""Engine checkpoints: stop anywhere, restore into a fresh engine, and the alerts are the same."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from detector.app import build_engine
from detector.checkpoint import load_engine, save_engine
from detector.io.files import iter_file
from detector.statedir import seal

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    from detector.lab.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    simulate(out, days=1.0, seed=11, scale=0.25)
    frames = [c.batch.events for c in iter_file(out / "events.jsonl")]
    return pl.concat(frames).sort("ts", "request_id")


def _keys(alerts: list) -> list[tuple[str, int, str, tuple[str, ...]]]:
    return [(a.alert_id, a.revision, a.severity, tuple(a.account_ids)) for a in alerts]


def test_restore_mid_stream_gives_the_same_alerts(events: pl.DataFrame, tmp_path: Path) -> None:
    batch = 3_000
    whole = build_engine(ROOT / "rules")
    expected = []
    for start in range(0, events.height, batch):
        expected += whole.process(events.slice(start, batch))
    expected += whole.flush()
    assert expected, "the simulated day should raise alerts"

    cut = (events.height // batch // 2) * batch + 1234  # mid-batch, mid-tick
    first = build_engine(ROOT / "rules")
    got = first.process(events.slice(0, cut))
    save_engine(first, tmp_path / "ckpt", extra={"offsets": {"0": cut}})
    save_engine(first, tmp_path / "ckpt", extra={"offsets": {"0": cut}})  # a second save, made current
    assert len(list((tmp_path / "ckpt").glob("ckpt-*"))) == 2  # the current one and the one before

    second = build_engine(ROOT / "rules")
    extra = load_engine(second, tmp_path / "ckpt")
    assert extra == {"offsets": {"0": cut}}
    rest = events.slice(cut)
    for start in range(0, rest.height, batch):
        got += second.process(rest.slice(start, batch))
    got += second.flush()
    assert _keys(got) == _keys(expected)
    assert [a.model_dump() for a in got] == [a.model_dump() for a in expected]


def test_no_checkpoint_loads_as_none(tmp_path: Path) -> None:
    assert load_engine(build_engine(ROOT / "rules"), tmp_path / "empty") is None


def test_replayed_events_after_restore_are_not_counted_twice(events: pl.DataFrame, tmp_path: Path) -> None:
    """At-least-once delivery after a crash: events already in the checkpoint are dropped as duplicates."""
    eng = build_engine(ROOT / "rules")
    cut = 5_000
    eng.process(events.slice(0, cut))
    save_engine(eng, tmp_path / "c")
    again = build_engine(ROOT / "rules")
    load_engine(again, tmp_path / "c")
    again.process(events.slice(0, cut + 2_000))  # the consumer re-reads from an older offset
    again.flush()
    once = build_engine(ROOT / "rules")
    once.process(events.slice(0, cut + 2_000))
    once.flush()
    assert again.stats.events == once.stats.events


def test_a_racing_writers_folder_is_not_deleted(events: pl.DataFrame, tmp_path: Path) -> None:
    """Only folders older than the one just made current are cleaned up, never a peer's newer one."""
    eng = build_engine(ROOT / "rules")
    eng.process(events.slice(0, 2_000))
    root = tmp_path / "c"
    save_engine(eng, root)
    stale = root / "ckpt-000000-00000000"
    stale.mkdir()
    racing = root / "ckpt-000009-feedbeef"  # a successor writing a later checkpoint at the same time
    racing.mkdir()
    current = save_engine(eng, root)
    assert current.name.startswith("ckpt-000002-")
    assert racing.exists() and not stale.exists()
    assert (root / "CURRENT").read_text() == current.name


def test_checkpoint_files_hold_no_prompt_text(events: pl.DataFrame, tmp_path: Path) -> None:
    """Every checkpoint file (state tables, buffered events, episode book, meta), bytes and decoded
    Parquet values alike, holds no 30-character piece of any prompt the engine read."""
    texts = [t for t in events["prompt_text"].to_list() if t]  # decoded events carry it until enrichment
    engine = build_engine(ROOT / "rules")
    cut = events.height // 2 + 777  # mid-tick: buffered events go into pending.parquet
    engine.process(events.slice(0, cut))
    folder = save_engine(engine, tmp_path / "ckpt", extra={"offsets": {"0": cut}})
    assert (folder / "pending.parquet").exists()
    blobs = []
    for f in sorted(folder.iterdir()):
        blobs.append(f.read_bytes().decode("latin-1"))
        if f.suffix == ".parquet":
            frame = pl.read_parquet(f)
            lists = [c for c, d in frame.schema.items() if isinstance(d, pl.List)]  # hashes per tick
            blobs.append((frame.explode(lists) if lists else frame).write_csv())
    grams = {t[i : i + 30] for t in texts for i in range(max(1, len(t) - 29))}
    assert len(grams) > 1000
    for blob in blobs:
        assert not any(blob[i : i + 30] in grams for i in range(len(blob) - 29))


def test_checkpoint_without_last_verdict_times_closes_no_episode_early(
    events: pl.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint written before episodes expired has no ``last_hit``: its episodes count as seen at
    the checkpoint, so none reopens under a new id within ``episode_idle`` of the restore (counting
    from each episode's first detection would reopen the long-running ones at once: duplicate alerts)."""
    import json
    from datetime import datetime, timedelta

    monkeypatch.setenv("DETECTOR_WINDOWS__EPISODE_IDLE", "PT2H")
    idle = timedelta(hours=2)
    eng = build_engine(ROOT / "rules")
    cut = events.height * 2 // 3
    eng.process(events.slice(0, cut))
    folder = save_engine(eng, tmp_path / "c")
    book = json.loads((folder / "book.json").read_text())
    for e in book:
        del e["last_hit"]
    (folder / "book.json").write_text(json.dumps(book))
    seal(folder)  # a deliberate rewrite: an older build's checkpoint, whole
    clock = json.loads((folder / "meta.json").read_text())["clock"]
    restored_at = datetime.fromisoformat(clock["last_closed"])
    open_ids = {(e["kind"], e["subject"]): e["alert_id"] for e in book}
    old = [e for e in book if restored_at - datetime.fromisoformat(e["detected_event_ts"]) > idle]
    assert old, "the checkpoint should hold episodes first detected more than idle before it"

    again = build_engine(ROOT / "rules")
    load_engine(again, tmp_path / "c")
    alerts = again.process(events.slice(cut)) + again.flush()
    early = [
        a
        for a in alerts
        if (a.kind, a.subject) in open_ids and a.evidence["revision_event_ts"] <= restored_at + idle
    ]
    assert early, "some restored episodes should get a verdict soon after the restore"
    assert all(a.alert_id == open_ids[(a.kind, a.subject)] for a in early)


def test_a_damaged_checkpoint_falls_back_loudly_to_the_previous_one(
    events: pl.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The current checkpoint's state file deleted: the load takes the previous checkpoint (its offsets
    with its state), logs one error line naming both folders, counts it and sets the damaged one aside;
    with the previous one damaged too, the load refuses, naming the state directory."""
    import logging

    from detector.statedir import NoGoodCheckpoint

    eng = build_engine(ROOT / "rules")
    eng.process(events.slice(0, 3_000))
    previous = save_engine(eng, tmp_path / "c", extra={"offsets": {"0": 3_000}})
    eng.process(events.slice(3_000, 3_000))
    current = save_engine(eng, tmp_path / "c", extra={"offsets": {"0": 6_000}})
    (current / "buckets.parquet").unlink()
    fallbacks: list[int] = []
    again = build_engine(ROOT / "rules")
    with caplog.at_level(logging.ERROR, logger="detector.checkpoint"):
        extra = load_engine(again, tmp_path / "c", lambda: fallbacks.append(1))
    assert extra == {"offsets": {"0": 3_000}} and fallbacks == [1]
    (line,) = [r for r in caplog.records if r.name == "detector.checkpoint"]
    assert line.levelno == logging.ERROR
    assert line.skipped == [f"{current.name}: missing buckets.parquet"]  # type: ignore[attr-defined]
    assert line.loaded == previous.name  # type: ignore[attr-defined]
    assert (tmp_path / "c" / f"damaged-{current.name}").is_dir() and not current.exists()
    once = build_engine(ROOT / "rules")
    once.process(events.slice(0, 3_000))
    assert again.stats.events == once.stats.events  # the previous checkpoint's state, whole

    (previous / "book.json").write_text("[]")
    with pytest.raises(NoGoodCheckpoint) as info:
        load_engine(build_engine(ROOT / "rules"), tmp_path / "c")
    assert str(tmp_path / "c") in str(info.value) and "--reset-state" in str(info.value)
