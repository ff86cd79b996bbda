"""Model feature specs: which catalogue features a model reads, how they become a float32 matrix.

A model reads a fixed, ordered list of numeric or boolean features of one target's catalogue
(``detector.window.features.CATALOGUES`` for ``account`` and ``cluster``, ``PROMPT_MODEL_FEATURES`` for
``prompt``). Training and scoring build the matrix with the same function, ``to_matrix``: every column is
cast to float32 (booleans to 0/1) and a null becomes ``FILL_VALUE``.

``FILL_VALUE`` is -1: every model feature is a count, share, ratio, age or flag, so none is ever negative
and -1 stays apart from every real value (a tree splits it off; no NaN ever reaches onnxruntime, whose
tree kernels and sklearn's may disagree on missing-value routing).

The *feature-schema hash* is the SHA-256 of the ordered ``name:dtype`` list plus the fill value. A manifest
records it; at load the engine's catalogue is hashed again and a disagreement stops start-up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.window.openers import OPENER_FEATURES

#: The value a null feature takes (see the module docstring).
FILL_VALUE: Final = -1.0
#: Targets a model may score, and the key column of their frames.
TARGET_KEYS: Final[Mapping[str, str]] = {"account": "account_id", "cluster": "cluster_id", "prompt": "row"}

#: Catalogue features a model must never read: strings; ``tick_end`` (the clock, not behaviour); and an
#: account's age and time observed, which are population priors, not behaviour: in the simulator every
#: attacker is new and nearly every honest user old, so a model given age learns age alone (the first
#: shipped account model did, and flagged 67 of 1,633 honest users once new sign-ups were simulated),
#: and real attackers buy aged accounts. Rules may still use them, visibly.
#: The rule evidence once kept out "until a retrain weighs it" (the cluster's ``network_keys_per_account``,
#: now read as the keys stood at the tick, ``window.asof``; the venue shares; ``client_key_inside_share``;
#: the client build's population lift, holders and axis; ``cross_org_card_member_share``; the
#: harvest-excess features; ``signup_cohort_accounts``) is weighed since round 10: all of it is cluster
#: evidence, and the cluster model reads it since v3 (docs/models.md, "v3"). Round 14's retrain weighs
#: the shares of what a group holds in common, which say who holds a text, not how much anyone sends:
#: ``sheet_share_24h`` (account and cluster), the cluster's ``shared_text_share_24h`` and
#: ``opener_shared_share_24h``. It keeps out (``_SIMULATOR_VOLUMES``) the counts and rates beside them,
#: whose values are the simulator's drawn volumes, session lengths and resend habits rather than a
#: behaviour an attacker must show (reasoning requests, sampled requests a member, sends per text, openers
#: and tool-heavy turns per agent or per opener), and ``low_yield``, a rule's verdict from settings, not
#: evidence: a model reading it would change when a setting does (docs/models.md, "v4"); so is
#: ``no_customer_explains`` (the farm rules' provenance gate over flags the model reads already), and
#: ``farm_accounts`` (their freshness gate, the same).
_SIMULATOR_VOLUMES: Final = frozenset(
    {
        "reasoning_requests_24h",
        "sheet_sends_per_text_24h",
        "sampled_requests_per_account_24h",
        "shared_text_peak_share_24h",  # round 24: a rule's input; no model was trained on it
        "low_yield",
        "no_customer_explains",
        "farm_accounts",
        *(n for n in OPENER_FEATURES if n != "opener_shared_share_24h"),
    }
)
_EXCLUDED: Final = frozenset({"tier", "tick_end", "account_age_days", "observed_hours", *_SIMULATOR_VOLUMES})


def catalogue(target: str) -> Mapping[str, pl.DataType]:
    """The engine's feature catalogue for ``target`` (account, cluster or prompt)."""
    if target == "prompt":
        from detector.detect.models.prompt import PROMPT_MODEL_FEATURES

        return PROMPT_MODEL_FEATURES
    from detector.window.features import CATALOGUES

    if target not in CATALOGUES:
        raise ValueError(f"unknown model target {target!r} (expected one of {sorted(TARGET_KEYS)})")
    return CATALOGUES[target]


def is_model_dtype(dtype: pl.DataType) -> bool:
    """Whether a feature of this dtype can feed a model (numeric or boolean)."""
    return dtype.is_numeric() or dtype == pl.Boolean()


def model_features(target: str) -> list[str]:
    """Every numeric or boolean catalogue feature of ``target``, in catalogue order."""
    return [n for n, d in catalogue(target).items() if n not in _EXCLUDED and is_model_dtype(d)]


def schema_entries(names: Sequence[str], cat: Mapping[str, pl.DataType]) -> list[str]:
    """``name:dtype`` for each feature (``name:MISSING`` when the catalogue lacks it)."""
    return [f"{n}:{cat[n]!s}" if n in cat else f"{n}:MISSING" for n in names]


def schema_hash(names: Sequence[str], cat: Mapping[str, pl.DataType]) -> str:
    """SHA-256 (hex) of the ordered ``name:dtype`` list and ``FILL_VALUE``."""
    text = "\n".join([*schema_entries(names, cat), f"fill={FILL_VALUE}"])
    return hashlib.sha256(text.encode()).hexdigest()


def to_vector(values: Mapping[str, Any], names: Sequence[str]) -> npt.NDArray[np.float32]:
    """One row of ``to_matrix`` from a mapping (feature name -> value), with the same fill rules."""
    out = np.array(
        [FILL_VALUE if values.get(n) is None else float(values[n]) for n in names], dtype=np.float64
    )
    out[~np.isfinite(out)] = FILL_VALUE
    return out.astype(np.float32).reshape(1, len(names))


def to_matrix(frame: pl.DataFrame, names: Sequence[str]) -> npt.NDArray[np.float32]:
    """The float32 matrix (rows x ``names``) a model reads; nulls, NaN and infinities become ``FILL_VALUE``.

    Raises ``ValueError`` naming the missing columns when ``frame`` lacks any of ``names``.
    """
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"feature frame lacks model features: {', '.join(missing)}")
    if frame.height == 0:
        return np.zeros((0, len(names)), dtype=np.float32)
    cols = [pl.col(n).cast(pl.Float64).fill_null(FILL_VALUE) for n in names]
    out = np.ascontiguousarray(frame.select(cols).to_numpy(), dtype=np.float64)
    if not out.flags.writeable:  # polars lends its own buffer (one float64 row over numpy memory)
        out = out.copy()
    out[~np.isfinite(out)] = FILL_VALUE
    return out.astype(np.float32)
