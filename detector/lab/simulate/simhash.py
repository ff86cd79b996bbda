"""64-bit SimHash of prompt text, as a gateway that does not ship text would compute it.

Tokens are lowercase words (``\\w+``), except that Han ideographs and kana count as one token each
(those scripts do not separate words with spaces). Shingles are word 3-grams joined by one space
(a text of one or two tokens is one shingle); each shingle is hashed with blake2b(digest_size=8),
read big-endian, and every shingle votes with weight 1 on each of the 64 bits. An empty text hashes
to 0. ``simhash64_hex`` gives the contract's 16-character lowercase hex form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from hashlib import blake2b

import numpy as np

_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|\w+")
_BITS = np.arange(63, -1, -1, dtype=np.uint64)


def _shingles(text: str) -> list[str]:
    words = _TOKEN.findall(text.lower())
    if len(words) < 3:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + 3]) for i in range(len(words) - 2)]


def _hashes(shingles: list[str]) -> np.ndarray:
    raw = b"".join(blake2b(s.encode("utf-8"), digest_size=8).digest() for s in shingles)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)


def simhash64(text: str) -> int:
    """Return the 64-bit SimHash of ``text`` over lowercase word 3-gram shingles."""
    shingles = _shingles(text)
    if not shingles:
        return 0
    hashes = _hashes(shingles)
    bits = (hashes[:, None] >> _BITS[None, :]) & np.uint64(1)
    votes = 2 * bits.astype(np.int64).sum(axis=0) - len(shingles)
    out = 0
    for i, v in enumerate(votes.tolist()):
        if v > 0:
            out |= 1 << (63 - i)
    return out


def simhash64_hex(text: str) -> str:
    """Return ``simhash64(text)`` as 16 lowercase hex digits (the contract's ``prompt.simhash``)."""
    return f"{simhash64(text):016x}"


def simhash64_hex_many(texts: Iterable[str]) -> list[str]:
    """Hex SimHash of each text, computing each distinct text once."""
    cache: dict[str, str] = {}
    out: list[str] = []
    for t in texts:
        h = cache.get(t)
        if h is None:
            h = simhash64_hex(t)
            cache[t] = h
        out.append(h)
    return out
