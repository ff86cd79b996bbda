"""The content-marker knob: what a campaign's prompts say to elicit reasoning (issue 17).

Every family honours every ``ContentMode`` around its own task (a problem, an agentic instruction, a
short instruction, a template skeleton):

- ``explicit``: a stock English ask ("think step by step", "chain of thought", "show your work");
- ``paraphrased``: an English ask composed per request from parts that hold no stock phrase
  (``STOCK_PHRASES``), as an attacker who rewrites its wrapper with a model would send;
- ``multilingual``: the ask in the account's own one or two languages other than English;
- ``system_prompt_only``: no ask in the user prompt; it lives in the campaign's private system prompt
  (the gateway ships only its hash);
- ``none``: no ask anywhere; reasoning is requested, if at all, through parameters (thinking, max_tokens).

The material is in ``detector/data/sim_prompts.json`` under ``asks``. System prompt texts are recorded in
``World.system_prompts`` (hash -> text) for tests; they are never written out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import numpy as np

from detector.lab.simulate.params import ContentMode
from detector.lab.simulate.world import World

#: Stock phrases of reasoning elicitation (lower case). Paraphrased asks contain none of them, nor do the
#: user prompts of the system-prompt-only and none modes (the tasks themselves are not rewritten).
STOCK_PHRASES: tuple[str, ...] = (
    "step by step",
    "step-by-step",
    "chain of thought",
    "chain-of-thought",
    "think",
    "thought process",
    "reasoning",
    "reason through",
    "show your work",
    "show your working",
    "intermediate step",
    "<think>",
)


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.random() * len(items))]


def _asks(w: World) -> dict[str, Any]:
    data: dict[str, Any] = w.bank.d["asks"]
    return data


def multilingual_langs(w: World) -> list[str]:
    """Languages the multilingual asks exist in (none is English)."""
    return sorted(_asks(w)["multilingual"])


def account_langs(w: World, rng: np.random.Generator, accounts: Sequence[int]) -> dict[int, list[str]]:
    """One or two ask languages per account (an operator assigns its workers a language or two)."""
    pool = multilingual_langs(w)
    return {
        int(a): [str(x) for x in rng.choice(pool, size=int(rng.integers(1, 3)), replace=False)]
        for a in accounts
    }


def row_langs(rng: np.random.Generator, acct: Sequence[int], own: dict[int, list[str]]) -> list[str]:
    """Per request, one of its account's languages."""
    return [str(_pick(rng, own[int(a)])) for a in acct]


def paraphrase(w: World, rng: np.random.Generator) -> str:
    """An English reasoning ask with no stock phrase, composed from parts (hundreds of wordings)."""
    parts = _asks(w)["paraphrase"]
    words = [_pick(rng, parts["lead"]), _pick(rng, parts["body"]), _pick(rng, parts["close"])]
    return " ".join(x for x in words if x)


def ask_sentences(w: World, rng: np.random.Generator, mode: ContentMode, langs: Sequence[str]) -> list[str]:
    """One ask per request ("" where the mode puts none in the user prompt); ``langs``: the ask language
    of each request in the multilingual mode (ignored otherwise)."""
    a = _asks(w)
    if mode == "explicit":
        return [str(_pick(rng, a["explicit"])) for _ in langs]
    if mode == "paraphrased":
        return [paraphrase(w, rng) for _ in langs]
    if mode == "multilingual":
        return [str(_pick(rng, a["multilingual"][lang])) for lang in langs]
    return ["" for _ in langs]


def wrap(
    w: World, rng: np.random.Generator, mode: ContentMode, tasks: Sequence[str], langs: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Each task with its ask before or after it; returns texts and the prompt languages."""
    asks = ask_sentences(w, rng, mode, langs)
    before = rng.random(len(asks)) < 0.5
    texts = [
        t if not q else (f"{q}\n\n{t}" if b else f"{t}\n\n{q}")
        for t, q, b in zip(tasks, asks, before, strict=True)
    ]
    out_langs = [str(x) for x in langs] if mode == "multilingual" else ["en"] * len(texts)
    return texts, out_langs


def skeleton(
    w: World, rng: np.random.Generator, mode: ContentMode, tag: str, langs: Sequence[str]
) -> tuple[list[str], list[str]]:
    """A campaign's template skeleton (its private tag, a problem, an answer format) with the mode's ask
    in the instruction slot; the skeleton stays whatever the ask says."""
    tpl = w.bank.d["skeletons"][1]
    asks = ask_sentences(w, rng, mode, langs)
    texts = [
        tpl.format(tag=f"{tag}-{int(rng.integers(1000, 9999))}", problem=p, ask=f"{q}\n" if q else "")
        for p, q in zip(w.bank.problems(rng, len(asks), True), asks, strict=True)
    ]
    out_langs = [str(x) for x in langs] if mode == "multilingual" else ["en"] * len(texts)
    return texts, out_langs


@overload
def system_prompt(w: World, rng: np.random.Generator, mode: ContentMode, own: str) -> str: ...
@overload
def system_prompt(w: World, rng: np.random.Generator, mode: ContentMode, own: None) -> str | None: ...
def system_prompt(w: World, rng: np.random.Generator, mode: ContentMode, own: str | None) -> str | None:
    """The campaign's system prompt hash under ``mode``: a new private prompt carrying the ask in the
    system-prompt-only mode; otherwise the family's own (``own``, recorded with a neutral text)."""
    a = _asks(w)
    if mode == "system_prompt_only":
        sp = w.new_id("sp", 8)
        w.system_prompts[sp] = str(_pick(rng, a["system"]))
        return sp
    if own is not None:
        w.system_prompts[own] = str(_pick(rng, a["neutral_system"]))
    return own


def native_tasks(w: World, rng: np.random.Generator, langs: Sequence[str]) -> list[str]:
    """A task per request in its language where the bank has native ones (two in five), else a problem."""
    native: dict[str, list[str]] = w.bank.d["coercion_tasks"]
    return [
        str(_pick(rng, native[lang]))
        if lang in native and rng.random() < 0.4
        else w.bank.problems(rng, 1, True)[0]
        for lang in langs
    ]
