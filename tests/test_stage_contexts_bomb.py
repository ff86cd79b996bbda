"""A compressed bomb on the contexts topic, the account stage's start without the key, and key rotation.

A context is a few Arrow IPC streams compressed with zstd: a small record of identical rows decodes to
fifty times its bytes and more. ``PopulationContext.from_bytes`` charges each batch what its metadata says
it decodes to before decoding any (``framing.read_ipc``), so such a record is set aside with nothing of
it decompressed. ``DETECTOR_STREAM_CONTEXTS_KEY_PREVIOUS`` is accepted when reading (never signs), so a
new key rolls through the stages one by one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import polars as pl
import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry
from test_stage_contexts import PROMPT, T0, TOPIC, _context, _rejected
from test_stage_contexts_guard import OTHER, SECRET, Record, SignedConsumer, _reader, _signed

from detector.errors import ConfigError
from detector.io.sinks import DeadLetter
from detector.runtime.stream.contexts import ContextTimeout, context_key
from detector.runtime.stream.contextsign import PREVIOUS, VARIABLE, ContextKey, context_key_of
from detector.runtime.stream.settings import StreamSettings
from detector.runtime.stream.stages import Stage
from detector.window.context import KINDS, PopulationContext
from detector.window.framing import MIN_DECODED_BYTES, Budget, OverBudget, decoded_limit

ROWS = 1_000_000


def _bomb(rows: int = ROWS) -> bytes:
    """A well-formed context whose sheets are ``rows`` copies of one row: small on the wire."""
    sheets = pl.DataFrame(
        {"text_fp": [7] * rows, "account_id": ["acct-0000000000001"] * rows}, schema=KINDS["sheets"]
    )
    empty = {n: pl.DataFrame(schema=KINDS[n]) for n in ("rooms", "teams", "models")}
    return PopulationContext(T0, sheets=sheets, **empty).to_bytes()


BOMB = _bomb()


def _arrow_allocated() -> int:
    """Bytes pyarrow has allocated since the process started (every decompressed buffer is one)."""
    return int(pa.default_memory_pool().total_bytes_allocated())


def test_a_compressed_bomb_is_refused_before_any_of_it_is_decoded() -> None:
    measured = Budget(1 << 40, "test")
    before = _arrow_allocated()
    read = PopulationContext.from_bytes(BOMB, measured)  # the control: read in full, the memory shows
    assert read.sheets.height == ROWS and _arrow_allocated() - before >= measured.used * 0.9
    assert measured.used > MIN_DECODED_BYTES and measured.used > 40 * len(BOMB)  # small on the wire
    limit = decoded_limit(len(BOMB))
    assert limit < measured.used
    before = _arrow_allocated()
    with pytest.raises(OverBudget, match=f"decodes to over {limit} bytes"):
        PopulationContext.from_bytes(BOMB)
    assert _arrow_allocated() - before < 64 << 10  # nothing decompressed: not even the first batch
    # a real context is far under its limit
    assert PopulationContext.from_bytes(_context(T0).to_bytes()).as_of == T0


@pytest.mark.parametrize("bomb_last", [True, False])
def test_the_reader_sets_a_bomb_aside_and_reads_the_real_context(
    bomb_last: bool, caplog: pytest.LogCaptureFixture
) -> None:
    key = context_key("context", T0)
    real = _context(T0).to_bytes()
    records: list[Record] = [(key, real, None), (key, BOMB, None)]
    stage, dead, registry = _reader(records if bomb_last else records[::-1], key=None)
    assert stage.reader is not None
    before = _arrow_allocated()
    with caplog.at_level(logging.WARNING, logger="detector.stream"):
        got = stage.reader.get("context", T0)
    assert got.as_of == T0 and got.sheets.height == 1
    assert _arrow_allocated() - before < 1 << 20
    if not bomb_last:  # the newest copy reads back: the older one is dropped, never decoded
        assert not dead and not _rejected(registry)
        return
    assert _rejected(registry) == {"context_decoded": 1}
    (letter,) = dead
    assert letter.reject.reason == "context_decoded" and letter.key is None
    assert orjson.loads(letter.reject.raw)["bytes"] == len(BOMB)
    assert "decodes to over" in letter.reject.detail
    text = letter.reject.raw + caplog.text.encode()
    assert b"acct-0000000000001" not in text and PROMPT not in text
    assert sum("contexts topic set aside" in r.getMessage() for r in caplog.records) == 1


def test_the_reader_s_budget_bounds_a_context_alone() -> None:
    """A bomb alone on the topic: set aside, the wait runs out (never decoded, never a crash)."""
    stage, dead, registry = _reader([(context_key("context", T0), BOMB, None)], key=None)
    assert stage.reader is not None
    stage.reader.max_decoded = 1 << 20
    with pytest.raises(ContextTimeout):
        stage.reader.get("context", T0)
    assert _rejected(registry) == {"context_decoded": 1} and len(dead) == 1


def test_an_account_stage_without_the_key_warns_once_at_start(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="detector.stream"):
        Stage(StreamSettings(stage="account"), CollectorRegistry())
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and VARIABLE in lines[0] and "unauthenticated" in lines[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="detector.stream"):
        Stage(StreamSettings(stage="account", contexts_key=SECRET), CollectorRegistry())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def _rotated(previous: str | None) -> StreamSettings:
    keys = {"contexts_key": OTHER, "contexts_key_previous": previous}
    return StreamSettings(stage="account", contexts_topic=TOPIC, context_wait_s=0.5, **keys)


def _account(records: list[Record], s: StreamSettings) -> tuple[Stage, list[DeadLetter], CollectorRegistry]:
    registry = CollectorRegistry()
    stage = Stage(s, registry)
    dead: list[DeadLetter] = []
    stage.setup(dead.append, topic_id=lambda topic: "id")
    assert stage.reader is not None
    stage.reader.consumer = SignedConsumer(records)
    return stage, dead, registry


def test_a_record_signed_under_the_previous_key_is_read_until_the_key_is_removed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Rotation from SECRET to OTHER: the cluster stage still signs under SECRET while the account stages
    roll with the new key and the previous one; once the previous key is removed its records are set
    aside. The current key is the one that signs."""
    old = _signed("context", T0, SECRET)
    key = context_key_of(_rotated(SECRET))
    assert key is not None
    assert key.sign(b"k", b"v") == ContextKey(OTHER.encode()).sign(b"k", b"v")
    stage, dead, registry = _account([old], _rotated(SECRET))
    assert stage.reader is not None
    assert stage.reader.get("context", T0).as_of == T0 and not dead and not _rejected(registry)
    stage, dead, registry = _account([old], _rotated(None))  # the previous key removed
    assert stage.reader is not None
    with caplog.at_level(logging.DEBUG), pytest.raises(ContextTimeout, match=VARIABLE):
        stage.reader.get("context", T0)
    assert _rejected(registry) == {"context_signature": 1} and len(dead) == 1
    text = caplog.text + repr(key) + str(_rotated(SECRET).redacted()) + repr(_rotated(SECRET))
    assert SECRET not in text and OTHER not in text


def test_the_previous_key_is_read_from_its_file_checked_and_never_shown(tmp_path: Path) -> None:
    path = tmp_path / "previous.key"
    path.write_text(SECRET + "\n")
    s = StreamSettings(stage="account", contexts_key=OTHER, contexts_key_previous_file=path)
    key = context_key_of(s)
    assert key is not None and key.check(*_signed("context", T0, SECRET)) is None  # type: ignore[arg-type]
    path.write_text("kxq7zz")
    with pytest.raises(ConfigError, match="shorter than 16 bytes") as got:
        Stage(s, CollectorRegistry())
    assert str(got.value).startswith(f"{PREVIOUS}_FILE: ") and "kxq7zz" not in str(got.value)
    with pytest.raises(ConfigError) as got:
        context_key_of(_rotated("tiny secret"))
    assert str(got.value).startswith(f"{PREVIOUS}: ") and "tiny" not in str(got.value)
    with pytest.raises(ConfigError, match="without a key") as got:
        context_key_of(StreamSettings(stage="account", contexts_key_previous=SECRET))
    assert str(got.value).startswith(f"{PREVIOUS}: ") and SECRET not in str(got.value)
    assert context_key_of(_rotated("")) is not None  # empty: unset
