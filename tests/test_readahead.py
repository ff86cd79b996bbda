"""Replay's read-ahead is bounded in bytes (``DETECTOR_REPLAY_INFLIGHT_MB``, round 22): the frames the
reader has released and the engine has not finished never weigh more than the bound plus one release,
and the alerts are the same bytes at any bound (the engine's output does not depend on how its input is
batched: ``tests/test_slicing.py``)."""

from __future__ import annotations

import threading
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import detector.runtime.replay as rp
from detector.app import build_engine
from detector.cli import main
from detector.engine import Engine
from detector.runtime.merge import EventTimeMerge

ROOT = Path(__file__).resolve().parents[1]
#: Rows per decoded piece here: the small day comes in a few dozen pieces, so the bound is exercised.
PIECE = 1_500


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from detector.lab.simulate import simulate

    out = tmp_path_factory.mktemp("readahead")
    simulate(out, days=1.0, seed=11, scale=0.2)
    return out / "events.parquet"


class Watch:
    """Counts, from outside the replay's own gate, the rows and bytes the merge released that the engine
    had not yet processed, at every release."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frames: list[tuple[int, int]] = []  # (rows, bytes) of each release, in order
        self.done_rows = 0  # rows the engine has finished
        self.ahead: list[int] = []  # bytes released and not finished, before each release
        self.largest = 0

    def released(self, frame: pl.DataFrame) -> None:
        with self.lock:
            left, ahead = self.done_rows, 0
            for rows, nbytes in self.frames:  # a frame not wholly processed is still held, all of it
                if left >= rows:
                    left -= rows
                else:
                    ahead += nbytes
                    left = 0
            self.ahead.append(ahead)
            size = int(frame.estimated_size())
            self.frames.append((frame.height, size))
            self.largest = max(self.largest, size)

    def processed(self, rows: int) -> None:
        with self.lock:
            self.done_rows += rows


def _replay(day: Path, out: Path, limit: int | None, monkeypatch: pytest.MonkeyPatch) -> tuple[Watch, int]:
    watch = Watch()
    release, process = EventTimeMerge.release, Engine.process

    def released(self: EventTimeMerge, highwater: dict[int, int | None]) -> pl.DataFrame | None:
        frame = release(self, highwater)
        if frame is not None:
            watch.released(frame)
        return frame

    def processed(self: Engine, events: pl.DataFrame, *, enriched: bool = False) -> list:  # type: ignore[type-arg]
        alerts = process(self, events, enriched=enriched)
        watch.processed(events.height)
        return alerts

    monkeypatch.setattr(rp, "PIECE_ROWS", PIECE)
    monkeypatch.setattr(EventTimeMerge, "release", released)
    monkeypatch.setattr(Engine, "process", processed)
    summary = rp.replay([day], build_engine(ROOT / "rules"), out, inflight_bytes=limit)
    return watch, summary.inflight_peak


@pytest.fixture(scope="module")
def unbounded(day: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The reference: no bound to speak of (the whole day may be read ahead)."""
    out = tmp_path_factory.mktemp("ref") / "alerts.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        _replay(day, out, 1 << 40, mp)
    return out.read_bytes()


# a replay costs seconds: a few bounds, no shrinking
@settings(
    max_examples=4,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(limit=st.integers(min_value=1, max_value=4 << 20))
@example(limit=1)  # one frame at a time
@example(limit=600_000)  # about one piece
def test_the_bound_holds_and_the_alerts_do_not_move(
    day: Path, unbounded: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    out = tmp_path / f"alerts-{limit}.jsonl"
    watch, peak = _replay(day, out, limit, monkeypatch)
    assert len(watch.frames) > 10  # many releases: the reader had the chance to run ahead
    # the reader released nothing while more than the bound was still unprocessed ...
    assert max(watch.ahead) <= limit, (max(watch.ahead), limit)
    # ... so the most in flight is the bound plus one release (the replay's own count agrees)
    assert 0 < peak <= limit + watch.largest
    assert unbounded and out.read_bytes() == unbounded


def test_a_tiny_bound_runs_one_release_at_a_time(
    day: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a bound of one byte the reader waits for the engine before decoding each piece: nothing the
    engine has not finished is ever there when the next release is made."""
    watch, peak = _replay(day, tmp_path / "a.jsonl", 1, monkeypatch)
    assert watch.ahead and set(watch.ahead) == {0}
    assert peak == watch.largest


@pytest.mark.parametrize("value", ["0", "-64", "lots", "nan"])
def test_a_bad_bound_is_one_line_naming_the_variable(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    day = tmp_path / "none.jsonl"
    day.write_text("")
    monkeypatch.setenv("DETECTOR_REPLAY_INFLIGHT_MB", value)
    code = main(["replay", str(day), "--alerts-out", str(tmp_path / "a.jsonl"), "--no-models"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"detector: error: invalid setting: DETECTOR_REPLAY_INFLIGHT_MB='{value}':"), (
        lines
    )
