"""Named polars frames in one byte string, after a record's own header: the wire form the population
context (``context.py``) and the account summary (``summary.py``) share.

Each frame is its name's length and its payload's length (``KIND``), the name, and the frame as an
Arrow IPC stream (zstd). ``read_frames`` checks every length against the bytes it has and names what is
wrong in a ``ValueError`` led by the record's name, so a damaged or foreign record never reads as one.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Collection, Iterable

import polars as pl
import pyarrow as pa

from detector.errors import InputError

#: name length, payload length
KIND = struct.Struct(">HQ")


def write_frames(out: io.BytesIO, frames: Iterable[tuple[str, pl.DataFrame]]) -> None:
    """Append each (name, frame) to ``out``."""
    for name, frame in frames:
        payload = io.BytesIO()
        frame.write_ipc_stream(payload, compression="zstd")
        raw = name.encode()
        out.write(KIND.pack(len(raw), payload.tell()))
        out.write(raw)
        out.write(payload.getvalue())


def read_frames(
    view: memoryview,
    at: int,
    count: int,
    names: Collection[str],
    what: str,
    read: Callable[[str, bytes], pl.DataFrame],
) -> dict[str, pl.DataFrame]:
    """The ``count`` frames from ``view[at:]`` that the header announced: every one of ``names``, each
    once, in any order, nothing after them, each payload read by ``read(name, payload)``; a
    ``ValueError`` led by ``what`` otherwise."""
    frames: dict[str, pl.DataFrame] = {}
    for _ in range(count):
        if len(view) < at + KIND.size:
            raise ValueError(f"{what}: truncated")
        size, length = KIND.unpack_from(view, at)
        at += KIND.size
        name = bytes(view[at : at + size]).decode("utf-8", errors="replace")
        at += size
        if name not in names or name in frames or len(view) < at + length:
            raise ValueError(f"{what}: unexpected or truncated kind {name!r}")
        frames[name] = read(name, bytes(view[at : at + length]))
        at += length
    if at != len(view) or set(frames) != set(names):
        raise ValueError(f"{what}: kinds missing or trailing bytes")
    return frames


#: What a record's frames may decode to together (round 18; ``decoded_limit``): ``DECODED_RATIO`` times
#: its bytes, at least ``MIN_DECODED_BYTES``, at most ``MAX_DECODED_BYTES``. Measured: a ``--scale 1.85``
#: day's contexts decode to at most 100 KB, 4.6 times their bytes (docs/runtime.md, "Signed contexts").
DECODED_RATIO = 32
MIN_DECODED_BYTES = 16 << 20
MAX_DECODED_BYTES = 512 << 20


def decoded_limit(size: int) -> int:
    """The decoded bytes a record of ``size`` bytes may take (a compressed bomb is far past it)."""
    return min(MAX_DECODED_BYTES, max(MIN_DECODED_BYTES, DECODED_RATIO * size))


class OverBudget(InputError, ValueError):
    """A record whose frames decode to more bytes than its reader's budget (read before any is decoded);
    a ``ValueError`` too, as every other unreadable record is."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what}: decodes to over {limit} bytes")
        self.limit = limit


class Budget:
    """The decoded bytes the frames of one record may take together: each batch is charged what its
    metadata says it decodes to (``decoded_size``) before it is decoded, and one past the limit stops
    the record (``OverBudget``) with nothing of that batch allocated."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit, self.used, self.what = limit, 0, what

    def take(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise OverBudget(self.what, self.limit)


def budget_of(data: bytes, max_decoded: int | Budget | None, what: str) -> Budget:
    """The budget a record's reader charges: the one given, ``max_decoded`` bytes, or by default
    ``decoded_limit`` of the record's size."""
    if isinstance(max_decoded, Budget):
        return max_decoded
    return Budget(decoded_limit(len(data)) if max_decoded is None else max_decoded, what)


def read_ipc(raw: bytes, schema: pa.Schema, budget: Budget, what: str) -> pa.Table:
    """One frame's Arrow IPC stream, read by pyarrow message by message: its schema checked against
    ``schema`` before any batch is read, every batch charged to ``budget`` before the first is decoded
    (a compressed stream can decode to a hundred times its bytes and more), the table validated in full.
    A ``ValueError`` led by ``what`` on anything else (pyarrow's errors on damaged bytes included)."""
    try:
        messages = pa.ipc.MessageReader.open_stream(pa.BufferReader(raw))
        first = messages.read_next_message()
        if first.type != "schema":  # pyarrow reads any message as a schema: one of no known kind crashes
            raise ValueError(f"a {first.type} message first")
        got = pa.ipc.read_schema(first)
    except Exception as exc:  # several kinds of ArrowException, and others, on damaged bytes
        raise ValueError(f"{what} unreadable ({type(exc).__name__})") from exc
    if not got.equals(schema):
        raise ValueError(f"{what} has schema {got}")
    try:
        held: list[pa.ipc.Message] = []  # each a view of ``raw``: nothing decoded yet
        for message in messages:
            if len(held) == MAX_BATCHES:  # a flood of empty batches costs more to hold than it is charged
                raise ValueError(f"over {MAX_BATCHES} batches")
            if message.type != "record batch":  # no kind has a dictionary: nothing else is written
                raise ValueError(f"a {message.type} message")
            budget.take(decoded_size(message) + BATCH_OVERHEAD)
            held.append(message)
        batches = [pa.ipc.read_record_batch(message, got) for message in held]
        table = pa.Table.from_batches(batches, schema=got)
        table.validate(full=True)
    except OverBudget:
        raise
    except Exception as exc:
        raise ValueError(f"{what} unreadable ({type(exc).__name__})") from exc
    return table


