"""Round 18 review: hostile bytes against the contexts' reader (``window/framing.read_ipc``).

Each case is an Arrow IPC stream a writer on the contexts topic can hand the account stage (without the
key anyone can, docs/runtime.md), made from one ``to_bytes`` writes by patching its flatbuffer metadata in
place (same length, so every other offset still holds): what a fuzzer or an attacker sends.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa
import pytest

from detector.window.context import KINDS, PopulationContext
from detector.window.framing import KIND, MAX_BATCHES, Budget, OverBudget, decoded_limit

T0 = datetime(2026, 3, 1, tzinfo=UTC)
_HEADER = struct.Struct(">4sBqH")  # as ``window/context.py`` writes it
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _stream(frame: pl.DataFrame) -> bytearray:
    out = io.BytesIO()
    frame.write_ipc_stream(out, compression="zstd")
    return bytearray(out.getvalue())


def _metadata(raw: bytearray, index: int) -> tuple[bytes, int]:
    """The flatbuffer metadata of message ``index`` of ``raw`` and where it starts in ``raw``."""
    reader = pa.ipc.MessageReader.open_stream(pa.BufferReader(bytes(raw)))
    for _ in range(index):
        reader.read_next_message()
    meta = reader.read_next_message().metadata.to_pybytes()
    return meta, raw.find(meta)


def _deref(meta: bytes, at: int) -> int:
    """Where the unsigned offset at ``at`` points (a flatbuffer table or vector)."""
    return at + int(struct.unpack_from("<I", meta, at)[0])


def _slot(meta: bytes, table: int, index: int) -> tuple[int, int]:
    """(where field ``index`` of the table at ``table`` is, where its vtable entry is); the field must be
    present (the writer wrote it)."""
    vtable = table - int(struct.unpack_from("<i", meta, table)[0])
    entry = vtable + 4 + 2 * index
    off = int(struct.unpack_from("<H", meta, entry)[0])
    assert off, f"field {index} absent: the writer's layout changed"
    return table + off, entry


def _record(payloads: dict[str, bytes]) -> bytes:
    """A version 4 context whose kinds are ``payloads`` (Arrow IPC streams), the rest empty as written."""
    out = io.BytesIO()
    out.write(_HEADER.pack(b"DPCX", 4, (T0 - _EPOCH) // timedelta(microseconds=1), len(KINDS)))
    for name, schema in KINDS.items():
        payload = payloads.get(name) or bytes(_stream(pl.DataFrame(schema=schema)))
        out.write(KIND.pack(len(name.encode()), len(payload)))
        out.write(name.encode())
        out.write(payload)
    return out.getvalue()


_READ = """
import sys
from detector.window.context import PopulationContext
try:
    PopulationContext.from_bytes(sys.stdin.buffer.read())
except ValueError as exc:
    print(type(exc).__name__, exc)
else:
    print("read")
