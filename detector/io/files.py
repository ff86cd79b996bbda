"""File sources: JSON Lines (plain or gzip) and Parquet, read in chunks and decoded batch-wise.

A file that cannot be read (a truncated gzip, a ``.gz`` that is not gzip, a truncated or damaged
Parquet file) never stops the caller: what was read before the fault is kept, and the rest of the file
becomes one ``unreadable`` reject. A JSON Lines line over ``MAX_RECORD_BYTES`` is rejected as
``oversized`` without being held in memory whole (an unterminated 50 MB line costs a hash, not a parse).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow.parquet as pq

from detector.decode import (
    MAX_RECORD_BYTES,
    DecodedBatch,
    Reject,
    decode_lines,
    empty_events_with_pos,
)
from detector.decode_parquet import decode_frame

#: Bytes per JSON Lines chunk (~200k events of 1.3 KB). A plain file up to this size is handed to polars
#: by path (memory-mapped, parallel parse: the fastest read); bigger or gzipped files go in chunks.
CHUNK_BYTES = 256 << 20
PARQUET_ROWS = 200_000


@dataclass(frozen=True)
class Chunk:
    """One decoded chunk and where it came from (for progress reporting)."""

    path: Path
    batch: DecodedBatch
    bytes_read: int


def _open(path: Path) -> BinaryIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _unreadable(path: Path, exc: BaseException, where: str) -> Chunk:
    """The rest of a file that could not be read, as one reject (the reader's message is not kept: it
    may quote the file's bytes)."""
    detail = f"file could not be read {where} ({type(exc).__name__}); the rest of it was skipped"
    payload = f'{{"file": true, "error": "{type(exc).__name__}"}}'.encode()
    batch = DecodedBatch(
        empty_events_with_pos(), [Reject("unreadable", None, detail, str(path), payload)], records=1
    )
    return Chunk(path, batch, 0)


def _guarded(path: Path, chunks: Iterator[Chunk], where: Callable[[], str]) -> Iterator[Chunk]:
    """``chunks``, with any reader error turned into a final ``unreadable`` chunk."""
    try:
        yield from chunks
    except Exception as exc:  # gzip (EOFError, BadGzipFile, zlib.error), OSError, Arrow, polars: any
        yield _unreadable(path, exc, where())


def iter_jsonl(
    path: Path, chunk_bytes: int = CHUNK_BYTES, max_record_bytes: int = MAX_RECORD_BYTES
) -> Iterator[Chunk]:
    """Decode a JSON Lines file (``.jsonl`` / ``.json`` / ``.gz``) chunk by chunk, keeping line numbers."""
    state = {"line": 0}
    return _guarded(
        path, _jsonl(path, chunk_bytes, max_record_bytes, state), lambda: f"after line {state['line']}"
    )


def _jsonl(path: Path, chunk_bytes: int, max_record_bytes: int, state: dict[str, int]) -> Iterator[Chunk]:
    name = str(path)
    if path.suffix != ".gz" and path.stat().st_size <= chunk_bytes:
        yield Chunk(
            path,
            decode_lines(path, lambda i: f"{name}:{i + 1}", max_record_bytes=max_record_bytes),
            path.stat().st_size,
        )
        return
    line_base = 0
    tail = b""
    long_line: tuple[int, hashlib._Hash] | None = None  # an over-long line being skipped: bytes, hash
    with _open(path) as fh:
        while True:
            block, error = _read_block(fh, chunk_bytes)
            if not block:
                if error is not None:
                    raise error
                break
            if long_line is not None:  # skip the rest of an over-long line
                end = block.find(b"\n")
                long_line[1].update(block if end < 0 else block[:end])
                long_line = (long_line[0] + (len(block) if end < 0 else end), long_line[1])
                if end < 0:
                    continue
                yield Chunk(path, _oversized(name, line_base, *long_line, max_record_bytes), 0)
                line_base += 1
                long_line, block = None, block[end + 1 :]
            data = tail + block
            cut = data.rfind(b"\n")
            if cut < 0:
                tail = data
                if len(tail) > max_record_bytes:
                    h = hashlib.sha256(tail)
                    long_line, tail = (len(tail), h), b""
                continue
            body, tail = data[: cut + 1], data[cut + 1 :]
            yield Chunk(path, _decode_block(body, path, line_base, max_record_bytes), len(block))
            line_base += body.count(b"\n")
            state["line"] = line_base
            if error is not None:  # what was read before the fault is decoded; the rest is one reject
                raise error
        if long_line is not None:
            yield Chunk(path, _oversized(name, line_base, *long_line, max_record_bytes), 0)
        elif tail.strip():
            yield Chunk(path, _decode_block(tail, path, line_base, max_record_bytes), 0)


def _read_block(fh: BinaryIO, size: int) -> tuple[bytes, Exception | None]:
    """Up to ``size`` bytes, read in pieces so that a fault (a truncated gzip) keeps what came before."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        try:
            piece = fh.read(min(size - got, 1 << 20))
        except Exception as exc:  # EOFError, BadGzipFile, zlib.error, OSError
            return b"".join(parts), exc
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts), None


def _oversized(name: str, line_base: int, size: int, h: hashlib._Hash, limit: int) -> DecodedBatch:
    payload = f'{{"bytes": {size}, "sha256": "{h.hexdigest()}", "json": "not parsed (too large)"}}'.encode()
    detail = f"record of {size} bytes exceeds {limit}"
    reject = Reject("oversized", None, detail, f"{name}:{line_base + 1}", payload)
    return DecodedBatch(empty_events_with_pos(), [reject], records=1)


def _decode_block(
    body: bytes, path: Path, line_base: int, max_record_bytes: int = MAX_RECORD_BYTES
) -> DecodedBatch:
    name = str(path)

    def position(i: int) -> str:
        return f"{name}:{line_base + i + 1}"

    return decode_lines(body, position, max_record_bytes=max_record_bytes)


def iter_parquet(path: Path, rows: int = PARQUET_ROWS) -> Iterator[Chunk]:
    """Decode a Parquet file (nested fields as structs) in row-group-sized chunks."""
    state = {"row": 0}
    return _guarded(path, _parquet(path, rows, state), lambda: f"after row {state['row']}")


def _parquet(path: Path, rows: int, state: dict[str, int]) -> Iterator[Chunk]:
    pf = pq.ParquetFile(path)
    total_rows = max(pf.metadata.num_rows, 1)
    file_size = path.stat().st_size
    row_base = 0
    name = str(path)
    for rb in pf.iter_batches(batch_size=rows):
        frame = pl.from_arrow(rb)
        assert isinstance(frame, pl.DataFrame)
        base = row_base

        def position(i: int, base: int = base) -> str:
            return f"{name}:row{base + i + 1}"

        yield Chunk(path, decode_frame(frame, position), file_size * frame.height // total_rows)
        row_base += frame.height
        state["row"] = row_base


def iter_file(path: Path) -> Iterator[Chunk]:
    """Decode any supported input file by its suffix."""
    if path.suffix == ".parquet":
        yield from iter_parquet(path)
    else:
        yield from iter_jsonl(path)


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files named directly, plus supported files inside named directories (sorted, deterministic)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(
                f
                for f in p.iterdir()
                if f.is_file()
                and (f.suffix in (".jsonl", ".json", ".parquet", ".txt") or f.name.endswith(".jsonl.gz"))
            )
        else:
            out.append(p)
    return out


def input_size(path: Path) -> int:
    """Bytes to read (compressed size for gzip/Parquet), for the progress bar."""
    return path.stat().st_size
