"""The soak benchmark's verdict (``benchmarks/soak.py``): the RSS slope over the second half and the
table rows at start, middle and end. Its first version counted the broker's memory as the daemon's
and reported a leak that was not there."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak", ROOT / "benchmarks" / "soak.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module
    spec.loader.exec_module(module)
    return module


def _samples(daemon_mb: Any, broker_mb_per_s: float, restart_at: int = 300) -> list[dict[str, Any]]:
    """A sample every 10 s for 600 s: the daemon's RSS from ``daemon_mb(t)``, a broker growing at
    ``broker_mb_per_s`` (emptied at the restart), the seen table filling in the first minute."""
    out = []
    for t in range(0, 610, 10):
        broker = 100 + broker_mb_per_s * (t if t <= restart_at else t - restart_at)
        seen = min(t, 60) * 2_400
        out.append(
            {
                "t_s": t,
                "daemon_rss_mb": daemon_mb(t),
                "worker_rss_mb": 280,
                "broker_rss_mb": broker,
                "read": t * 2_400,
                "rows": {"seen": seen, "buckets": 5_800 + (4_000 if t % 30 == 0 else 0)} if t else {},
            }
        )
    return out


def test_a_sawing_daemon_is_flat_and_the_broker_is_reported_apart(soak: ModuleType) -> None:
    samples = _samples(lambda t: 850 + (50 if t % 20 == 0 else -50), broker_mb_per_s=4.7)
    v = soak.verdict(samples, 300, 600)
    assert v["flat"] is True
    assert abs(v["daemon_mb_per_min"]) <= 2.0  # the saw's +-50 MB over 30 samples
    assert v["broker_mb_per_min"] == pytest.approx(4.7 * 60, rel=0.01)
    assert v["rows"]["start"]["seen"] == 24_000  # the first sample with records (t = 10 s)
    assert v["rows"]["middle"]["seen"] == 144_000  # the last before the restart
    line = soak.verdict_line(v)
    assert line.startswith("verdict: daemon RSS FLAT") and "seen 24000/144000/144000" in line


def test_the_broker_counted_as_the_daemon_is_growing(soak: ModuleType) -> None:
    """The first harness's sum: the daemon plus the broker's memory storage."""
    flat = _samples(lambda t: 850, broker_mb_per_s=4.7)
    summed = [{**s, "daemon_rss_mb": s["daemon_rss_mb"] + s["broker_rss_mb"]} for s in flat]
    v = soak.verdict(summed, 300, 600)
    assert v["flat"] is False
    assert v["daemon_mb_per_min"] == pytest.approx(4.7 * 60, rel=0.01)
    assert soak.verdict_line(v).startswith("verdict: daemon RSS GROWING")


def test_slope_needs_three_points(soak: ModuleType) -> None:
    assert soak.slope_mb_per_min([(0, 1.0), (60, 2.0)]) is None
    assert soak.slope_mb_per_min([(0, 1.0), (60, 2.0), (120, 3.0)]) == pytest.approx(1.0)
