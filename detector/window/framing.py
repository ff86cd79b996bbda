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
