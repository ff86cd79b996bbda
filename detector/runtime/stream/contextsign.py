"""The contexts topic's signatures (``DETECTOR_STREAM_CONTEXTS_KEY``; docs/runtime.md, "Stages").

With a deployment key, the cluster stage signs each record it sends to the contexts topic (HMAC-SHA256
under the key over the record's key and value, in the header ``SIGNATURE_HEADER``) and the account stage
reads only records whose signature checks (``hmac.compare_digest``), so a writer without the key cannot
put a context in front of it. The value's bytes are the same signed or not. The key is a secret: never
logged, never in an error, a dead letter or a metric.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detector.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import SecretStr

    from detector.runtime.stream.settings import StreamSettings

#: The Kafka header that carries a record's signature (32 bytes).
SIGNATURE_HEADER = "detector-context-hmac"
#: Shortest key accepted, as for ``DETECTOR_TEXT_KEY``.
KEY_MIN_BYTES = 16
#: Longest key file read: a key is a line; a bigger file is a wrong path.
KEY_MAX_BYTES = 4096
#: What is signed, before the record's key and value: a version, so a signature of anything else the
#: deployment signs with the same key never checks here.
_DOMAIN = b"detector-contexts/1\x00"
VARIABLE = "DETECTOR_STREAM_CONTEXTS_KEY"
#: The key before a rotation (round 18): still accepted when reading, never used to sign.
PREVIOUS = "DETECTOR_STREAM_CONTEXTS_KEY_PREVIOUS"


class ContextKey:
    """The deployment's key on the contexts topic, and the key before it while a rotation rolls through
    the stages (``previous``: a record signed under either checks; only the key signs). Its ``repr``
    never shows either."""

    __slots__ = ("_key", "_previous")

    def __init__(self, key: bytes, previous: bytes | None = None) -> None:
        self._key, self._previous = key, previous

    def __repr__(self) -> str:
        return "ContextKey(**********)"

    def sign(self, key: bytes, value: bytes) -> bytes:
        """The signature of one record: HMAC-SHA256 over its key (length first) and its value."""
        return _mac(self._key, key, value)

    def headers(self, key: bytes, value: bytes) -> list[tuple[str, bytes]]:
        """The headers a signed record is sent with."""
        return [(SIGNATURE_HEADER, self.sign(key, value))]

    def check(self, key: bytes, value: bytes, headers: Any) -> str | None:
        """Why the record's signature does not check under the key or the previous one (None: it does):
        ``unsigned``, ``signature not 32 bytes``, ``several signatures`` or ``signature does not match``
        (never a key or the bytes)."""
        sigs = [v for k, v in headers or () if k == SIGNATURE_HEADER]
        if not sigs:
            return "unsigned"
        if len(sigs) > 1:
            return "several signatures"
        sig = sigs[0] if isinstance(sigs[0], bytes) else b""
        if len(sig) != hashlib.sha256().digest_size:
            return "signature not 32 bytes"
        keys = (self._key,) if self._previous is None else (self._key, self._previous)
        if not any(hmac.compare_digest(sig, _mac(k, key, value)) for k in keys):
            return "signature does not match"
        return None


def _mac(secret: bytes, key: bytes, value: bytes) -> bytes:
    """HMAC-SHA256 under ``secret`` over the domain, the record's key (length first) and its value."""
    mac = hmac.new(secret, _DOMAIN, hashlib.sha256)
    mac.update(len(key).to_bytes(4, "big"))
    mac.update(key)
    mac.update(value)
    return mac.digest()


def is_signed(headers: Any) -> bool:
    """Whether a record carries a signature header (read by a stage without the key)."""
    return any(k == SIGNATURE_HEADER for k, _ in headers or ())


def context_key_of(s: StreamSettings) -> ContextKey | None:
    """The contexts key from ``s`` (the variable, else the file, read once, bounded; else None) with the
    previous key, the same way. A key under 16 bytes, an unreadable, oversized or non-UTF-8 file, or a
    previous key without a key is a ``ConfigError`` naming the variable (never the key)."""
    key = _secret(s.contexts_key, s.contexts_key_file, VARIABLE)
    previous = _secret(s.contexts_key_previous, s.contexts_key_previous_file, PREVIOUS)
    if key is None:
        if previous is not None:
            where = PREVIOUS if s.contexts_key_previous is not None else f"{PREVIOUS}_FILE"
            raise ConfigError(f"a previous contexts key without a key: set {VARIABLE} too", where)
        return None
    return ContextKey(key, previous)


def _secret(value: SecretStr | None, path: Path | None, variable: str) -> bytes | None:
    """One key: the variable's value, else its file's, else None (``context_key_of``)."""
    if value is not None:
        secret, where = value.get_secret_value().strip(), variable
    elif path is not None:
        secret, where = _read_file(path, f"{variable}_FILE"), f"{variable}_FILE"
    else:
        return None
    raw = secret.encode()
    if len(raw) < KEY_MIN_BYTES:
        raise ConfigError(
            f"the contexts key is shorter than {KEY_MIN_BYTES} bytes; give a longer secret", where
        )
    return raw


def _read_file(path: Path, where: str) -> str:
    try:
        with path.open("rb") as f:  # bounded: a device or a big file is refused, never read whole
            data = f.read(KEY_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the contexts key file ({type(exc).__name__})", where) from None
    if len(data) > KEY_MAX_BYTES:
        raise ConfigError(
            f"the contexts key file is longer than {KEY_MAX_BYTES} bytes (it holds the key alone)", where
        )
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(
            "the contexts key file is not UTF-8 text (e.g. `openssl rand -hex 32`)", where
        ) from None
