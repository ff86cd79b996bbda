"""Hashes shared with gateways and the simulator: the prompt SimHash and the stable template hash.

Both are specified exactly (reference code below) so that a gateway, the simulator and the detector
compute the same values on any machine and any polars version.

``TextKey``: the deployment's optional secret key on ``text_fp`` (the whole text's hash, whose smallest
value per bucket the sheet and opener samples keep). With a key, ``text_fp`` is SipHash-2-4 (a keyed
pseudo-random function built for exactly this: hash tables an attacker must not be able to steer) of
the public hash, so a checkpoint holder cannot confirm a guessed prompt and a farm cannot choose the
text that wins a bucket's sample. Template fingerprints stay public (allow-lists name them).
"""

from __future__ import annotations

import re
from hashlib import blake2b, scrypt
from typing import Any, Final, cast

import numpy as np
import polars as pl
import pyarrow as pa

#: Seed of stable_hash64; changing it changes every template fingerprint (allow-lists key on them).
STABLE_HASH_SEED: Final = 0x7072_6F6D_7074_6670  # "promptfp"
#: XORed into the fingerprint of a last-sentence (suffix) segment, so the two sides never collide.
SUFFIX_SIDE_SALT: Final = 0x5355_4646_4958_5F5F  # "SUFFIX__"

_MASK64: Final = (1 << 64) - 1
_WORD_K: Final = 0x9E3779B97F4A7C15
_SM2: Final = 0xBF58476D1CE4E5B9
_SM3: Final = 0x94D049BB133111EB
_SIMHASH_TOKEN: Final = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|\w+")
_DIGITS: Final = re.compile("[0-9]+")


def simhash64(text: str) -> int:
    """The 64-bit SimHash of ``text``, as gateways that do not ship text compute ``prompt.simhash``.

    Tokens are the lower-cased text's ``\\w+`` words, except that each Han ideograph or kana is a token of
    its own (those scripts do not put spaces between words). Shingles are token 3-grams joined by one space;
    a text of one or two tokens is a single shingle; a text without tokens hashes to 0. Each shingle is
    hashed with ``blake2b(digest_size=8)`` read big-endian, and bit ``i`` of the result is set when more
    than half of the shingles have bit ``i`` set. Reference code, one call per prompt: the detector's hot
    path only parses the gateway's hex.
    """
    tokens = _SIMHASH_TOKEN.findall(text.lower())
    if not tokens:
        return 0
    if len(tokens) < 3:
        shingles = [" ".join(tokens)]
    else:
        shingles = [" ".join(tokens[i : i + 3]) for i in range(len(tokens) - 2)]
    raw = b"".join(blake2b(s.encode("utf-8"), digest_size=8).digest() for s in shingles)
    hashes = np.frombuffer(raw, dtype=">u8").astype(np.uint64)
    bits = (hashes[:, None] >> np.arange(64, dtype=np.uint64)[None, :]) & np.uint64(1)
    votes = 2 * bits.astype(np.int64).sum(axis=0) - len(shingles)
    out = 0
    for i, v in enumerate(votes.tolist()):
        if v > 0:
            out |= 1 << i
    return out


def simhash64_hex(text: str) -> str:
    """``simhash64(text)`` as the contract's 16 lower-case hex digits."""
    return f"{simhash64(text):016x}"


def _mix_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * _SM2) & _MASK64
    z = ((z ^ (z >> 27)) * _SM3) & _MASK64
    return z ^ (z >> 31)


def stable_hash64(data: bytes) -> int:
    """A 64-bit hash that is the same on every machine and polars version (reference implementation).

    ``h = SEED ^ len``; for each 8-byte little-endian word ``w`` (the last one zero-padded)
    ``h = ((h ^ w) * K) mod 2**64; h ^= h >> 29``; the result is the splitmix64 finaliser of ``h``.
    ``stable_hash_series`` is the vectorised twin (the two agree; tested).
    """
    h = STABLE_HASH_SEED ^ len(data)
    for k in range(0, len(data), 8):
        h = ((h ^ int.from_bytes(data[k : k + 8].ljust(8, b"\0"), "little")) * _WORD_K) & _MASK64
        h ^= h >> 29
    return _mix_int(h)


def template_fingerprint(segment: str, suffix: bool = False) -> int:
    """``template_fp`` of a prompt whose chosen segment is ``segment`` (reference for gateways and tests).

    ``stable_hash64`` of the segment's UTF-8 bytes with its ASCII digits removed, XORed with
    ``SUFFIX_SIDE_SALT`` when the segment is the prompt's last sentence.
    """
    h = stable_hash64(_DIGITS.sub("", segment).encode("utf-8"))
    return h ^ SUFFIX_SIDE_SALT if suffix else h


