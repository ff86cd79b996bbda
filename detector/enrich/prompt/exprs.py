"""Expression builders of the prompt-structure features: regex alternations, gating, phrase-set matches,
byte slices, the script of a prefix or a language tag, and the sparse gather-compute-scatter step.
Pure functions of polars expressions and frames; ``detector.enrich.prompt_features`` strings them into
the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from detector.enrich.prompt.markers import PhraseSet
from detector.enrich.prompt.tables import (
    INPUT_COLUMNS,
    KANA_CHARS,
    LANG_SCRIPT,
    SCRIPT_CLASSES,
    SIMHASH_FP_TAG,
)


def any_regex(expr: pl.Expr, regexes: Sequence[str]) -> pl.Expr:
    out: pl.Expr | None = None
    for rx in regexes:
        hit = expr.str.contains(rx)
        out = hit if out is None else out | hit
    return pl.lit(False) if out is None else out


def gated(expr: pl.Expr, gate: pl.Expr) -> pl.Expr:
    """``expr`` where ``gate`` holds, else the empty string.

    String kernels run over every value, null or not, so masking with null saves nothing; the empty string
    costs next to nothing (and no marker regex matches it).
    """
    return pl.when(gate).then(expr).otherwise(pl.lit(""))


def phrase_match(ps: PhraseSet, text: pl.Expr, ascii_gate: pl.Expr, nonascii_gate: pl.Expr) -> pl.Expr:
    """Phrase hits: ASCII phrases where ``ascii_gate`` holds, the others where ``nonascii_gate`` does."""
    hit: pl.Expr = pl.lit(False)
    if ps.ascii_regex:
        hit = hit | gated(text, ascii_gate).str.contains(ps.ascii_regex).fill_null(False)
    if ps.nonascii_regex:
        hit = hit | gated(text, nonascii_gate).str.contains(ps.nonascii_regex).fill_null(False)
    return hit


def byte_prefix(text: pl.Expr, nbytes: pl.Expr) -> pl.Expr:
    """The first ``nbytes`` bytes of ``text`` (a char boundary, as ``str.find`` offsets are)."""
    return text.cast(pl.Binary).bin.slice(0, nbytes).cast(pl.String)


def byte_suffix(text: pl.Expr, start: pl.Expr) -> pl.Expr:
    return text.cast(pl.Binary).bin.slice(start).cast(pl.String)


def first_script(first: pl.Expr, prefix: pl.Expr) -> pl.Expr:
    """The script of a prefix's first non-Latin letter (kana for Han when the prefix has kana too)."""
    out: pl.Expr = pl.lit("other")
    for name, rx in reversed(SCRIPT_CLASSES):
        out = pl.when(first.str.contains(rx)).then(pl.lit(name)).otherwise(out)
    has_kana = prefix.str.head(KANA_CHARS).str.contains(r"[\p{Hiragana}\p{Katakana}]")
    return (
        pl.when(out.is_in(["cjk", "kana"]))
        .then(pl.when(has_kana).then(pl.lit("kana")).otherwise(pl.lit("cjk")))
        .otherwise(out)
    )


def script_of_lang(lang: pl.Expr) -> pl.Expr:
    primary = lang.str.to_lowercase().str.extract(r"^([a-z]{2,3})(?:[-_]|$)")
    return (
        pl.when(lang.is_null())
        .then(pl.lit(None, pl.String))
        .otherwise(primary.replace_strict(dict(LANG_SCRIPT), default="other", return_dtype=pl.String))
    )


def col_or_null(df: pl.DataFrame, name: str) -> pl.Expr:
    dtype = INPUT_COLUMNS[name]
    return pl.col(name).cast(dtype) if name in df.columns else pl.lit(None, dtype)


def sparse(frame: pl.DataFrame, gate: pl.Series, exprs: Sequence[pl.Expr]) -> list[pl.Series]:
    """Evaluate ``exprs`` on the rows where ``gate`` holds; elsewhere False (booleans) or null.

    The rows are gathered, computed and scattered back, so the cost follows the gated rows only.
    """
    n = frame.height
    idx = gate.fill_null(False).arg_true()
    needed = sorted({r for e in exprs for r in e.meta.root_names()})
    sub = frame.select(pl.col(needed).gather(idx))
    res = sub.with_columns(exprs).select([e.meta.output_name() for e in exprs])
    out: list[pl.Series] = []
    for s in res.iter_columns():
        if s.dtype == pl.Boolean:
            full = pl.Series(s.name, np.zeros(n, dtype=np.bool_))
        else:
            full = pl.repeat(None, n, dtype=s.dtype, eager=True).alias(s.name)
        out.append(full.scatter(idx, s) if idx.len() else full)
    return out


def simhash_template(h64: pl.Expr) -> pl.Expr:
    """The template fingerprint of a request with no text: its SimHash's (``h64``) top 16 bits under
    ``SIMHASH_FP_TAG``. ``window/hashspace.py`` recognises a SimHash-only request by it."""
    return (h64 // (1 << 48)) | pl.lit(SIMHASH_FP_TAG << 48, pl.UInt64)
