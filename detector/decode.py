"""Batch decoding: raw bytes (JSON Lines, Kafka values) or Parquet frames -> good events + rejects.

Validation is column-wise: polars parses the whole batch against ``RAW_SCHEMA`` in one call, then one
``select`` computes the first failing check of every row (``detector.validate``). Python touches single
records only where the batch's parse fails (the batch is bisected until the unparseable lines are
isolated) or where polars may have read a record more laxly than the contract allows
(``detector.strict_json``): those are re-read strictly one by one, and either rejected with a
field-named reason or validated with the rest. No exception from a reader escapes: a bad record never
takes down its batch. Rejects carry a reason code (a small fixed set, safe as a metric label), the
field, a detail message, the record's position (``file:line`` or ``topic/partition@offset``) and a
structural payload (``detector.deadletter``): never the record's content.
"""

from __future__ import annotations

import io
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from detector.deadletter import summarize
from detector.schema import EVENT_SCHEMA, RAW_SCHEMA, flatten_exprs
from detector.strict_json import BOM, StrictError, exact, refusals, suspects
from detector.validate import REASONS, Reject, validate_flat

__all__ = [
    "MAX_RECORD_BYTES",
    "REASONS",
    "DecodedBatch",
    "Reject",
    "decode_lines",
    "dedupe",
    "empty_events_with_pos",
    "validate_flat",
]

#: Largest accepted record, for Kafka values and file lines alike. Gateways truncate prompts; a
#: multi-megabyte record is a bug or an attack.
MAX_RECORD_BYTES = 1 << 20


@dataclass
class DecodedBatch:
    """Good events in ``EVENT_SCHEMA`` (plus ``_pos``: the record's index in its batch) and rejects."""

    events: pl.DataFrame
    rejects: list[Reject] = field(default_factory=list)
    duplicates: int = 0
    records: int = 0


# --------------------------------------------------------------------------------------------------
# JSON Lines / Kafka values
# --------------------------------------------------------------------------------------------------
def _parse(records: Sequence[bytes]) -> pl.DataFrame | None:
    """Parse records (no newline inside any) with polars; None if the reader refuses the batch.

    The leading newline keeps polars from sniffing compression magic (``x\\x9c``, gzip, zstd) in the
    first record's bytes. Any exception counts as a refusal: the caller bisects.
    """
    try:
        frame = pl.read_ndjson(io.BytesIO(b"\n" + b"\n".join(records)), schema=RAW_SCHEMA)
    except Exception:  # polars, OSError from its decompressors, anything: bisect to the bad records
        return None
    return frame if frame.height == len(records) else None


def _lines(data: bytes) -> tuple[list[bytes], list[int]]:
    """Non-blank lines of a buffer and their 0-based line indexes."""
    keep = [(i, ln) for i, ln in enumerate(data.split(b"\n")) if ln.strip()]
    return [ln for _, ln in keep], [i for i, _ in keep]


