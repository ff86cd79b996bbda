"""Shared test fixtures.

``shared_dir`` is the ``shared/`` folder that sits beside the repository (contracts, example records,
IP-intel data). ``DETECTOR_SHARED`` overrides where it is looked for. Locally a missing folder skips the
tests that need it; in CI (env ``CI`` set) it fails them, so a broken checkout can never pass green.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DEFAULT_SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _shared_path() -> Path:
    override = os.environ.get("DETECTOR_SHARED")
    return Path(override).expanduser().resolve() if override else DEFAULT_SHARED


def _missing(message: str) -> None:
    """Fail in CI, skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared/`` folder beside the repo (or ``$DETECTOR_SHARED``)."""
    path = _shared_path()
    if not path.is_dir():
        _missing(f"shared folder not found at {path} (set DETECTOR_SHARED to point at it)")
    return path


@pytest.fixture(scope="session")
def contracts_dir(shared_dir: Path) -> Path:
    """``shared/contracts``: the JSON Schemas and the good/bad example records."""
    path = shared_dir / "contracts"
    if not (path / "gateway-event.schema.json").is_file():
        _missing(f"contracts not found under {path}")
    return path


@pytest.fixture
def broker() -> Iterator[Any]:
    """A fresh embedded Tansu broker per test (it starts in well under a second), stopped afterwards."""
    import kafka_broker as kb

    yield from kb.broker()


@pytest.fixture(scope="session")
def decoded_day(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One simulated day (seed 9, scale 0.15), decoded as the engine reads it, in (ts, request_id)
    order: the state tests' day (``test_state_compact``, ``test_account_summary``), made once."""
    import polars as pl

    from detector.decode_parquet import decode_frame
    from detector.lab.simulate import simulate

    out = tmp_path_factory.mktemp("decoded-day")
    simulate(out, days=1.0, seed=9, scale=0.15)
    decoded = decode_frame(pl.read_parquet(out / "events.parquet"), lambda i: f"row{i}")
    return decoded.events.drop("_pos").sort("ts", "request_id")