def _mix_np(z: np.ndarray[Any, np.dtype[np.uint64]]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_SM2)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_SM3)
    return z ^ (z >> np.uint64(31))


def stable_hash_series(s: pl.Series, prefix_bytes: pl.Series | None = None) -> pl.Series:
    """``stable_hash64`` of every value of a String or Binary series (UTF-8 bytes; nulls stay null).

    With ``prefix_bytes`` only each value's first that many bytes are hashed (null: all of them).
    Vectorised per batch: 64-bit words are read straight from the Arrow buffer at every value's offsets
    and mixed, longest values first, for as long as a value has bytes left.
    """
    n = s.len()
    if n == 0:
        return pl.Series(s.name, [], dtype=pl.UInt64)
    arr = s.rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type not in (pa.large_string(), pa.large_binary()):
        arr = arr.cast(pa.large_binary())
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    lens = (offsets[1:] - offsets[:-1]).astype(np.int64)
    if prefix_bytes is not None:
        cut = prefix_bytes.cast(pl.Int64).fill_null(-1).to_numpy()
        lens = np.where((cut < 0) | (cut > lens), lens, cut)
    # Longest first, so that the values still holding bytes at word k are a prefix of the order.
    order = np.argsort(-lens, kind="stable")
    starts, lens_sorted = offsets[:-1][order], lens[order]
    padded = np.concatenate([data, np.zeros(8, dtype=np.uint8)])
    # A byte-strided view: word[o] is the little-endian 64-bit word starting at byte o (unaligned reads).
    word = np.ndarray((len(data) + 1,), dtype="<u8", buffer=padded, strides=(1,))
    tail_mask = np.array([(1 << (8 * r)) - 1 for r in range(8)] + [_MASK64], dtype=np.uint64)
    ascending = lens_sorted[::-1]
    h = np.uint64(STABLE_HASH_SEED) ^ lens_sorted.astype(np.uint64)
    with np.errstate(over="ignore"):
        for k in range(0, int(lens_sorted[0]), 8):
            live = n - int(np.searchsorted(ascending, k, side="right"))  # values with more than k bytes
            w = word[starts[:live] + k].astype(np.uint64) & tail_mask[np.minimum(lens_sorted[:live] - k, 8)]
            hk = (h[:live] ^ w) * np.uint64(_WORD_K)
            h[:live] = hk ^ (hk >> np.uint64(29))
        h = _mix_np(h)
    out = pl.Series(s.name, h[np.argsort(order, kind="stable")], dtype=pl.UInt64)
    return _nulls_of(s, out)


# ------------------------------------------------------------------------------------------------------
# The secret key on text_fp (round 13)

_SIP_INIT: Final = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)
#: blake2b personalisation of the derivation: the key's SipHash half and its check never equal another use.
_KEY_PERSON: Final = b"det-text-fp"
_CHECK_PERSON: Final = b"det-text-chk"
#: scrypt before both (round 13 review): the secret is asked to be random, but a weak one would otherwise
#: be tested offline at blake2b's speed against a checkpoint's check or its keyed samples. n = 2**14, r = 8:
#: the scrypt paper's interactive cost (16 MiB, about 60 ms here), paid once per engine. Changing either
#: changes every keyed value and check, so a checkpoint under the old derivation would be refused.
_KDF_SALT: Final = b"distillation-detector/text-key/v1"
_KDF_N: Final = 2**14


