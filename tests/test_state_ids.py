"""The de-duplication table keeps request ids as 64-bit hashes: the hash is exact (a reference
implementation agrees), de-duplication stays exact, and checkpoints old and new restore."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from detector.window.ids import id_hashes
from detector.window.state import WindowState
from detector.window.tables import SEEN_SCHEMA

_MASK = (1 << 64) - 1
T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _reference(text: str) -> int:
    """FNV-1a 64 over the UTF-8 bytes, then splitmix64's finaliser, one byte at a time."""
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & _MASK
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & _MASK
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & _MASK
    return h ^ (h >> 31)


def test_the_column_hash_is_the_reference_hash_for_any_lengths_and_characters() -> None:
    cases = [
        ["req_382d2f0936d20f02", "req_0b9221b70df50eec"],  # one length (the matrix path)
        ["req_1", "a", "", "x" * 128, "req_10"],  # several lengths (padded)
        ["über-ñ", "ab", "日本"],  # multi-byte characters pad unevenly (gathered)
        ["a\0", "a"],  # a NUL byte is not the padding
    ]
    for ids in cases:
        assert id_hashes(pl.Series(ids)).to_list() == [_reference(x) for x in ids]
    # a slice of a column of two chunks reads the right bytes
    col = pl.concat([pl.Series(["q", "rr"]), pl.Series(["abc", "de"])], rechunk=False).slice(1, 3)
    assert id_hashes(col).to_list() == [_reference(x) for x in ("rr", "abc", "de")]
    assert id_hashes(pl.Series([f"req_{i}" for i in range(100_000)])).n_unique() == 100_000


def test_hashing_ids_loads_no_arrow_compute_module() -> None:
    """The bytes come from polars' own binary export: hashing does not load ``pyarrow.compute`` (0.2 s
    of CPU, once per process, that a replay of a dense hour spent for this cast alone, issue 13)."""
    code = (
        "import sys, polars as pl\n"
        "from detector.window.ids import id_hashes\n"
        "id_hashes(pl.Series(['req_1', 'a', '', 'über']))\n"
        "print('pyarrow.compute' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _events(ids: list[str], start: int = 0) -> pl.DataFrame:
    ts = [T0 + timedelta(seconds=start + i) for i in range(len(ids))]
    tick = [t.replace(minute=0, second=0) + timedelta(minutes=15) for t in ts]  # all in 00:00-00:15
    return pl.DataFrame({"request_id": ids, "ts": ts, "account_id": ["a"] * len(ids), "_tick": tick})


def test_drop_seen_stays_exact_across_batches_and_within_one() -> None:
    st = WindowState()
    fresh, dup = st.drop_seen(_events(["r1", "r2", "r2", "r3"]))
    assert (fresh["request_id"].to_list(), dup) == (["r1", "r2", "r3"], 1)
    assert fresh.columns == ["request_id", "ts", "account_id", "_tick"]
    fresh, dup = st.drop_seen(_events(["r3", "r4", "r1", "r10"], start=10))
    assert (fresh["request_id"].to_list(), dup) == (["r4", "r10"], 2)
    assert st.seen.schema == SEEN_SCHEMA  # one list of hashes per tick and call, no time per id
    assert st.seen["tick"].to_list() == [T0 + timedelta(minutes=15)] * 2
    assert st.seen_hashes().to_list() == id_hashes(pl.Series(["r1", "r2", "r3", "r4", "r10"])).to_list()
    # a re-read event before the closed tick is dropped; a new late one is kept
    batch, dropped = st.drop_counted(_events(["r2", "r99"], start=1), T0 + timedelta(hours=1))
    assert (batch["request_id"].to_list(), dropped) == (["r99"], 1)


def test_seen_hashes_survive_a_checkpoint_and_an_old_checkpoint_of_strings_restores(tmp_path: Path) -> None:
    st = WindowState()
    st.drop_seen(_events(["r1", "r2"]))
    st.save(tmp_path / "new")
    back = WindowState.load(tmp_path / "new")
    assert back.seen.equals(st.seen)
    # a checkpoint written when the table held the ids themselves
    old = tmp_path / "old"
    old.mkdir()
    pl.DataFrame({"request_id": ["r1", "r2"], "ts": [T0, T0]}).write_parquet(old / "seen.parquet")
    restored = WindowState.load(old)
    assert restored.seen.schema == SEEN_SCHEMA
    fresh, dup = restored.drop_seen(_events(["r2", "r3"], start=5))
    assert (fresh["request_id"].to_list(), dup) == (["r3"], 1)
