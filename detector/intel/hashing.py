"""Keyed hashes of linkage values, and the index of a partner's indicators the state layer matches.

Every customer-derived value leaves a provider only as HMAC-SHA256(community key, "family:value"):
partners holding the same key can match their own customers' values against it, and nobody without
the key can test guesses. The families are the state's linkage families (payment fingerprints, client
fingerprints, system-prompt hashes, template skeletons, network prefixes, resellers), with the values
exactly as the state keeps them, so provider B hashes its own keys the same way provider A did.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from detector.contracts import LINK_FAMILIES

#: The linkage families whose values are shared (sign-up bursts are time slots, shared as windows).
SHARED_FAMILIES = tuple(f for f in LINK_FAMILIES if f != "signup")
#: The linkage family partner indicators create.
INTEL_FAMILY = "shared_intel"


def artefact_hmac(key: bytes, family: str, value: str) -> str:
    """Hex HMAC-SHA256 of one linkage value under the community key."""
    return hmac.new(key, f"{family}:{value}".encode(), hashlib.sha256).hexdigest()


def community_key(env_value: str | None = None, file: Path | None = None) -> bytes:
    """The community key from ``env_value`` (default ``$DETECTOR_COMMUNITY_KEY``) or a file; at least
    16 bytes. Raises ``ValueError`` naming where it looked (never the key)."""
    raw = env_value if env_value is not None else os.environ.get("DETECTOR_COMMUNITY_KEY")
    if not raw and file is not None:
        raw = file.read_text(encoding="utf-8").strip()
    if not raw or len(raw.encode()) < 16:
        raise ValueError(
            "community key missing or shorter than 16 bytes (DETECTOR_COMMUNITY_KEY or a key file)"
        )
    return raw.encode()


@dataclass
class PartnerIndex:
    """A partner's indicators: hash -> indicator id, under our shared community key."""

    key: bytes
    hashes: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.hashes)

    def match(self, log: pl.DataFrame) -> pl.DataFrame:
        """Rows of a key log (account_id, family, key, ...) whose value a partner indicator names, as
        ``shared_intel`` rows keyed by the indicator id (hashes are computed once per distinct value)."""
        cand = log.filter(pl.col("family").is_in(SHARED_FAMILIES))
        if not self.hashes or cand.height == 0:
            return log.clear()
        values = cand.select("family", "key").unique()
        ids = [
            self.hashes.get(artefact_hmac(self.key, f, k))
            for f, k in values.iter_rows()  # distinct values only: a few per tick
        ]
        hit = values.with_columns(pl.Series("_intel", ids, dtype=pl.String)).drop_nulls("_intel")
        if hit.height == 0:
            return log.clear()
        return (
            cand.join(hit, on=["family", "key"], how="inner")
            .with_columns(pl.lit(INTEL_FAMILY).alias("family"), pl.col("_intel").alias("key"))
            .drop("_intel")
            .select(log.columns)
        )
