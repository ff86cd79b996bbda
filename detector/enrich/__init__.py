"""Enrichment: pure column derivations on a decoded batch. Prompt text is dropped here.

The one enrichment path, for replay and the daemon alike: ``enrich`` (called by ``Engine.enrich``
and ``Engine.process``) = ``enrich_prompt`` (prompt-structure features; the text is dropped) + IP
intelligence + request flags. ``enrich_prompt`` needs no state, so the daemon runs it ahead of the
engine in its decoding workers; ``enrich`` then keeps what it finds done.
"""

from __future__ import annotations

import polars as pl

from detector.enrich.ipintel import IpIntel, add_ip_columns
from detector.enrich.prompt.hashing import TextKey
from detector.enrich.prompt_features import PROMPT_FEATURE_SCHEMA, add_prompt_features

#: max_tokens at or above this counts as "near the maximum" (frontier APIs cap output at 8k-128k).
MAX_TOKENS_HIGH = 8000
#: A request defining this many tools or more is tool-heavy (agentic harnesses send dozens).
TOOLS_HEAVY = 5
#: A conversation with this many turns or more is a long multi-turn (agentic) session.
LONG_SESSION_TURNS = 8


def request_flags() -> list[pl.Expr]:
    """Per-request booleans the window features count (nulls count as false)."""
    c = pl.col
    return [
        (c("logprobs").fill_null(False) | (c("top_logprobs").fill_null(0) > 0)).alias("is_logprob"),
        (c("n").fill_null(1) > 1).alias("is_n_gt1"),
        c("thinking").fill_null(False).alias("is_thinking"),
        (c("temperature") == 0).fill_null(False).alias("is_temp0"),
        (c("max_tokens").fill_null(0) >= MAX_TOKENS_HIGH).alias("is_max_tokens_high"),
        (c("tools").fill_null(0) >= TOOLS_HEAVY).alias("is_tools_heavy"),
        (c("prompt_turns").fill_null(0) >= LONG_SESSION_TURNS).alias("is_long_session"),
        (
            c("is_datacenter").fill_null(False)
            | c("is_vpn").fill_null(False)
            | c("is_proxy").fill_null(False)
            | c("is_tor").fill_null(False)
        ).alias("is_hosted_ip"),
        ((c("ts") - c("account_created_at")).dt.total_seconds() / 86400.0).alias("account_age_days"),
    ]


def enrich_prompt(events: pl.DataFrame, text_key: TextKey | None = None) -> pl.DataFrame:
    """The stateless first stage: prompt-structure features, ``prompt_text`` dropped; ``text_fp`` under
    the deployment's secret ``text_key`` when one is set.

    A batch that already has them (text gone, every feature column there) is returned as it is.
    """
    done = "prompt_text" not in events.columns and all(c in events.columns for c in PROMPT_FEATURE_SCHEMA)
    return events if done else add_prompt_features(events, text_key)


def enrich(events: pl.DataFrame, intel: IpIntel | None, text_key: TextKey | None = None) -> pl.DataFrame:
    """Add IP, prompt-structure and request-parameter columns; drop ``prompt_text``.

    Prompt features already computed (the daemon's decoding workers do that, text gone, under the same
    ``text_key``) are kept.
    """
    out = enrich_prompt(events, text_key)
    out = add_ip_columns(out, intel)
    out = out.with_columns(request_flags())
    if "prompt_text" in out.columns:  # belt and braces: prompt text never leaves enrichment
        out = out.drop("prompt_text")
    return out
