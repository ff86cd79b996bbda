"""File sources: JSON Lines (plain or gzip) and Parquet, read in chunks and decoded batch-wise."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow.parquet as pq

from detector.decode import DecodedBatch, decode_frame, decode_lines

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


def iter_jsonl(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
    """Decode a JSON Lines file (``.jsonl`` / ``.json`` / ``.gz``) chunk by chunk, keeping line numbers."""
    if path.suffix != ".gz" and path.stat().st_size <= chunk_bytes:
        name = str(path)
        yield Chunk(path, decode_lines(path, lambda i: f"{name}:{i + 1}"), path.stat().st_size)
        return
    line_base = 0
    tail = b""
    with _open(path) as fh:
        while True:
            block = fh.read(chunk_bytes)
            if not block:
                break
            data = tail + block
            cut = data.rfind(b"\n")
            if cut < 0:
                tail = data
                continue
            body, tail = data[: cut + 1], data[cut + 1 :]
            yield Chunk(path, _decode_block(body, path, line_base), len(block))
            line_base += body.count(b"\n")
        if tail.strip():
            yield Chunk(path, _decode_block(tail, path, line_base), 0)


def _decode_block(body: bytes, path: Path, line_base: int) -> DecodedBatch:
    name = str(path)

    def position(i: int) -> str:
        return f"{name}:{line_base + i + 1}"

    return decode_lines(body, position)


def iter_parquet(path: Path, rows: int = PARQUET_ROWS) -> Iterator[Chunk]:
    """Decode a Parquet file (nested fields as structs) in row-group-sized chunks."""
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
