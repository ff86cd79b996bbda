"""Issue 17, round 22: the sample tables mark each sample's hash space, and state from before the mark
reads as texts.

The sheet and opener rows keep ``simhash`` (their sampled ``text_fp`` is the gateway's SimHash; events
through the real enrichment); a checkpoint written before the column loads with every sample a text, as
``main`` read it; an account summary of version 1 (an account stage not yet upgraded) reads as texts, a
version 2 one keeps the marks, and an older reader refuses a version 2 record by its version. New in
round 22: on ``main`` these fail (no ``window/hashspace.py``).
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from test_opener_hash_space import T0, _events

from detector.window.compact import assign
from detector.window.framing import write_frames
from detector.window.hashspace import SIMHASH
from detector.window.openers import OPENER_STORE, merge_openers, opener_rows
from detector.window.sheets import SHEET_STORE, merge_sheets, sheet_rows
from detector.window.state import WindowState
from detector.window.summary import _EPOCH, _HEADER, KINDS, AccountSummary, _to_wire


def _state_with_samples() -> WindowState:
    """A state whose sheet and opener tables hold a texted and a SimHash-only member's samples."""
    ev = _events({1}, course=True, members=2)
    st_ = WindowState()
    st_.ids, codes = assign(st_.ids, ev["account_id"])
    st_.sheets, st_.openers = merge_sheets(sheet_rows(ev, codes)), merge_openers(opener_rows(ev, codes))
    return st_


def test_the_tables_mark_each_sample_by_its_space_and_an_older_checkpoint_loads_as_texts(
    tmp_path: Path,
) -> None:
    st_ = _state_with_samples()
    for table in (st_.sheets, st_.openers):  # the texted member's samples: texts; the other's: SimHashes
        marks = table.group_by("account_code").agg(
            pl.col(SIMHASH).all().alias("all"), pl.col(SIMHASH).any().alias("any")
        )
        assert sorted(marks.rows()) == [(0, False, False), (1, True, True)]
    st_.save(tmp_path)
    back = WindowState.load(tmp_path)
    assert_frame_equal(back.sheets, st_.sheets) and assert_frame_equal(back.openers, st_.openers)
    for name in ("sheets", "openers"):  # a checkpoint written before round 22: the tables as main keeps them
        pl.read_parquet(tmp_path / f"{name}.parquet").drop(SIMHASH).write_parquet(
            tmp_path / f"{name}.parquet"
        )
    old = WindowState.load(tmp_path)
    assert old.sheets.schema == SHEET_STORE and old.openers.schema == OPENER_STORE
    assert not old.sheets[SIMHASH].any() and not old.openers[SIMHASH].any()  # read as texts, as main did
    assert_frame_equal(old.sheets.drop(SIMHASH), st_.sheets.drop(SIMHASH))


def _summary(st_: WindowState) -> AccountSummary:
    sheets, openers = st_.sheet_rows(), st_.opener_rows()
    kinds = {n: pl.DataFrame(schema=s) for n, s in KINDS.items()} | {"sheets": sheets, "openers": openers}
    return AccountSummary(T0, T0, **kinds)


def test_an_account_summary_from_before_round_22_reads_as_texts_and_one_after_keeps_its_spaces() -> None:
    """A cluster stage reads both versions (a rolling upgrade): a version 1 record, written before the
    samples said their space, reads as texts, as that build's own state read them; a version 2 record keeps
    the SimHash mark. An older reader refuses a version 2 record (it checks the version)."""
    s = _summary(_state_with_samples())
    assert s.to_bytes()[4] == 2
    new = AccountSummary.from_bytes(s.to_bytes())
    assert_frame_equal(new.openers, s.openers)
    assert new.openers[SIMHASH].any()
    out = io.BytesIO()  # the same record as a version 1 build wrote it: no SIMHASH column
    out.write(_HEADER.pack(b"DASM", 1, 0, 0, len(KINDS)))
    frames = {n: _to_wire(f.drop(SIMHASH) if SIMHASH in f.columns else f) for n, f in s.frames().items()}
    write_frames(out, frames.items())
    old = AccountSummary.from_bytes(out.getvalue())
    assert old.tick_end == _EPOCH and not old.sheets[SIMHASH].any() and not old.openers[SIMHASH].any()
    assert_frame_equal(old.openers.drop(SIMHASH), s.openers.drop(SIMHASH))
    with pytest.raises(ValueError, match="kind"):  # version 2 kinds under a version 1 header: refused
        AccountSummary.from_bytes(s.to_bytes()[:4] + b"\x01" + s.to_bytes()[5:])
