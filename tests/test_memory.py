"""The engine hands Arrow's unused pages back after every pass over closed ticks, and only then
(``detector.memory``, ``EngineSettings.release_memory``; docs/benchmarks.md, "Round 20")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyarrow as pa
import pytest

from detector.app import build_engine
from detector.memory import after_pass
from detector.settings import EngineSettings


class _CountingPool:
    """Stands in for Arrow's default pool: counts the engine's requests."""

    def __init__(self) -> None:
        self.releases = 0

    def release_unused(self) -> None:
        self.releases += 1


def _feed_by_hour(release: bool, day: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, int]]:
    """Feed three hours of ``day`` an hour at a time; per call: did a tick close, and releases made."""
    pool = _CountingPool()
    monkeypatch.setattr(pa, "default_memory_pool", lambda: pool)
    engine = build_engine(models=False, settings=EngineSettings(release_memory=release))
    start = day["ts"].min()
    calls: list[tuple[bool, int]] = []
    for h in range(3):
        lo, hi = start + timedelta(hours=h), start + timedelta(hours=h + 1)
        chunk = day.filter((day["ts"] >= lo) & (day["ts"] < hi))
        closed, before = engine.closed_through, pool.releases
        engine.process(chunk)
        calls.append((engine.closed_through != closed, pool.releases - before))
    before = pool.releases
    engine.flush()
    calls.append((True, pool.releases - before))
    return calls


def test_every_pass_releases_and_only_a_pass(decoded_day: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _feed_by_hour(True, decoded_day, monkeypatch)
    assert sum(closed for closed, _ in calls) >= 3  # hours 2 and 3 close ticks, and the flush
    for closed, releases in calls:
        # a call that closed ticks made at least one pass (more where accounts lapse in between)
        assert (releases >= 1) if closed else (releases == 0)


def test_the_setting_turns_it_off(decoded_day: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _feed_by_hour(False, decoded_day, monkeypatch)
    assert any(closed for closed, _ in calls)
    assert all(releases == 0 for _, releases in calls)


def test_a_process_without_arrow_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.delitem(sys.modules, "pyarrow")
    assert after_pass(True) is False
    assert "pyarrow" not in sys.modules  # not imported just to be asked


def test_allocator_options_before_polars(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from detector.memory import JEMALLOC_VARIABLE, allocator_env
    from detector.settings import AllocatorSettings

    monkeypatch.delenv("DETECTOR_JEMALLOC_CONF", raising=False)
    monkeypatch.delitem(sys.modules, "polars", raising=False)  # as at the command line's start
    default = AllocatorSettings().jemalloc_conf
    assert "muzzy_decay_ms:0" in default
    env: dict[str, str] = {}
    assert allocator_env(env) == default and env == {JEMALLOC_VARIABLE: default}
    operator = {JEMALLOC_VARIABLE: "dirty_decay_ms:2000"}
    assert allocator_env(operator) is None and operator == {JEMALLOC_VARIABLE: "dirty_decay_ms:2000"}
    monkeypatch.setenv("DETECTOR_JEMALLOC_CONF", "dirty_decay_ms:50")
    env = {}
    assert allocator_env(env) == "dirty_decay_ms:50" and env[JEMALLOC_VARIABLE] == "dirty_decay_ms:50"
    monkeypatch.setenv("DETECTOR_JEMALLOC_CONF", "")  # empty: polars' own options alone
    env = {}
    assert allocator_env(env) is None and env == {}


def test_allocator_options_too_late_once_polars_is_loaded() -> None:
    import polars  # noqa: F401 (its allocator starts here)

    from detector.memory import allocator_env

    env: dict[str, str] = {}
    assert allocator_env(env) is None and env == {}


def test_the_variable_is_known() -> None:
    from detector.cli.errors import unknown_variables

    assert unknown_variables(["DETECTOR_JEMALLOC_CONF"]) == []