#: Charged per batch besides its buffers (a flood of empty batches is not free to hold).
BATCH_OVERHEAD = 1024
#: Batches one frame may hold: a frame is written as one batch per chunk of its columns (a few), and each
#: batch held costs about 1.3 KB besides its buffers (round 18's review: 285,714 empty batches in 64 MB
#: were charged 293 MB and held 383 MB).
MAX_BATCHES = 4096
_U8, _U16, _I16, _I32, _U32, _I64 = (struct.Struct(f) for f in ("<B", "<H", "<h", "<i", "<I", "<q"))
_RECORD_BATCH = 3  # ``MessageHeader.RecordBatch`` in Arrow's Message.fbs
_V5 = 4  # ``MetadataVersion.V5`` in Arrow's Schema.fbs


def decoded_size(message: pa.ipc.Message) -> int:
    """The bytes a record batch message decodes to, from its metadata (the flatbuffer ``Message`` whose
    header is a ``RecordBatch``: its ``buffers`` and ``compression``, or a V4 message's custom metadata)
    and, for a compressed body, each buffer's leading 64-bit uncompressed length (what Arrow allocates
    before decompressing into it). Every offset is checked against the bytes; ``ValueError`` on any that
    does not fit."""
    meta = message.metadata.to_pybytes()
    root = _ref(meta, 0)
    if _scalar(meta, root, 1, _U8, 0) != _RECORD_BATCH:  # header_type
        raise ValueError("not a record batch")
    batch = _table_at(meta, root, 2)
    buffers = _table_at(meta, batch, 2, vector=True)
    # compressed: a ``compression`` field, or (Arrow 0.17's form, still read) a V4 message with custom
    # metadata, where Arrow looks for the codec; any such metadata is read as compressed (never less)
    pre_v5 = _scalar(meta, root, 0, _I16, 0) < _V5 and _field(meta, root, 4) is not None
    compressed = _field(meta, batch, 3) is not None or pre_v5
    count = _get(meta, _U32, buffers)
    if buffers + 4 + 16 * count > len(meta):
        raise ValueError("buffers past the metadata")
    body = message.body
    size = 0 if body is None else body.size
    total = 0
    for i in range(count):
        offset = _get(meta, _I64, buffers + 4 + 16 * i)
        length = _get(meta, _I64, buffers + 12 + 16 * i)
        if offset < 0 or length < 0 or offset + length > size:
            raise ValueError("a buffer past the body")
        if not compressed or length == 0:
            total += length
            continue
        if length < 8:
            raise ValueError("a compressed buffer without its length")
        assert body is not None
        decoded = _I64.unpack(body[offset : offset + 8].to_pybytes())[0]
        if decoded < -1:
            raise ValueError("a negative decoded length")
        total += length - 8 if decoded == -1 else decoded  # -1: stored uncompressed
    return total


def _get(buf: bytes, s: struct.Struct, at: int) -> int:
    if at < 0 or at + s.size > len(buf):
        raise ValueError("metadata offset out of range")
    return int(s.unpack_from(buf, at)[0])


def _ref(buf: bytes, at: int) -> int:
    """The position an unsigned offset at ``at`` points to (a flatbuffer table or vector)."""
    return at + _get(buf, _U32, at)


def _field(buf: bytes, table: int, index: int) -> int | None:
    """The position of field ``index`` of the flatbuffer table at ``table``; None when absent."""
    vtable = table - _get(buf, _I32, table)
    slot = 4 + 2 * index
    if slot + 2 > _get(buf, _U16, vtable):
        return None
    off = _get(buf, _U16, vtable + slot)
    return table + off if off else None


def _scalar(buf: bytes, table: int, index: int, s: struct.Struct, default: int) -> int:
    at = _field(buf, table, index)
    return default if at is None else _get(buf, s, at)


def _table_at(buf: bytes, table: int, index: int, vector: bool = False) -> int:
    at = _field(buf, table, index)
    if at is None:
        raise ValueError("a record batch without its " + ("buffers" if vector else "header"))
    return _ref(buf, at)
