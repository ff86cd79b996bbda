"""Turn generated blocks into contract events: sort, derive gateway-side fields, build the nested frame."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from detector.lab.simulate.block import I64, Block, Obj
from detector.lab.simulate.simhash import simhash64_hex_many
from detector.lab.simulate.world import World

TS_FMT = "%Y-%m-%dT%H:%M:%S%.3fZ"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CJK = {"zh", "ja", "ko"}
_MS_PER_TOKEN = (6.0, 12.0, 20.0)
_NEW_MS_PER_TOKEN = 16.0


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with milliseconds and 'Z' (the same text as ``TS_FMT``)."""
    dt = _EPOCH + timedelta(milliseconds=int(ms))
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def _account_col(values: list[object], acct: I64) -> Obj:
    arr = np.empty(len(values), dtype=np.object_)
    arr[:] = values
    out: Obj = arr[acct]
    return out


def _pick_from_lists(rng: np.random.Generator, lists: list[list[str]], acct: I64) -> Obj:
    """For each request, one element of its account's list, uniformly."""
    counts = np.array([len(x) for x in lists], dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    flat = np.empty(int(counts.sum()), dtype=np.object_)
    flat[:] = [v for x in lists for v in x]
    pick = offsets[acct] + (rng.random(acct.shape[0]) * counts[acct]).astype(np.int64)
    out: Obj = flat[pick]
    return out


def _request_ids(rng: np.random.Generator, n: int) -> list[str]:
    ids = rng.integers(0, 2**63 - 1, n, dtype=np.int64)
    while np.unique(ids).shape[0] < n:
        _, first = np.unique(ids, return_index=True)
        dup = np.setdiff1d(np.arange(n), first)
        ids[dup] = rng.integers(0, 2**63 - 1, dup.shape[0], dtype=np.int64)
    return [f"req_{int(x):016x}" for x in ids]


def select_rows(w: World, block: Block) -> Block:
    """Requests inside the run, in time order (stable, so ties keep generation order)."""
    inside = (block.ts >= w.start_ms) & (block.ts < w.end_ms)
    b = block.take(np.flatnonzero(inside))
    return b.take(np.argsort(b.ts, kind="stable"))


def text_free_accounts(w: World, seen: I64, *stream: str) -> set[int]:
    """The accounts (a ``text_free_fraction`` of those seen) whose gateway ships only the SimHash."""
    rng = w.rng("text_free", *stream)
    k = round(w.params.text_free_fraction * seen.shape[0])
    return {int(x) for x in rng.choice(seen, size=k, replace=False)} if k else set()


def _usage(w: World, rng: np.random.Generator, b: Block, chars: I64, status: I64) -> dict[str, np.ndarray]:
    n = len(b)
    ok = status == 200
    cpt = np.array([1.5 if lang in _CJK else 3.8 for lang in b.lang])
    has_sys = np.array([h is not None for h in b.sys_hash])
    inp = np.ceil(chars / cpt) + 350 * has_sys + (b.turns - 1) // 2 * b.history + 140 * b.tools
    inp = np.maximum(inp * rng.uniform(0.95, 1.05, n), 1).astype(np.int64)
    cap = np.where(b.max_tokens < 0, 4096, b.max_tokens)
    per = np.exp(rng.normal(np.log(np.maximum(b.out_median, 1.0)), 0.55))
    clipped = per >= cap
    per = np.minimum(per, cap)
    refusal = rng.random(n) < b.refusal_p
    per = np.where(refusal, rng.uniform(40, 150, n), per)
    clipped &= ~refusal
    out = np.maximum(np.round(per * b.n), 1).astype(np.int64)
    reasoning = np.round(out * rng.uniform(0.45, 0.85, n)).astype(np.int64)
    tool = (rng.random(n) < b.tool_stop) & ~clipped & ~refusal
    chat = np.array(
        [
            str(e) == "/v1/chat/completions"
            for e in _account_col([a.client.endpoint for a in w.accounts], b.acct)
        ]
    )
    stop = np.where(
        clipped,
        np.where(chat, "length", "max_tokens"),
        np.where(tool, np.where(chat, "tool_calls", "tool_use"), np.where(chat, "stop", "end_turn")),
    )
    speed = np.array(
        [
            _MS_PER_TOKEN[min(w.base_models.index(m), 2)] if m in w.base_models else _NEW_MS_PER_TOKEN
            for m in b.model
        ]
    )
    latency = np.where(
        ok,
        rng.uniform(250, 1200, n) + inp / 50.0 + out * speed * rng.uniform(0.8, 1.25, n),
        np.where(status == 429, rng.uniform(3, 40, n), rng.uniform(50, 30000, n)),
    )
    return {
        "input": np.where(ok, inp, 0),
        "output": np.where(ok, out, 0),
        "reasoning": np.where(ok & b.thinking, reasoning, -1),
        "stop": stop.astype(np.object_),
        "refusal": refusal & ok,
        "latency": np.round(latency, 1),
    }


def _null_if_negative(name: str) -> pl.Expr:
    return pl.when(pl.col(name) < 0).then(None).otherwise(pl.col(name)).alias(name)


def build_frame(w: World, b: Block, text_free: set[int], *stream: str) -> pl.DataFrame:
    """The nested event frame, columns and struct fields in the contract's order (``stream``: the
    random stream's extra keys, for rows assembled apart from the others)."""
    rng = w.rng("assemble", *stream)
    n = len(b)
    acct = b.acct
    accounts = w.accounts
    u = rng.random(n)
    status = np.where(u < b.throttle, 429, np.where(u < b.throttle + w.params.server_error_rate, 500, 200))
    chars = np.array([len(t) for t in b.text], dtype=np.int64)
    use = _usage(w, rng, b, chars, status)
    free = np.array([int(a) in text_free for a in acct], dtype=np.bool_)
    text = b.text.copy()
    text[free] = None
    free_idx = np.flatnonzero(free)
    simhash = np.full(n, None, dtype=np.object_)
    simhash[free_idx] = simhash64_hex_many(str(t) for t in b.text[free_idx])
    ok = status == 200
    created = [iso_ms(a.created_ms) for a in accounts]

    cols: dict[str, object] = {
        "ts_ms": b.ts,
        "request_id": _request_ids(rng, n),
        "account_id": _account_col([a.account_id for a in accounts], acct),
        "org_id": _account_col([a.org_id for a in accounts], acct),
        "api_key_id": _pick_from_lists(rng, [a.api_keys for a in accounts], acct),
        "model": b.model,
        "endpoint": _account_col([a.client.endpoint for a in accounts], acct),
        "status": status,
        "latency_ms": use["latency"],
        "ip": _pick_from_lists(rng, [a.ips for a in accounts], acct),
        "user_agent": _account_col([a.client.user_agent for a in accounts], acct),
        "tls_fingerprint": _account_col([a.client.tls for a in accounts], acct),
        "sdk": _account_col([a.client.sdk for a in accounts], acct),
        "created_at": _account_col(list(created), acct),
        "payment_fingerprint": _account_col([a.payment for a in accounts], acct),
        "billing_country": _account_col([a.country for a in accounts], acct),
        "tier": _account_col([a.tier for a in accounts], acct),
        "verified": _account_col([a.verified for a in accounts], acct),
        "reseller_id": _account_col([a.reseller_id for a in accounts], acct),
        "temperature": b.temperature,
        "top_p": b.top_p,
        "n": b.n,
        "stream": b.stream,
        "tools": b.tools,
        "thinking": b.thinking,
        "system_prompt_hash": b.sys_hash,
        "text": text,
        "turns": b.turns,
        "chars": chars,
        "simhash": simhash,
        "lang": b.lang,
        "stop_reason": use["stop"],
        "refusal": use["refusal"],
        "has_reasoning": ok & b.thinking,
        "max_tokens": b.max_tokens,
        "top_logprobs": b.top_logprobs,
        "reasoning_tokens": use["reasoning"],
        "input_tokens": use["input"],
        "output_tokens": use["output"],
        "logprobs_raw": b.logprobs,
        "ok": ok,
    }
    data = {
        k: v.tolist() if isinstance(v, np.ndarray) and v.dtype == np.object_ else v for k, v in cols.items()
    }
    df = pl.DataFrame(
        data,
        schema_overrides={
            "verified": pl.Boolean,
            "org_id": pl.String,
            "system_prompt_hash": pl.String,
            "text": pl.String,
            "simhash": pl.String,
            "payment_fingerprint": pl.String,
            "reseller_id": pl.String,
            "sdk": pl.String,
            "user_agent": pl.String,
            "tls_fingerprint": pl.String,
            "lang": pl.String,
        },
    )
    df = df.with_columns(
        *[pl.col(c).fill_nan(None) for c in ("temperature", "top_p")],
        *[_null_if_negative(c) for c in ("max_tokens", "top_logprobs", "reasoning_tokens")],
        pl.when(pl.col("logprobs_raw") < 0)
        .then(None)
        .otherwise(pl.col("logprobs_raw") > 0)
        .alias("logprobs"),
    )
    resp = pl.struct("stop_reason", "refusal", "has_reasoning")
    return df.select(
        pl.lit(1, pl.Int64).alias("schema_version"),
        "request_id",
        pl.from_epoch("ts_ms", "ms").dt.strftime(TS_FMT).alias("ts"),
        "account_id",
        "org_id",
        "api_key_id",
        "model",
        "endpoint",
        "status",
        "latency_ms",
        pl.struct(pl.col("ip"), "user_agent", "tls_fingerprint", "sdk").alias("client"),
        pl.struct(
            "created_at", "payment_fingerprint", "billing_country", "tier", "verified", "reseller_id"
        ).alias("account"),
        pl.struct("input_tokens", "output_tokens", "reasoning_tokens").alias("usage"),
        pl.struct(
            "max_tokens",
            "temperature",
            "top_p",
            "n",
            "stream",
            "logprobs",
            "top_logprobs",
            "tools",
            "thinking",
            "system_prompt_hash",
        ).alias("params"),
        pl.struct("text", "turns", "chars", "simhash", "lang").alias("prompt"),
        pl.when("ok").then(resp).otherwise(None).alias("response"),
    )