class TextKey:
    """The deployment's secret key on ``text_fp``: a SipHash-2-4 key (two 64-bit words) derived from the
    operator's key bytes by scrypt then blake2b, and ``check``, a short public name of which key it is
    (a checkpoint stores it; with a random key of 16 bytes or more nobody can test a prompt guess or
    recover the key from it; scrypt makes each offline guess of a weak key slow, from it as from the
    keyed samples).

    It prints as ``TextKey(***)``: never the key or its words, so a log, an exception or a ``repr`` of a
    frame's settings cannot leak it.
    """

    __slots__ = ("_k0", "_k1", "check")

    def __init__(self, secret: bytes) -> None:
        # slow first (scrypt), so that each guess of a weak secret against a checkpoint costs ~16 MiB
        # and tens of milliseconds; then two blake2b personalisations of it: the words and the check
        master = scrypt(secret, salt=_KDF_SALT, n=_KDF_N, r=8, p=1, dklen=32)
        words = blake2b(master, digest_size=16, person=_KEY_PERSON).digest()
        self._k0 = int.from_bytes(words[:8], "little")
        self._k1 = int.from_bytes(words[8:], "little")
        #: 16 hex digits: blake2b of the derived key under another personalisation (not the SipHash words).
        self.check: str = blake2b(master, digest_size=8, person=_CHECK_PERSON).hexdigest()

    def __repr__(self) -> str:
        return "TextKey(***)"

    __str__ = __repr__

    def __getstate__(self) -> tuple[int, int, str]:  # pickled to the daemon's decoding workers, in memory
        return self._k0, self._k1, self.check

    def __setstate__(self, state: tuple[int, int, str]) -> None:
        self._k0, self._k1, self.check = state

    def hash64(self, value: int) -> int:
        """SipHash-2-4 of the 8 little-endian bytes of ``value`` (reference; ``series``: vectorised)."""
        return siphash24_u64(self._k0, self._k1, value)

    def series(self, s: pl.Series) -> pl.Series:
        """``hash64`` of every value of a UInt64 series (nulls stay null), vectorised."""
        if s.len() == 0:
            return s
        m = s.fill_null(0).to_numpy().astype(np.uint64, copy=False)
        return _nulls_of(s, pl.Series(s.name, _siphash24_np(self._k0, self._k1, m), dtype=pl.UInt64))


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK64


def siphash24_u64(k0: int, k1: int, m: int) -> int:
    """SipHash-2-4 (Aumasson and Bernstein) of one 8-byte message, read as a little-endian word ``m``,
    under the key words ``k0``, ``k1`` (the 16-byte key read as two little-endian words). Reference code."""
    v = [k0 ^ _SIP_INIT[0], k1 ^ _SIP_INIT[1], k0 ^ _SIP_INIT[2], k1 ^ _SIP_INIT[3]]

    def rounds(n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & _MASK64
            v[1] = _rotl(v[1], 13) ^ v[0]
            v[0] = _rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & _MASK64
            v[3] = _rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & _MASK64
            v[3] = _rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & _MASK64
            v[1] = _rotl(v[1], 17) ^ v[2]
            v[2] = _rotl(v[2], 32)

    last = 8 << 56  # the message length in the final block's top byte; no bytes left over
    for block in (m & _MASK64, last):
        v[3] ^= block
        rounds(2)
        v[0] ^= block
    v[2] ^= 0xFF
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def _siphash24_np(
    k0: int, k1: int, m: np.ndarray[Any, np.dtype[np.uint64]]
) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """``siphash24_u64`` of every word of ``m`` (numpy wraps unsigned additions modulo 2**64)."""
    u = np.uint64
    v0 = np.full_like(m, k0 ^ _SIP_INIT[0])
    v1 = np.full_like(m, k1 ^ _SIP_INIT[1])
    v2 = np.full_like(m, k0 ^ _SIP_INIT[2])
    v3 = np.full_like(m, k1 ^ _SIP_INIT[3])

    def rotl(x: np.ndarray[Any, np.dtype[np.uint64]], b: int) -> np.ndarray[Any, np.dtype[np.uint64]]:
        return (x << u(b)) | (x >> u(64 - b))

    def rounds(n: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 += v1
            v1 = rotl(v1, 13)
            v1 ^= v0
            v0 = rotl(v0, 32)
            v2 += v3
            v3 = rotl(v3, 16)
            v3 ^= v2
            v0 += v3
            v3 = rotl(v3, 21)
            v3 ^= v0
            v2 += v1
            v1 = rotl(v1, 17)
            v1 ^= v2
            v2 = rotl(v2, 32)

    with np.errstate(over="ignore"):
        v3 ^= m
        rounds(2)
        v0 ^= m
        last = u(8 << 56)
        v3 ^= last
        rounds(2)
        v0 ^= last
        v2 ^= u(0xFF)
        rounds(4)
    return cast("np.ndarray[Any, np.dtype[np.uint64]]", v0 ^ v1 ^ v2 ^ v3)  # numpy's stubs say bool


def _nulls_of(s: pl.Series, out: pl.Series) -> pl.Series:
    """``out`` (a hash of every value of ``s``, its nulls hashed as a stand-in) with ``s``'s nulls."""
    if s.null_count():
        out = pl.select(pl.when(s.is_null()).then(None).otherwise(out)).to_series().alias(s.name)
    return out
