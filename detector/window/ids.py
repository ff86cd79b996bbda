"""Request ids as 64-bit hashes: what the de-duplication table keeps instead of the strings.

A request id is only compared for equality (was this request counted already?), so the state keeps
8 bytes per id, not the string (a 20-36 character id is 36-52 bytes in a polars string column). The
hash is this module's own (FNV-1a over the UTF-8 bytes, then the splitmix64 finaliser), computed
column-wise with numpy, so a checkpoint's hashes mean the same under any polars or Python version
(polars' own ``hash`` is stable only within one polars version).

Collisions: with ``n`` ids inside the de-duplication horizon, a new id matches one of them by chance
with probability about ``n / 2**64``. At 16 million requests a day kept 7 days (n = 1.1e8) that is
6e-12 per request, about one request wrongly taken for a duplicate (and not counted) every 27 years
of that traffic. Request ids are issued by the gateway, not chosen by clients.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

#: The column the de-duplication table keeps.
ID_HASH = "id_hash"
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def id_hashes(ids: pl.Series) -> pl.Series:
    """The 64-bit hash of every string in ``ids`` (a null hashes as the empty string)."""
    n = ids.len()
    if n == 0:
        return pl.Series(ID_HASH, [], dtype=pl.UInt64)
    text = ids.cast(pl.String).fill_null("")
    offsets, data = _buffers(text)
    lengths = np.diff(offsets)
    width = int(lengths.max())
    if width and int(lengths.min()) != width:
        # ids of several lengths: pad them to one width (the padding is masked out below), so the
        # bytes form an n x width matrix; ids with multi-byte characters pad unevenly: gather instead
        padded_offsets, padded = _buffers(text.str.pad_end(width, "\0"))
        if int(np.diff(padded_offsets).max()) == int(np.diff(padded_offsets).min()) == width:
            offsets, data = padded_offsets, padded
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    if width:
        contiguous = int(offsets[-1] - offsets[0]) == n * width
        matrix = data[offsets[0] : offsets[-1]].reshape(n, width) if contiguous else None
        uniform = bool(int(lengths.min()) == width)
        for j in range(width):  # one pass per byte position, each over the whole column
            if matrix is not None:
                byte = matrix[:, j].astype(np.uint64)
            else:
                byte = data[np.minimum(offsets[:-1] + j, data.size - 1)].astype(np.uint64)
            step = (h ^ byte) * _FNV_PRIME
            h = step if uniform else np.where(lengths > j, step, h)
    # splitmix64's finaliser: every input bit moves every output bit
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return pl.Series(ID_HASH, h, dtype=pl.UInt64)


def _buffers(text: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a string column, as Arrow holds them: (n + 1 offsets, data).

    Cast to binary by polars, which exports it as Arrow's large binary (64-bit offsets): the same
    bytes as an Arrow cast of the large string, without loading ``pyarrow.compute`` for that cast
    (0.2 s of CPU once per process: most of what the de-duplication hash cost a replay, issue 13)."""
    arrow = text.cast(pl.Binary).to_arrow(compat_level=pl.CompatLevel.oldest())
    arr = pa.concat_arrays(arrow.chunks) if isinstance(arrow, pa.ChunkedArray) else arrow
    if arr.type != pa.large_binary():  # not how polars exports binary today: never silently misread
        raise TypeError(f"expected Arrow large_binary from polars, got {arr.type}")
    _, offsets_buf, data_buf = arr.buffers()
    assert offsets_buf is not None
    offsets = np.frombuffer(offsets_buf, dtype=np.int64, count=len(arr) + 1, offset=arr.offset * 8)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(1, np.uint8)
    return offsets, data if data.size else np.zeros(1, np.uint8)
