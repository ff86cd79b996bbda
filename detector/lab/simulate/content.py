"""Ordinary request content shared by honest personas and by the ordinary share of campaigns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detector.lab.simulate.block import I64, Block, Bool, Obj, make_block
from detector.lab.simulate.world import World

LANG_WEIGHTS: dict[str, float] = {
    "en": 0.45,
    "zh": 0.10,
    "es": 0.10,
    "de": 0.05,
    "fr": 0.05,
    "ru": 0.05,
    "ja": 0.05,
    "pt": 0.05,
    "ar": 0.05,
    "ko": 0.05,
}


def pick_langs(rng: np.random.Generator, n: int, weights: dict[str, float] | None = None) -> list[str]:
    """``n`` languages drawn by weight."""
    w = weights or LANG_WEIGHTS
    keys = list(w)
    p = np.array([w[k] for k in keys])
    return [keys[i] for i in rng.choice(len(keys), size=n, p=p / p.sum())]


def event_langs(rng: np.random.Generator, primary: Sequence[str], english_share: float = 0.15) -> list[str]:
    """Per-request language: the account's own, sometimes English."""
    switch = rng.random(len(primary)) < english_share
    return ["en" if s else p for s, p in zip(switch, primary, strict=True)]


def casual_content(
    w: World,
    rng: np.random.Generator,
    acct: I64,
    ts: I64,
    model: Obj,
    langs: Sequence[str],
    turns: I64 | int = 1,
    code_share: float = 0.15,
    throttle: float = 0.01,
) -> Block:
    """Everyday chat requests: varied prompts and languages, mixed parameters."""
    n = acct.shape[0]
    texts = w.bank.benign(rng, langs)
    code: Bool = np.less(rng.random(n), code_share)
    if code.any():
        code_texts = w.bank.code(rng, int(code.sum()))
        for i, t in zip(np.flatnonzero(code), code_texts, strict=True):
            texts[i] = t
    temperature = rng.choice(np.array([np.nan, 0.7, 1.0, 0.3, 0.5]), size=n, p=[0.4, 0.2, 0.2, 0.1, 0.1])
    top_p = np.where(rng.random(n) < 0.85, np.nan, rng.choice(np.array([0.9, 0.95]), size=n))
    max_tokens = rng.choice(np.array([1024, 2048, 4096, 8192, -1]), size=n, p=[0.2, 0.25, 0.3, 0.15, 0.1])
    thinking = rng.random(n) < 0.1
    return make_block(
        acct,
        ts,
        model,
        texts,
        list(langs),
        turns=turns,
        max_tokens=w.cap(model, max_tokens),
        temperature=temperature,
        top_p=top_p,
        stream=rng.random(n) < 0.6,
        logprobs=np.where(rng.random(n) < 0.7, -1, 0),
        thinking=thinking,
        out_median=np.where(thinking, 900.0, 350.0),
        history=250.0,
        throttle=throttle,
    )
