"""Prompt-structure features: vectorised, multilingual, and prompt text never survives them.

``add_prompt_features(df)`` takes a decoded event batch (``prompt_text``, ``prompt_simhash``,
``prompt_lang``, ``prompt_chars``, ``tools``; see ``detector.schema.EVENT_SCHEMA``), adds the columns of
``PROMPT_FEATURE_SCHEMA`` and drops ``prompt_text``:

- ``cot_elicit``: chain-of-thought elicitation in any language: a listed phrase ("think step by step",
  "explain your reasoning", "show your work", ``<think>`` tags, "razona paso a paso", "思维链", the public
  distillation templates such as DeepSeek-R1's "Please reason step by step ... \\boxed{}" or an inlined
  SkyThought system prompt), a reasoning-trace coercion, or a bare step-by-step phrase together with a
  reasoning / problem-solving word ("solve ... step by step", "Löse ... Schritt für Schritt"; a
  "step-by-step guide to installing X" does not count).
- ``reasoning_coercion``: the stronger subset demanding the model's own hidden / internal / raw / full
  reasoning trace, verbatim or unsummarised: a listed phrase, or a strong qualifier ("hidden", "verbatim",
  "внутренний", "oculta", ...) and a reasoning-trace noun in one sentence.
- ``rubric_prompt``: the model used as a judge, grader or reward model.
- ``identity_probe``: "which model are you", "who built you", "what is your system prompt" and the like.
- ``code_agentic``: code or agentic-task markers in the text, or the request defines tools.
- ``template_fp``: a template-skeleton fingerprint (see below).
- ``text_fp``: the text's ``stable_hash64`` (a long text's read window), else the gateway's SimHash;
  under the deployment's secret key (``TextKey``) when one is set.
- ``prompt_simhash64``: the gateway's SimHash parsed from hex (null when absent or malformed).
- ``script``: the dominant script of the first ``SCRIPT_CHARS`` characters (one of ``SCRIPTS``); from
  ``prompt_lang`` when there is no text, or no letter in it.
- ``prompt_len``: characters of text, else the gateway's ``prompt_chars``.

The marker phrases live in ``detector/data/prompt_markers.json`` (see ``detector.enrich.prompt.markers``).

How it stays fast (its share of the replay budget is ~2.5 us per event on 2 cores). Everything is per
batch, never per row. A text longer than ``LONG_TEXT_CHARS`` is read only at its first ``HEAD_CHARS`` and
last ``TAIL_CHARS`` characters; rubric, identity and code markers only in the first ``META_CHARS``.
Matching is two-stage. Dense: one regex per group of case-sensitive literal fragments ("easoning" for
reasoning/Reasoning), which the Rust regex engine runs with a SIMD multi-literal search. Sparse: only the
rows a prefilter kept are gathered, matched against the group's phrase alternations (a few thousand
literals) and scattered back, so the costly pass follows the hit rate, not the batch size; the individual
sets, the coercion pairs, the reasoning words and the template's last segment run only on rows that
matched. Non-ASCII work is done only for texts with at least ``NONASCII_MIN_EXTRA_BYTES`` of non-ASCII
bytes. Large batches are split over the polars threads (``PARALLEL_MIN_ROWS``).

Limits, stated plainly. Markers are phrase lists: paraphrases outside them, Title Case phrases (beyond
the written, lower, Sentence and UPPER cases), text split across the head/tail gap, obfuscation
(homoglyphs, base64, zero-width characters) and languages without phrases are missed. A non-ASCII phrase
whose only fragments are non-ASCII is missed in a text with fewer than ``NONASCII_MIN_EXTRA_BYTES``
non-ASCII bytes. Honest users ask for step-by-step reasoning too: a flag says what a prompt does, not who
sent it (``benchmarks/prompt_signal.py`` measures the rates per source and language).

Template fingerprint: ``template_fingerprint`` (``stable_hash64``, identical on every machine and polars
version, unlike polars' ``hash``) of one segment of the prompt with its ASCII digits removed (ids, counts,
prices and dates are the usual slots). The segment is the first sentence or line within the first
``SEGMENT_CHARS`` characters: up to the first newline, ``:``, ``?``, ``!``, ``。``, ``？``, ``！`` or ". "
when that lies at least ``SEGMENT_MIN_BYTES`` bytes in (so "Hi!" or "Q:" alone do not make a fingerprint),
else those ``SEGMENT_CHARS`` characters. When the prompt carries a marker, the first segment holds no
instruction keyword and the last sentence does, the last sentence is used instead (a suffix template
such as "{problem}\\nReturn your final response within \\boxed{}"). So prompts sharing a prefix template,
or a marked suffix template, share a fingerprint, and unrelated prompts differ unless their first
sentences coincide (short greetings such as "Hello, how are you?" do). Missed: templates whose fixed text
sits only in the middle, slots inside the first sentence other than digits (names, products), and
unmarked suffix templates. Without text the fingerprint is the SimHash's top 16 bits under the tag
``SIMHASH_FP_TAG``: near-duplicate prompts share it only when none of their differing bits falls in
those 16, so it is coarse; ``prompt_simhash64`` is kept for a Hamming-distance comparison downstream.

SimHash-only flags: without text, a flag is True when the SimHash lies within ``SIMHASH_MAX_DISTANCE``
bits of a reference SimHash of a known template (``simhash_references`` in the marker file), and null
otherwise. A SimHash stays close only when the template dominates the prompt's word 3-grams (a long
system prompt inlined before a short problem); a one-sentence CoT suffix after a long problem is invisible
to it. Weak evidence; measured in ``benchmarks/prompt_signal.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import polars as pl

from detector.enrich.prompt.exprs import (
    any_regex,
    byte_prefix,
    byte_suffix,
    col_or_null,
    first_script,
    gated,
    phrase_match,
    script_of_lang,
    simhash_template,
    sparse,
)
from detector.enrich.prompt.hashing import (
    SUFFIX_SIDE_SALT,
    TextKey,
    simhash64,
    simhash64_hex,
    stable_hash64,
    stable_hash_series,
    template_fingerprint,
)
from detector.enrich.prompt.markers import (
    REASONING_SETS,
    MarkerError,
    Markers,
    PhraseSet,
    compile_markers,
    markers,
)
from detector.enrich.prompt.tables import (
    FIRST_DELIMITER,
    HEAD_CHARS,
    INPUT_COLUMNS,
    LAST_SENTENCE,
    LETTERLESS_MAX_BYTES,
    LONG_TEXT_CHARS,
    META_CHARS,
    NON_LATIN_LETTER,
    NONASCII_MIN_EXTRA_BYTES,
    PARALLEL_MIN_ROWS,
    PROMPT_FEATURE_SCHEMA,
    SCRIPT_CHARS,
    SCRIPTS,
    SEGMENT_CHARS,
    SEGMENT_MIN_BYTES,
    SIMHASH_FP_TAG,
    SIMHASH_MAX_DISTANCE,
    TAIL_CHARS,
    TAIL_SEGMENT_FALLBACK_CHARS,
    TMP,
)

#: The tunables and tables live in ``prompt/tables.py`` and the expression builders in ``prompt/exprs.py``;
#: ``SCRIPTS``, ``PROMPT_FEATURE_SCHEMA`` and ``INPUT_COLUMNS`` are imported from here too.
__all__ = [
    "INPUT_COLUMNS",
    "PROMPT_FEATURE_SCHEMA",
    "SCRIPTS",
    "SIMHASH_FP_TAG",
    "MarkerError",
    "add_prompt_features",
    "compile_markers",
    "markers",
    "simhash64",
    "simhash64_hex",
    "stable_hash64",
    "stable_hash_series",
    "template_fingerprint",
]

# ------------------------------------------------------------------------------------------------------
# The features


def add_prompt_features(df: pl.DataFrame, text_key: TextKey | None = None) -> pl.DataFrame:
    """Add ``PROMPT_FEATURE_SCHEMA``'s columns to an event batch and drop ``prompt_text``.

    ``text_key``: the deployment's secret key; ``text_fp`` is then keyed (``TextKey.series``), else public.

    Pure and vectorised per batch (no per-row Python). Missing input columns count as null. With text the
    five flags are never null; without text they come from the SimHash (True) or from ``tools``
    (``code_agentic``), and are null otherwise. A batch of at least ``2 * PARALLEL_MIN_ROWS`` rows is cut
    into one slice per polars thread, run on a small thread pool: the sparse steps and the hashing are
    sequential stretches that a single batch cannot spread over the cores.
    """
    parts = min(pl.thread_pool_size(), df.height // PARALLEL_MIN_ROWS)
    if parts <= 1:
        return _add_prompt_features(df, text_key)
    step = -(-df.height // parts)
    slices = [df.slice(i * step, step) for i in range(parts)]
    done = _pool().map(_add_prompt_features, slices, [text_key] * parts)
    return pl.concat(list(done), how="vertical", rechunk=False)


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=pl.thread_pool_size(), thread_name_prefix="prompt-features")


def _add_prompt_features(df: pl.DataFrame, text_key: TextKey | None = None) -> pl.DataFrame:
    m = markers()
    col, P = pl.col, TMP
    t, w, h6, hp = col(f"{P}text"), col(f"{P}w"), col(f"{P}h6"), col(f"{P}hp")
    na = col(f"{P}extra") > 0  # the text has a non-ASCII character
    reasoning = m.reasoning
    groups = list(m.prefilters.values())

    frame = df.with_columns(
        col_or_null(df, "prompt_text").alias(f"{P}text"),
        col_or_null(df, "prompt_simhash")
        .str.to_integer(base=16, dtype=pl.UInt64, strict=False)
        .alias("prompt_simhash64"),
        col_or_null(df, "prompt_lang").alias(f"{P}lang"),
        col_or_null(df, "prompt_chars").alias(f"{P}chars"),
        col_or_null(df, "tools").alias(f"{P}tools"),
    )
    if "prompt_text" in frame.columns:
        frame = frame.drop("prompt_text")

    def get(name: str) -> pl.Series:
        return frame.get_column(name)

    # 1. Dense: the window (only long texts are cut), the prefixes, the first segment (digits removed).
    is_long = t.str.len_chars() > LONG_TEXT_CHARS
    long_text = gated(t, is_long)
    frame = frame.with_columns(
        pl.when(is_long)
        .then(pl.concat_str([long_text.str.head(HEAD_CHARS), long_text.str.tail(TAIL_CHARS)], separator="\n"))
        .otherwise(t)
        .alias(f"{P}w"),
        t.str.head(META_CHARS).alias(f"{P}h6"),
        t.str.head(SEGMENT_CHARS).str.replace_all("[0-9]+", "").alias(f"{P}hp"),
    )
    # 2. Dense: prefilters and code markers, the count of non-ASCII bytes, where the first segment ends.
    hend = hp.str.find(FIRST_DELIMITER)
    frame = frame.with_columns(
        (w.str.len_bytes() - w.str.len_chars()).alias(f"{P}extra"),
        *[any_regex(w if g is reasoning else h6, g.regexes).alias(f"{P}pf_{g.name}") for g in groups],
        any_regex(h6, m.code_ascii).alias(f"{P}code"),
        pl.when(hend >= SEGMENT_MIN_BYTES).then(hend).otherwise(hp.str.len_bytes()).alias(f"{P}hlen"),
    )
    # 3. Sparse, texts with non-ASCII bytes: non-ASCII fragments and code words, the prefix's first
    #    non-Latin letter and whether its script dominates the prefix (the UTF-8 bytes beyond one per
    #    character, doubled, reach the prefix's length: Cyrillic/Arabic/Greek letters (2 bytes) match its
    #    ASCII characters in number, or Han/kana/Hangul/Devanagari (3 bytes, about a word each) are a third).
    sp = t.str.head(SCRIPT_CHARS)
    frame = frame.with_columns(
        sparse(
            frame,
            get(f"{P}extra") >= NONASCII_MIN_EXTRA_BYTES,
            [
                *[
                    any_regex(w, g.nonascii_regexes).alias(f"{P}pfn_{g.name}")
                    for g in groups
                    if g.nonascii_regexes
                ],
                any_regex(h6, m.code_nonascii).alias(f"{P}coden"),
                sp.str.extract(f"({NON_LATIN_LETTER})").alias(f"{P}first"),
                (2 * (sp.str.len_bytes() - sp.str.len_chars()) >= sp.str.len_chars()).alias(f"{P}dominant"),
            ],
        )
    )
    short = frame.select(t.str.len_bytes() <= LETTERLESS_MAX_BYTES).to_series()
    frame = frame.with_columns(
        sparse(
            frame, get(f"{P}first").is_not_null(), [first_script(col(f"{P}first"), sp).alias(f"{P}fclass")]
        )
        + sparse(frame, short, [t.str.contains("[A-Za-z]").alias(f"{P}letter")])
    )
    # 4. Sparse, rows a group's prefilter kept: one pass over the union of the group's phrases. ASCII
    #    phrases run where the ASCII prefilter hit; non-ASCII ones where that or the group's non-ASCII
    #    prefilter hit or, for a group without non-ASCII fragments, where the prefix has a non-Latin letter.
    for g in groups:
        ascii_pf = col(f"{P}pf_{g.name}")
        if g.nonascii_regexes:
            other_pf, other_rows = col(f"{P}pfn_{g.name}"), get(f"{P}pfn_{g.name}")
        else:
            other_pf, other_rows = col(f"{P}first").is_not_null(), get(f"{P}first").is_not_null()
        phrases = PhraseSet.union(g.name, (m.sets[s] for s in g.sets))
        text = w if g is reasoning else h6
        match = phrase_match(phrases, text, ascii_pf, (ascii_pf | other_pf) & na)
        frame = frame.with_columns(
            sparse(frame, get(f"{P}pf_{g.name}") | other_rows, [match.alias(f"{P}g_{g.name}")])
        )
    # 5. Sparse, rows where a group's union matched: its sets one by one ("strong": cot_strong or coercion)
    #    and the coercion pairs; then reasoning words where only a bare step phrase matched; for marked rows,
    #    whether the first segment holds an instruction keyword, and where it does not, the last sentence
    #    (a suffix template) and whether that one does.
    yes = pl.lit(True)
    strong_set = PhraseSet.union("strong", (m.sets["cot_strong"], m.sets["coercion"]))
    reasoning_exprs = [
        phrase_match(ps, w, yes, na).alias(f"{P}m_{ps.name}")
        for ps in (strong_set, m.sets["coercion"], m.sets["step"])
    ]
    pair = w.str.contains(m.coercion_pair) if m.coercion_pair else pl.lit(False)
    reasoning_exprs.append(pair.alias(f"{P}m_pair"))
    new: list[pl.Series] = []
    for g in groups:
        exprs = (
            reasoning_exprs
            if g is reasoning
            else [phrase_match(m.sets[s], h6, yes, na).alias(f"{P}m_{s}") for s in g.sets]
        )
        new += sparse(frame, get(f"{P}g_{g.name}"), exprs)
    frame = frame.with_columns(new)

    def has_template_keyword(seg: pl.Expr) -> pl.Expr:
        return any_regex(seg, m.template_ascii) | any_regex(gated(seg, na), m.template_nonascii)

    strong = get(f"{P}m_strong") | get(f"{P}m_pair")
    marked = strong | get(f"{P}m_step") | get(f"{P}m_rubric") | get(f"{P}m_identity")
    frame = frame.with_columns(
        sparse(
            frame,
            get(f"{P}m_step") & ~strong,
            [phrase_match(m.sets["reason_word"], w, yes, na).alias(f"{P}m_reason_word")],
        )
        + sparse(frame, marked, [has_template_keyword(byte_prefix(hp, col(f"{P}hlen"))).alias(f"{P}hkw")])
    )
    tp = t.str.tail(SEGMENT_CHARS + 24)
    tstart = tp.str.find(LAST_SENTENCE)
    ts = (
        pl.when(tstart.is_not_null())
        .then(byte_suffix(tp, tstart))
        .otherwise(tp.str.tail(TAIL_SEGMENT_FALLBACK_CHARS))
        .str.replace_all("[0-9]+", "")
    )
    frame = frame.with_columns(
        sparse(
            frame,
            marked & ~get(f"{P}hkw"),
            [has_template_keyword(ts).alias(f"{P}suffix"), ts.alias(f"{P}ts")],
        )
    )
    return _assemble(frame, m, text_key)


def _assemble(frame: pl.DataFrame, m: Markers, text_key: TextKey | None) -> pl.DataFrame:
    """The output columns: from the text where there is one, else from the SimHash, tools and lang."""
    col, P = pl.col, TMP
    t = col(f"{P}text")
    has_text = t.is_not_null()
    h64 = col("prompt_simhash64")
    tools = col(f"{P}tools").fill_null(0) > 0
    simhash_only = bool(frame.select((t.is_null() & h64.is_not_null()).any()).item())

    def near(set_names: Sequence[str]) -> pl.Expr:
        refs = [r for s in set_names for r in m.simhash_refs.get(s, ())]
        if not refs or not simhash_only:
            return pl.lit(False)
        dist = [(h64 ^ pl.lit(r, pl.UInt64)).bitwise_count_ones() <= SIMHASH_MAX_DISTANCE for r in refs]
        return pl.any_horizontal(dist).fill_null(False)

    def flag(from_text: pl.Expr, from_simhash: pl.Expr) -> pl.Expr:
        return (
            pl.when(has_text)
            .then(from_text)
            .when(from_simhash)
            .then(True)
            .otherwise(pl.lit(None, pl.Boolean))
        )

    m_of = {
        s: col(f"{P}m_{s}")
        for s in (*REASONING_SETS[1:], "reason_word", "rubric", "identity", "strong", "pair")
    }
    cot = m_of["strong"] | m_of["pair"] | (m_of["step"] & m_of["reason_word"])
    fclass = col(f"{P}fclass")
    detected = (
        pl.when(fclass.is_not_null() & col(f"{P}dominant"))
        .then(fclass)
        .when(col(f"{P}letter") | fclass.is_not_null() | (t.str.len_bytes() > LETTERLESS_MAX_BYTES))
        .then(pl.lit("latin"))
        .otherwise(pl.lit(None, pl.String))
    )
    lang_script = script_of_lang(col(f"{P}lang"))
    out = frame.with_columns(
        flag(cot, near(["cot_strong", "coercion"])).alias("cot_elicit"),
        flag(m_of["coercion"] | m_of["pair"], near(["coercion"])).alias("reasoning_coercion"),
        flag(m_of["rubric"], near(["rubric"])).alias("rubric_prompt"),
        flag(m_of["identity"], near(["identity"])).alias("identity_probe"),
        flag(col(f"{P}code") | col(f"{P}coden") | tools, tools).alias("code_agentic"),
        pl.when(has_text)
        .then(t.str.len_chars().cast(pl.Int64))
        .otherwise(col(f"{P}chars"))
        .alias("prompt_len"),
        pl.when(has_text)
        .then(detected.fill_null(lang_script).fill_null(pl.lit("other")))
        .otherwise(lang_script)
        .alias("script"),
    )
    suffix = col(f"{P}suffix")
    head_hash = stable_hash_series(out.get_column(f"{P}hp"), out.get_column(f"{P}hlen"))
    tail_hash = stable_hash_series(out.select(pl.when(suffix).then(col(f"{P}ts"))).to_series())
    fp_from_simhash = simhash_template(h64)
    out = out.with_columns(
        pl.when(has_text)
        .then(pl.when(suffix).then(tail_hash ^ pl.lit(SUFFIX_SIDE_SALT, pl.UInt64)).otherwise(head_hash))
        .otherwise(fp_from_simhash)
        .alias("template_fp"),
        pl.when(has_text).then(stable_hash_series(out.get_column(f"{P}w"))).otherwise(h64).alias("text_fp"),
    )
    if text_key is not None:  # the public hash never leaves this function when a key is set
        out = out.with_columns(text_key.series(out.get_column("text_fp")))
    return out.drop([c for c in out.columns if c.startswith(TMP)])
