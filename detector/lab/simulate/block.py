"""A columnar batch of simulated requests before the gateway-side fields are derived.

Generators return ``Block``s (one numpy array per column, same length); ``concat`` joins them and
``assemble`` later derives usage, status, latency and the response from these columns.
Null encodings: ``nan`` for floats, ``-1`` for non-negative integers and tri-state booleans.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Obj = npt.NDArray[np.object_]
Bool = npt.NDArray[np.bool_]


@dataclass
class Block:
    """Requests as generated: who, when, which model, what was asked and with which parameters."""

    acct: I64
    ts: I64
    model: Obj
    text: Obj
    lang: Obj
    turns: I64
    max_tokens: I64
    temperature: F64
    top_p: F64
    n: I64
    stream: Bool
    logprobs: I64
    top_logprobs: I64
    tools: I64
    thinking: Bool
    sys_hash: Obj
    #: Median output tokens per completion before the max_tokens cap.
    out_median: F64
    refusal_p: F64
    #: Context tokens carried per earlier turn.
    history: F64
    #: Probability that a 200 response stops for a tool call.
    tool_stop: F64
    #: Probability of a 429.
    throttle: F64

    def __len__(self) -> int:
        return int(self.acct.shape[0])

    def take(self, idx: npt.NDArray[Any]) -> Block:
        """The rows at ``idx`` (indices or a boolean mask)."""
        return Block(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "turns": (1, np.int64),
    "max_tokens": (4096, np.int64),
    "temperature": (np.nan, np.float64),
    "top_p": (np.nan, np.float64),
    "n": (1, np.int64),
    "stream": (False, np.bool_),
    "logprobs": (-1, np.int64),
    "top_logprobs": (-1, np.int64),
    "tools": (0, np.int64),
    "thinking": (False, np.bool_),
    "sys_hash": (None, np.object_),
    "out_median": (400.0, np.float64),
    "refusal_p": (0.003, np.float64),
    "history": (300.0, np.float64),
    "tool_stop": (0.0, np.float64),
    "throttle": (0.01, np.float64),
}


def _obj(values: Any, n: int) -> Obj:
    if isinstance(values, np.ndarray):
        return values if values.dtype == np.object_ else values.astype(np.object_)
    if isinstance(values, list | tuple):
        arr = np.empty(n, dtype=np.object_)
        arr[:] = list(values)
        return arr
    return np.full(n, values, dtype=np.object_)


def make_block(
    acct: npt.ArrayLike, ts: npt.ArrayLike, model: Any, text: Any, lang: Any, **params: Any
) -> Block:
    """Build a block; every parameter may be a scalar (broadcast) or an array of the block's length."""
    a = np.asarray(acct, dtype=np.int64)
    n = int(a.shape[0])
    cols: dict[str, Any] = {
        "acct": a,
        "ts": np.asarray(ts, dtype=np.int64),
        "model": _obj(model, n),
        "text": _obj(text, n),
        "lang": _obj(lang, n),
    }
    unknown = set(params) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"make_block: unknown parameters {sorted(unknown)}")
    for name, (default, dtype) in _DEFAULTS.items():
        value = params.get(name, default)
        if dtype is np.object_:
            cols[name] = _obj(value, n)
        else:
            arr = np.asarray(value, dtype=dtype)
            cols[name] = np.broadcast_to(arr, (n,)).copy() if arr.ndim == 0 else arr
    block = Block(**cols)
    for f in fields(block):
        if getattr(block, f.name).shape != (n,):
            raise ValueError(
                f"make_block: column {f.name} has shape {getattr(block, f.name).shape}, want ({n},)"
            )
    return block


def concat(blocks: list[Block]) -> Block:
    """Join blocks row-wise (an empty list gives an empty block)."""
    if not blocks:
        return make_block(np.zeros(0, np.int64), np.zeros(0, np.int64), [], [], [])
    return Block(**{f.name: np.concatenate([getattr(b, f.name) for b in blocks]) for f in fields(Block)})


def empty_block() -> Block:
    """A block with no requests (a generator switched off)."""
    return concat([])