"""


def _read_apart(data: bytes) -> tuple[int, str]:
    """``from_bytes(data)`` in an interpreter of its own (a crash ends that one, not the test run): its
    exit status and what it printed (stderr too)."""
    done = subprocess.run([sys.executable, "-c", _READ], input=data, capture_output=True, timeout=120)
    return done.returncode, (done.stdout + done.stderr[-2000:]).decode(errors="replace")


def test_a_first_message_of_no_known_kind_is_refused_not_read_as_a_schema() -> None:
    """Found by fuzzing a context's bytes: a stream whose first message's header is of a kind Arrow does
    not know (``header_type`` 32). flatbuffers' verifier leaves a union of an unknown kind unverified,
    and ``pa.ipc.read_schema`` reads any message as a schema, so the header's offsets were followed as
    they came: here its fields vector far past the bytes, and the process died of a segmentation fault
    (the reader before round 18, ``open_stream``, refused a first message that is no schema)."""
    raw = _stream(pl.DataFrame(schema=KINDS["rooms"]))
    meta, base = _metadata(raw, 0)
    root = _deref(meta, 0)
    raw[base + _slot(meta, root, 1)[0]] = 32  # Message.header_type: no kind Arrow knows
    schema = _deref(meta, _slot(meta, root, 2)[0])
    struct.pack_into("<I", raw, base + _slot(meta, schema, 1)[0], 0x7FFFFF00)  # Schema.fields: far off
    status, said = _read_apart(_record({"rooms": bytes(raw)}))
    assert status == 0, f"the reader's process ended ({status}): {said}"
    assert said.startswith("ValueError population context: kind 'rooms'"), said


#: ``MetadataVersion`` V4 in Arrow's Schema.fbs (V5, what every writer now writes, is 4).
_V4 = 3


def _experimental_zstd(rows: int) -> bytes:
    """``sheets`` of ``rows`` copies of one row (its id short enough to be held inline: every view the
    same), compressed with zstd the way Arrow 0.17 wrote it: a V4 message whose compression is named in
    its custom metadata (``ARROW:experimental_compression``), not in the record batch's ``compression``
    field. Arrow still reads it so (``GetCompressionExperimental``): every buffer is decompressed into its
    leading length's bytes."""
    frame = pl.DataFrame({"text_fp": [7] * rows, "account_id": ["acct-1"] * rows})
    empty = bytes(_stream(pl.DataFrame(schema=KINDS["sheets"])))
    schema = pa.ipc.open_stream(pa.BufferReader(empty)).schema
    batch = pa.Table.from_batches(frame.to_arrow().cast(schema).to_batches()).combine_chunks().to_batches()
    out = io.BytesIO()
    with pa.ipc.new_stream(out, schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        (one,) = batch
        writer.write_batch(one, custom_metadata={"ARROW:experimental_compression": "zstd"})
    raw = bytearray(out.getvalue())
    meta, base = _metadata(raw, 1)
    root = _deref(meta, 0)
    struct.pack_into("<H", raw, base + _slot(meta, root, 0)[0], _V4)  # Message.version
    header = _deref(meta, _slot(meta, root, 2)[0])
    struct.pack_into("<H", raw, base + _slot(meta, header, 3)[1], 0)  # RecordBatch.compression: absent
    return bytes(raw)


def test_a_bomb_compressed_the_pre_v5_way_is_charged_what_it_decodes_to() -> None:
    """A compressed bomb whose compression is named the way Arrow 0.17 named it (custom metadata of a V4
    message, no ``compression`` field): pyarrow decompresses it all the same, and the budget must charge
    each buffer its decoded length, not its bytes on the wire, or the bomb passes ``decoded_limit``."""
    record = _record({"sheets": _experimental_zstd(1_000_000)})
    measured = Budget(1 << 40, "test")
    pool = pa.default_memory_pool()
    before = pool.total_bytes_allocated()
    read = PopulationContext.from_bytes(record, measured)  # the control: pyarrow really decompresses it
    allocated = pool.total_bytes_allocated() - before
    assert read.sheets.height == 1_000_000 and allocated > 40 * len(record)
    assert measured.used >= allocated * 0.9, (measured.used, allocated)
    before = pool.total_bytes_allocated()
    with pytest.raises(OverBudget, match=f"decodes to over {decoded_limit(len(record))} bytes"):
        PopulationContext.from_bytes(record)
    assert pool.total_bytes_allocated() - before < 64 << 10  # refused with nothing decompressed


def _empty_batches(n: int) -> bytes:
    """A ``sheets`` stream of ``n`` empty record batches (each tiny on the wire, each held in full)."""
    written = bytes(_stream(pl.DataFrame(schema=KINDS["sheets"])))  # the schema as ``to_bytes`` writes it
    schema = pa.ipc.open_stream(pa.BufferReader(written)).schema
    out = pa.BufferOutputStream()
    with pa.ipc.new_stream(out, schema) as writer:
        empty = pa.RecordBatch.from_pylist([], schema=schema)
        for _ in range(n):
            writer.write_batch(empty)
    return out.getvalue().to_pybytes()


def test_a_flood_of_empty_batches_is_refused_before_it_is_held() -> None:
    """Round 18 review: empty batches are charged ``BATCH_OVERHEAD`` each but cost more to hold (a 64 MB
    record of them held 383 MB): past ``MAX_BATCHES`` a frame is refused as it is read, and a frame of a
    few batches (a frame of several chunks) still reads."""
    flood = _record({"sheets": _empty_batches(MAX_BATCHES + 1)})
    with pytest.raises(ValueError, match="kind 'sheets' unreadable") as refused:
        PopulationContext.from_bytes(flood)
    assert str(refused.value.__cause__) == f"over {MAX_BATCHES} batches"
    few = PopulationContext.from_bytes(_record({"sheets": _empty_batches(8)}))
    assert few.sheets.height == 0 and few.sheets.schema == KINDS["sheets"]


def test_a_context_carries_the_version_3_kinds_together() -> None:
    """Round 18 review: ``to_bytes`` chose the version from ``new_seats`` alone, so a context with one of
    the two version 3 kinds and not the other raised an AttributeError or dropped a kind silently."""
    empty = {name: pl.DataFrame(schema=schema) for name, schema in KINDS.items()}
    for missing in ("new_seats", "routers"):
        ctx = PopulationContext(T0, **{**empty, missing: None})
        with pytest.raises(ValueError, match="carried together"):
            ctx.to_bytes()
    # round 21: the version 4 kind comes only with the version 3 kinds
    with pytest.raises(ValueError, match="only with new_seats and routers"):
        PopulationContext(T0, **{**empty, "new_seats": None, "routers": None}).to_bytes()
    both = PopulationContext(T0, **{**empty, "new_seats": None, "routers": None, "aged_slots": None})
    assert PopulationContext.from_bytes(both.to_bytes()).routers is None