def decode_lines(
    lines: Sequence[bytes] | bytes | Path,
    position_of: Callable[[int], str],
    *,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> DecodedBatch:
    """Decode a batch of JSON records.

    ``lines`` is one buffer of newline-separated records (a JSON Lines chunk), a path to a plain JSON
    Lines file, or a sequence of record values (Kafka). ``position_of(i)`` names a record's position for
    rejects: for a buffer ``i`` is the 0-based line index (blank lines count), for a sequence it is the
    value's index. A leading UTF-8 byte order mark is stripped from every record; a record over
    ``max_record_bytes`` is rejected unread.
    """
    if isinstance(lines, Path):
        lines = lines.read_bytes()
    records: Sequence[bytes]
    refused = False
    if isinstance(lines, bytes | bytearray | memoryview):
        done = _decode_buffer(bytes(lines), position_of, max_record_bytes)
        if done is not None:
            return done
        records, orig = _lines(bytes(lines))
    else:  # Kafka values: each is a record, a null or blank one too (rejected below)
        records, orig = list(lines), list(range(len(lines)))
        joined = _one_buffer(records, max_record_bytes)
        if joined is not None:  # the buffer's line i is value i: same positions, rejects and events
            done = _decode_buffer(joined, position_of, max_record_bytes)
            if done is not None:
                return done
            refused = True  # polars refused these very records: the per-record path starts bisecting

    def reject(reason: str, fld: str | None, detail: str, i: int) -> Reject:
        return Reject(reason, fld, detail, position_of(orig[i]), summarize(records[i]), i)

    rejects: list[Reject] = []
    slow: list[int] = []  # read strictly one by one (newline inside a value, a BOM, suspected laxity)
    fast: list[int] = []
    for i, r in enumerate(records):
        if len(r) > max_record_bytes:
            rejects.append(
                reject("oversized", None, f"record of {len(r)} bytes exceeds {max_record_bytes}", i)
            )
        elif not r.strip():
            rejects.append(reject("not_json", None, "empty record (null or blank value)", i))
        elif b"\n" in r or r.startswith(BOM):
            slow.append(i)
        else:
            fast.append(i)

    frames = _bisect(records, fast, slow, reject, rejects, whole_refused=refused)
    frame = pl.concat(frames) if len(frames) > 1 else frames[0] if frames else None
    lines_col = pl.Series([records[i] for i in frame["_pos"]], dtype=pl.Binary) if frame is not None else None
    return _finish(frame, lines_col, records, orig, position_of, reject, rejects, slow)


def _finish(
    frame: pl.DataFrame | None,
    lines_col: pl.Series | None,
    records: Sequence[bytes],
    orig: Sequence[int],
    position_of: Callable[[int], str],
    reject: Callable[[str, str | None, str, int], Reject],
    rejects: list[Reject],
    slow: list[int],
) -> DecodedBatch:
    """Strict re-reading of the suspects and refused records, column-wise validation, de-duplication.

    ``frame``: what polars parsed (``_pos`` + ``RAW_SCHEMA``), ``lines_col`` its records' bytes.
    """
    frames: list[pl.DataFrame] = []
    if frame is not None and lines_col is not None:
        flag = suspects(lines_col.cast(pl.String, strict=False))
        if flag.any():
            slow += frame.filter(flag)["_pos"].to_list()
            frame = frame.filter(~flag)
        frames.append(frame)
    frames += _strict(records, slow, reject, rejects)

    raw_frame = pl.concat(frames) if frames else pl.DataFrame(schema={"_pos": pl.UInt32, **RAW_SCHEMA})
    flat = raw_frame.select(pl.col("_pos"), *flatten_exprs())
    good, more = validate_flat(flat, lambda i: position_of(orig[i]), lambda i: summarize(records[i]))
    rejects += more
    rejects.sort(key=lambda r: r.index)
    good = good.sort("_pos")
    deduped, dups = dedupe(good)
    return DecodedBatch(deduped, rejects, duplicates=dups, records=len(records))


class _Buffer(Sequence[bytes]):
    """The records of a JSON Lines buffer, sliced out on demand (no Python object per line)."""

    def __init__(self, data: bytes, starts: np.ndarray[Any, Any], ends: np.ndarray[Any, Any]) -> None:
        self.data, self.starts, self.ends = data, starts, ends

    def __len__(self) -> int:
        return len(self.starts)

    @overload
    def __getitem__(self, i: int) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[bytes]: ...
    def __getitem__(self, i: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.data[int(self.starts[i]) : int(self.ends[i])]


def _newlines(data: bytes, step: int = 1 << 22) -> np.ndarray[Any, Any]:
    """Offsets of every ``\\n`` in ``data`` (in 4 MiB steps: one big boolean array is 10x slower)."""
    a = np.frombuffer(data, np.uint8)
    buf = np.empty(min(step, len(a)), bool)
    out = [np.empty(0, np.int64)]
    for i in range(0, len(a), step):
        part = a[i : i + step]
        mask = buf[: len(part)]
        np.equal(part, 10, out=mask)
        out.append(np.flatnonzero(mask) + i)
    return np.concatenate(out)


_OPENS = operator.methodcaller("startswith", b"{")


def _one_buffer(values: list[bytes], limit: int) -> bytes | None:
    """Kafka values as one JSON Lines buffer, when each value is one line of it and one the per-record
    path would parse (each starts with ``{``; none is over ``limit`` or holds a newline or a BOM): the
    buffer path then decodes them with no Python work per record, and where polars refuses the buffer
    it refuses the per-record path's first parse too (the same records). None otherwise."""
    if not values or not all(map(_OPENS, values)) or max(map(len, values)) > limit:
        return None
    joined = b"\n".join(values)
    if joined.count(b"\n") != len(values) - 1 or BOM in joined:
        return None
    return joined


def _decode_buffer(data: bytes, position_of: Callable[[int], str], limit: int) -> DecodedBatch | None:
    """The common JSON Lines chunk in one polars parse, with no Python object per line; None when the
    chunk needs the per-record path (a line over ``limit``, a BOM, a blank-looking line polars skips, a
    record polars refuses)."""
    if not data or data.startswith(BOM):
        return None
    nl = _newlines(data)
    starts = np.concatenate(([0], nl + 1)).astype(np.int64)
    ends = np.concatenate((nl, [len(data)])).astype(np.int64)
    lens = ends - starts
    if int(lens.max()) > limit:
        return None
    keep = np.flatnonzero(lens > 0)
    # compression magic is sniffed at the start of the buffer only: a leading newline defeats it
    src = data if data[:1] in (b"{", b" ", b"\t", b"\r", b"\n") else b"\n" + data
    try:
        frame = pl.read_ndjson(io.BytesIO(src), schema=RAW_SCHEMA)
    except Exception:  # any reader error: the per-record path bisects to the bad records
        return None
    if frame.height != len(keep):  # a white-space-only line polars skipped: count lines the slow way
        return None
    offsets = np.append(starts, len(data)).astype(np.int64)
    arrow = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(starts), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    lines_col = pl.Series("line", arrow).gather(pl.Series(keep, dtype=pl.UInt32))
    records = _Buffer(data, starts[keep], ends[keep])
    orig = keep.tolist()

    def reject(reason: str, fld: str | None, detail: str, i: int) -> Reject:
        return Reject(reason, fld, detail, position_of(orig[i]), summarize(records[i]), i)

    frame = frame.with_row_index("_pos")
    return _finish(frame, lines_col, records, orig, position_of, reject, [], [])


def _strict(
    records: Sequence[bytes],
    idx: list[int],
    reject: Callable[[str, str | None, str, int], Reject],
    rejects: list[Reject],
) -> list[pl.DataFrame]:
    """Read ``records[idx]`` strictly (``strict_json.exact``); rejects go to ``rejects``."""
    ok: list[int] = []
    clean: list[bytes] = []
    for i in sorted(idx):
        try:
            clean.append(exact(records[i]))
            ok.append(i)
        except StrictError as exc:
            rejects.append(reject(exc.reason, exc.field, exc.detail, i))
    if not ok:
        return []
    frame = _parse(clean)
    if frame is None:  # exact types, contract fields only: polars reads them; kept as a guard
        rejects += [reject("type_error", None, "record does not fit the event schema", i) for i in ok]
        return []
    return [frame.with_columns(pl.Series("_pos", ok, dtype=pl.UInt32)).select("_pos", *RAW_SCHEMA.keys())]


def dedupe(good: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Keep the first event of each request id (a redelivered request is counted once)."""
    first = good.select(pl.col("request_id").is_first_distinct()).to_series()
    if first.all():
        return good, 0
    kept = good.filter(first)
    return kept, good.height - kept.height


#: Below this many records a refused slice is read strictly record by record instead of bisected.
_BISECT_LEAF = 32


def _bisect(
    records: Sequence[bytes],
    idx: list[int],
    slow: list[int],
    reject: Callable[[str, str | None, str, int], Reject],
    rejects: list[Reject],
    *,
    whole_refused: bool = False,
) -> list[pl.DataFrame]:
    """Parse ``records[idx]`` with polars, isolating the records it refuses (O(bad * log n) parses).
    ``whole_refused``: polars already refused ``records[idx]`` as a whole (not parsed again).

    When the whole batch is refused, records that are not JSON objects at all (orjson refuses them: a
    truncated or binary record) are rejected first, so that a flood of them costs one C parse each
    rather than a bisection, and records with a typed key holding another JSON type (``"status": "x"``,
    ``strict_json.refusals``) go to ``slow`` at once. Refused records go to ``slow``.
    """
    frames: list[pl.DataFrame] = []
    stack = [idx] if idx else []
    first = True
    while stack:
        part = stack.pop()
        raw = None if first and whole_refused else _parse([records[i] for i in part])
        if raw is not None:
            frames.append(
                raw.with_columns(pl.Series("_pos", part, dtype=pl.UInt32)).select("_pos", *RAW_SCHEMA.keys())
            )
            continue
        if first:
            first = False
            part = _triage(records, part, reject, rejects)
            if part:  # a typed key holding another JSON type: read strictly now, not bisected out
                refused = refusals(pl.Series([records[i] for i in part], dtype=pl.Binary).cast(pl.String))
                if refused.any():
                    slow += [i for i, r in zip(part, refused, strict=True) if r]
                    part = [i for i, r in zip(part, refused, strict=True) if not r]
            stack.append(part)
            continue
        if len(part) <= _BISECT_LEAF:
            slow += part
        else:
            mid = len(part) // 2
            stack += [part[mid:], part[:mid]]
    return frames


def _triage(
    records: Sequence[bytes],
    idx: list[int],
    reject: Callable[[str, str | None, str, int], Reject],
    rejects: list[Reject],
) -> list[int]:
    """Reject the records that are not JSON (``not_json``) or not an object; return the others."""
    keep: list[int] = []
    for i in idx:
        try:
            obj = orjson.loads(records[i])
        except orjson.JSONDecodeError:
            rejects.append(reject("not_json", None, "not valid JSON", i))
            continue
        if isinstance(obj, dict):
            keep.append(i)
        else:
            rejects.append(reject("not_object", None, f"expected a JSON object, got {type(obj).__name__}", i))
    return keep


def empty_events_with_pos() -> pl.DataFrame:
    """A zero-row decoded batch (``EVENT_SCHEMA`` plus ``_pos``)."""
    return pl.DataFrame(schema={**EVENT_SCHEMA, "_pos": pl.UInt32})
