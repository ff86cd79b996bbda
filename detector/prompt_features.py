"""Prompt-structure features: vectorised, multilingual, and prompt text never survives them.

``add_prompt_features(df)`` takes a decoded event batch (``prompt_text``, ``prompt_simhash``,
``prompt_lang``, ``prompt_chars``, ``tools``; see ``detector.schema.EVENT_SCHEMA``), adds the columns in
``PROMPT_FEATURE_SCHEMA`` and drops ``prompt_text``:

- ``cot_elicit``: chain-of-thought elicitation in any language (a "strong" phrase, a coercion phrase, or a
  bare step-by-step phrase together with a reasoning / problem-solving word), including the public
  distillation pipelines' templates (DeepSeek-R1 "Please reason step by step ... \\boxed{}", SkyThought /
  OpenThoughts system prompts inlined in the user turn, ``<think>`` tags).
- ``reasoning_coercion``: the stronger subset that demands the model's own hidden / internal / raw / full
  reasoning trace, verbatim or unsummarised.
- ``rubric_prompt``: the model used as a judge, grader or reward model.
- ``identity_probe``: "which model are you", "who built you", "what is your system prompt".
- ``code_agentic``: code or agentic-task markers in the text, or the request defines tools.
- ``template_fp``: a template-skeleton fingerprint (see ``Template fingerprint`` below).
- ``prompt_simhash64``: the gateway's SimHash parsed from hex.
- ``script``: dominant script of the first ``SCRIPT_CHARS`` characters, else from ``prompt_lang``.
- ``prompt_len``: characters of text, else the gateway's ``prompt_chars``.

How matching stays fast (the replay budget is ~2.5 us per event on 2 cores): only a window of the text is
read (the first ``HEAD_CHARS`` and last ``TAIL_CHARS`` characters: instructions sit before or after the
pasted content). Each marker set is a two-stage match: a prefilter (a case-sensitive literal regex over a
few keyword stems in lower / Capitalised / UPPER form, which the Rust regex engine runs with a SIMD
multi-literal search at several GB/s), then an Aho-Corasick pass over the full phrase list
(``str.contains_any``, ASCII case-insensitive) on the rows the prefilter kept, every other row masked to
null so that the pass costs nothing there. Non-ASCII keywords are only looked for in rows that contain a
non-ASCII character. The marker phrases live in ``detector/data/prompt_markers.json``.

Limits, stated plainly: markers are phrase lists, so paraphrases outside the lists, odd casing of
non-ASCII text, text split across the window gap, obfuscation (homoglyphs, base64, zero-width characters)
and languages without phrases are missed. Honest users also ask for step-by-step reasoning; the flag says
what a prompt does, not who sent it (see ``benchmarks/prompt_signal.py`` for measured rates per source).

Template fingerprint: a stable 64-bit hash (``stable_hash64``, not polars' version-dependent ``hash``)
of one normalised segment of the prompt: the first sentence or line (at most ``SEGMENT_CHARS``
characters; the first 64 characters if there is no delimiter), or the last one when only the last
contains an instruction keyword (a suffix template such as "{problem}\\nReturn your final response within
\\boxed{}"). Normalisation masks digit runs and Capitalised words after the first (slot values such as
names and products) and lower-cases. So prompts that share a prefix or suffix template get one
fingerprint, and unrelated prompts differ unless their first sentences coincide (short greetings do).
Missed: templates whose fixed text sits only in the middle, slots inside the first sentence that are
lower-case words, and suffix templates without any instruction keyword. Without text the fingerprint is
the SimHash's top 16 bits in a reserved namespace (``SIMHASH_FP_TAG``): near-duplicate prompts share it
only when no differing bit falls in those 16, so it is coarse; ``prompt_simhash64`` is kept for a
Hamming-distance comparison downstream.

SimHash-only structure flags: with no text, a flag is True when the SimHash lies within
``SIMHASH_MAX_DISTANCE`` bits of a reference SimHash of a known template (``simhash_references`` in the
marker file), and null otherwise. This only works when the template dominates the prompt's word 3-grams
(a long system prompt inlined before a short problem); a one-sentence CoT suffix after a long problem is
invisible to it. Treat it as weak evidence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from hashlib import blake2b
from importlib import resources
from typing import Final

import numpy as np
import polars as pl
import pyarrow as pa

# ------------------------------------------------------------------------------------------------------
# Tunables (each with its reason)

#: Characters read from the start of the text: instructions and inlined system prompts lead the prompt.
HEAD_CHARS: Final = 600
#: Characters read from the end of the text: suffix instructions ("... put your answer in \\boxed{}").
TAIL_CHARS: Final = 300
#: Characters used to decide the dominant script (a prompt's script shows in its first sentence).
SCRIPT_CHARS: Final = 160
#: Longest template segment, in characters (a template's fixed first/last sentence is short).
SEGMENT_CHARS: Final = 96
#: Fallback segment length when the first/last sentence is longer than SEGMENT_CHARS.
SEGMENT_FALLBACK_CHARS: Final = 64
#: Hamming radius for the SimHash-only flags. Unrelated 64-bit SimHashes differ in ~32 +- 4 bits, so
#: <= 12 is > 5 sd away (chance ~3e-7 per reference); measured in benchmarks/prompt_signal.py.
SIMHASH_MAX_DISTANCE: Final = 12
#: Literals per prefilter regex: the Rust regex crate keeps its SIMD multi-literal search up to ~64.
LITERALS_PER_REGEX: Final = 40
#: Tag in the top 16 bits of a template fingerprint derived from a SimHash ("SH").
SIMHASH_FP_TAG: Final = 0x5348
#: Seed of stable_hash64 (changing it changes every template fingerprint).
STABLE_HASH_SEED: Final = 0x7072_6F6D_7074_6670  # "promptfp"

#: Values of the ``script`` column.
SCRIPTS: Final = ("latin", "cjk", "kana", "hangul", "cyrillic", "arabic", "devanagari", "other")

#: Columns this module adds, with their dtypes.
PROMPT_FEATURE_SCHEMA: Final[Mapping[str, pl.DataType]] = {
    "cot_elicit": pl.Boolean(),
    "reasoning_coercion": pl.Boolean(),
    "rubric_prompt": pl.Boolean(),
    "identity_probe": pl.Boolean(),
    "code_agentic": pl.Boolean(),
    "template_fp": pl.UInt64(),
    "prompt_simhash64": pl.UInt64(),
    "script": pl.String(),
    "prompt_len": pl.Int64(),
}

#: Input columns read (missing ones are treated as all-null).
INPUT_COLUMNS: Final[Mapping[str, pl.DataType]] = {
    "prompt_text": pl.String(),
    "prompt_simhash": pl.String(),
    "prompt_lang": pl.String(),
    "prompt_chars": pl.Int64(),
    "tools": pl.Int64(),
}

_MASK64: Final = (1 << 64) - 1
_TMP = "__pf_"  # prefix of temporary columns

# Primary language subtag -> script (for rows without text, or text without letters).
_LANG_SCRIPT: Final[Mapping[str, str]] = {
    **dict.fromkeys(("zh", "yue", "wuu", "cmn"), "cjk"),
    "ja": "kana",
    "ko": "hangul",
    **dict.fromkeys(("ru", "uk", "be", "bg", "sr", "mk", "kk", "ky", "tg", "mn", "ba", "tt", "cv"), "cyrillic"),
    **dict.fromkeys(("ar", "fa", "ur", "ps", "ug", "ckb", "sd", "arz"), "arabic"),
    **dict.fromkeys(("hi", "mr", "ne", "sa", "kok", "mai", "bho", "new"), "devanagari"),
    **dict.fromkeys(
        (
            "en", "es", "fr", "de", "it", "pt", "nl", "pl", "tr", "vi", "id", "ms", "sv", "da", "no", "nb", "nn",
            "fi", "cs", "sk", "hu", "ro", "ca", "eu", "gl", "eo", "hr", "sl", "lt", "lv", "et", "sq", "af", "sw",
            "tl", "fil", "is", "ga", "cy", "mt", "lb", "bs", "az", "uz", "tk", "ha", "yo", "ig", "zu", "xh", "so",
            "bar", "swg", "la", "oc", "br", "fy", "gd", "jv", "su",
        ),
        "latin",
    ),
}

# Unicode script of the first non-Latin letter -> script value (first match wins; "other" otherwise).
_SCRIPT_CLASSES: Final = (
    ("cyrillic", r"^\p{Cyrillic}"),
    ("arabic", r"^\p{Arabic}"),
    ("devanagari", r"^\p{Devanagari}"),
    ("hangul", r"^\p{Hangul}"),
    ("kana", r"^[\p{Hiragana}\p{Katakana}]"),
    ("cjk", r"^\p{Han}"),
)
_NON_LATIN_LETTER: Final = r"[\p{L}--\p{Latin}]"


# ------------------------------------------------------------------------------------------------------
# Hashes shared with gateways and the simulator

_SIMHASH_TOKEN: Final = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|\w+")


def simhash64(text: str) -> int:
    """The 64-bit SimHash of ``text``, as gateways that do not ship text compute ``prompt.simhash``.

    Tokens are the lower-cased text's ``\\w+`` words, except that each Han ideograph or kana is a token
    of its own (those scripts do not put spaces between words). Shingles are token 3-grams joined by one
    space; a text of one or two tokens is a single shingle; a text without tokens hashes to 0. Each
    shingle is hashed with ``blake2b(digest_size=8)`` read big-endian, and bit ``i`` of the result is set
    when more than half of the shingles have bit ``i`` set. Reference code: one call per prompt, not for
    the detector's hot path (which only parses the gateway's hex).
    """
    tokens = _SIMHASH_TOKEN.findall(text.lower())
    if not tokens:
        return 0
    if len(tokens) < 3:
        shingles = [" ".join(tokens)]
    else:
        shingles = [" ".join(tokens[i : i + 3]) for i in range(len(tokens) - 2)]
    raw = b"".join(blake2b(s.encode("utf-8"), digest_size=8).digest() for s in shingles)
    hashes = np.frombuffer(raw, dtype=">u8").astype(np.uint64)
    bits = (hashes[:, None] >> np.arange(64, dtype=np.uint64)[None, :]) & np.uint64(1)
    votes = 2 * bits.astype(np.int64).sum(axis=0) - len(shingles)
    out = 0
    for i, v in enumerate(votes.tolist()):
        if v > 0:
            out |= 1 << i
    return out


def simhash64_hex(text: str) -> str:
    """``simhash64(text)`` as the contract's 16 lower-case hex digits."""
    return f"{simhash64(text):016x}"


_SM1: Final = 0x9E3779B97F4A7C15
_SM2: Final = 0xBF58476D1CE4E5B9
_SM3: Final = 0x94D049BB133111EB


def _mix_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * _SM2) & _MASK64
    z = ((z ^ (z >> 27)) * _SM3) & _MASK64
    return z ^ (z >> 31)


def stable_hash64(data: bytes) -> int:
    """A 64-bit hash that is the same on every machine and polars version (reference implementation).

    ``h = mix(SEED ^ len)``; then for each 8-byte little-endian word ``w`` (the last one zero-padded),
    ``h = mix(h ^ w)``; ``mix`` is the splitmix64 finaliser. ``_stable_hash_series`` is the vectorised
    twin used on batches; the two must agree (tested).
    """
    h = _mix_int(STABLE_HASH_SEED ^ len(data))
    for k in range(0, len(data), 8):
        h = _mix_int(h ^ int.from_bytes(data[k : k + 8].ljust(8, b"\0"), "little"))
    return h


def _mix_np(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_SM2)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_SM3)
    return z ^ (z >> np.uint64(31))


def _stable_hash_series(s: pl.Series) -> pl.Series:
    """``stable_hash64`` of every UTF-8 value of a String series (nulls stay null), vectorised."""
    n = s.len()
    if n == 0:
        return pl.Series(s.name, [], dtype=pl.UInt64)
    arr = s.rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data_buf = bufs[2]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    data = np.concatenate([data, np.zeros(8, dtype=np.uint8)])  # the last word may read past the end
    starts = offsets[:-1]
    lens = offsets[1:] - starts
    with np.errstate(over="ignore"):
        h = _mix_np(np.uint64(STABLE_HASH_SEED) ^ lens.astype(np.uint64))
        lane = np.arange(8, dtype=np.int64)
        max_len = int(lens.max()) if n else 0
        for k in range(0, max_len, 8):
            rows = np.nonzero(lens > k)[0]
            grab = data[(starts[rows] + k)[:, None] + lane[None, :]]
            grab = np.where(lane[None, :] < (lens[rows] - k)[:, None], grab, 0).astype(np.uint8)
            words = np.ascontiguousarray(grab).view("<u8").ravel().astype(np.uint64)
            h[rows] = _mix_np(h[rows] ^ words)
    out = pl.Series(s.name, h, dtype=pl.UInt64)
    return out.set(s.is_null(), None) if s.null_count() else out  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------
# Marker sets

@dataclass(frozen=True)
class MarkerSet:
    """One compiled marker set: prefilter regexes and the Aho-Corasick phrase list."""

    name: str
    ascii_regexes: tuple[str, ...]
    nonascii_regexes: tuple[str, ...]
    phrases: tuple[str, ...]


@dataclass(frozen=True)
class Markers:
    """Everything compiled from ``prompt_markers.json`` at import."""

    sets: Mapping[str, MarkerSet]
    code_regexes: tuple[str, ...]
    template_regexes: tuple[str, ...]
    simhash_refs: Mapping[str, tuple[int, ...]]  # set name -> reference SimHashes
    version: int


def _case_variants(word: str) -> set[str]:
    return {word, word.lower(), word[:1].upper() + word[1:], word.upper()}


def _literal_regexes(literals: Iterable[str]) -> tuple[str, ...]:
    lits = sorted(set(literals))
    return tuple(
        "|".join(pl.escape_regex(x) for x in lits[i : i + LITERALS_PER_REGEX])
        for i in range(0, len(lits), LITERALS_PER_REGEX)
    )


def _keyword_regexes(keywords: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    variants = {v for k in keywords for v in _case_variants(k)}
    return (
        _literal_regexes(v for v in variants if v.isascii()),
        _literal_regexes(v for v in variants if not v.isascii()),
    )


def _phrase_variants(phrase: str, compounds: Sequence[str]) -> set[str]:
    out = {phrase.lower()}
    for comp in compounds:
        if comp in phrase.lower():
            out |= {p.replace(comp, comp.replace(" ", "-")) for p in out}
    if "'" in phrase:
        out |= {p.replace("'", "\u2019") for p in out}
    if not phrase.isascii():
        out |= {v for p in out for v in _case_variants(p)}
    return out


class MarkerError(ValueError):
    """The marker file is inconsistent (raised at import, naming every problem)."""


def _compile(raw: Mapping[str, object]) -> Markers:
    problems: list[str] = []
    compounds = [str(c) for c in raw.get("compounds", [])]  # type: ignore[attr-defined]
    sets: dict[str, MarkerSet] = {}
    raw_sets = raw["sets"]
    assert isinstance(raw_sets, dict)
    for name, spec in raw_sets.items():
        keywords = [str(k) for k in spec.get("keywords", [])]
        phrases: set[str] = set()
        for lang, plist in spec["phrases"].items():
            for p in plist:
                low = str(p).lower()
                if keywords and not any(k.lower() in low for k in keywords):
                    problems.append(f"sets.{name}.phrases.{lang}: {p!r} contains none of the set's keywords")
                phrases |= _phrase_variants(str(p), compounds)
        asc, nonasc = _keyword_regexes(keywords)
        sets[name] = MarkerSet(name, asc, nonasc, tuple(sorted(phrases)))
    for required in ("cot_strong", "coercion", "step", "reason_word", "rubric", "identity"):
        if required not in sets:
            problems.append(f"sets.{required}: missing")
    refs: dict[str, list[int]] = {}
    for ref in raw.get("simhash_references", []):  # type: ignore[attr-defined]
        for set_name in ref["sets"]:
            if set_name not in sets:
                problems.append(f"simhash_references.{ref['name']}: unknown set {set_name!r}")
            refs.setdefault(set_name, []).append(simhash64(ref["text"]))
    if problems:
        raise MarkerError("prompt_markers.json:\n  " + "\n  ".join(problems))
    code = _literal_regexes(str(x) for x in raw["code_literals"])  # type: ignore[attr-defined]
    tkw = [str(k) for k in raw["template_keywords"]]  # type: ignore[attr-defined]
    tvariants = {v for k in tkw for v in (k, k[:1].upper() + k[1:])}
    return Markers(
        sets=sets,
        code_regexes=code,
        template_regexes=_literal_regexes(tvariants),
        simhash_refs={k: tuple(v) for k, v in refs.items()},
        version=int(raw.get("version", 0)),  # type: ignore[call-overload]
    )


@cache
def markers() -> Markers:
    """The compiled marker sets (loaded once from ``detector/data/prompt_markers.json``)."""
    text = resources.files("detector").joinpath("data/prompt_markers.json").read_text(encoding="utf-8")
    return _compile(json.loads(text))


# ------------------------------------------------------------------------------------------------------
# Expressions

def _any_regex(expr: pl.Expr, regexes: Sequence[str]) -> pl.Expr:
    out: pl.Expr = pl.lit(False)
    for rx in regexes:
        out = out | expr.str.contains(rx)
    return out


def _prefilter(ms: MarkerSet, w: pl.Expr, nonascii: pl.Expr) -> pl.Expr:
    out = _any_regex(w, ms.ascii_regexes)
    if ms.nonascii_regexes:
        out = out | _any_regex(pl.when(nonascii).then(w), ms.nonascii_regexes).fill_null(False)
    return out


def _phrase_match(ms: MarkerSet, w: pl.Expr, gate: pl.Expr) -> pl.Expr:
    masked = pl.when(gate).then(w)
    return masked.str.contains_any(list(ms.phrases), ascii_case_insensitive=True).fill_null(False)


def _normalise_segment(seg: pl.Expr) -> pl.Expr:
    # Digit runs and Capitalised words after the first (slot values: numbers, names, products) -> " #".
    return seg.str.replace_all(r"\s\p{Lu}\S*|\p{N}+", " #").str.to_lowercase().str.strip_chars()


def _lang_script(lang: pl.Expr) -> pl.Expr:
    primary = lang.str.to_lowercase().str.extract(r"^([a-z]{2,3})(?:[-_]|$)")
    return (
        pl.when(lang.is_null())
        .then(pl.lit(None, pl.String))
        .otherwise(primary.replace_strict(dict(_LANG_SCRIPT), default="other", return_dtype=pl.String))
    )


def _col_or_null(df: pl.DataFrame, name: str) -> pl.Expr:
    dtype = INPUT_COLUMNS[name]
    return pl.col(name).cast(dtype) if name in df.columns else pl.lit(None, dtype)


def add_prompt_features(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``PROMPT_FEATURE_SCHEMA``'s columns to an event batch and drop ``prompt_text``.

    Pure and vectorised (no per-row Python). Missing input columns count as null. With text, the boolean
    flags are never null; without text they come from the SimHash (True or null) or are null.
    """
    m = markers()
    t = pl.col(f"{_TMP}text")
    w = pl.col(f"{_TMP}w")
    na = pl.col(f"{_TMP}na")
    h64 = pl.col("prompt_simhash64")
    col = pl.col
    P = _TMP

    base = df.with_columns(
        _col_or_null(df, "prompt_text").alias(f"{P}text"),
        _col_or_null(df, "prompt_simhash")
        .str.to_integer(base=16, dtype=pl.UInt64, strict=False)
        .alias("prompt_simhash64"),
        _col_or_null(df, "prompt_lang").alias(f"{P}lang"),
        _col_or_null(df, "prompt_chars").alias(f"{P}chars"),
        _col_or_null(df, "tools").alias(f"{P}tools"),
    )
    if "prompt_text" in base.columns:
        base = base.drop("prompt_text")

    # Stage 1: the window, the script prefix and the template segments.
    long_text = t.str.len_chars() > HEAD_CHARS + TAIL_CHARS
    head = t.str.head(200)
    tail = t.str.tail(200)
    head_seg = head.str.extract(r"^\s*([^\n]{6," + str(SEGMENT_CHARS) + r"}?(?:[:：。？！?!]|\.\s|\.$|\n|$))")
    tail_seg = (
        tail.str.reverse()
        .str.extract(r"^\s*([.。?？!！:：]?[^\n.。?？!！:：]{6," + str(SEGMENT_CHARS) + r"})")
        .str.reverse()
    )
    s1 = base.with_columns(
        pl.when(long_text)
        .then(pl.concat_str([t.str.head(HEAD_CHARS), t.str.tail(TAIL_CHARS)], separator="\n"))
        .otherwise(t)
        .alias(f"{P}w"),
        t.str.head(SCRIPT_CHARS).alias(f"{P}sp"),
        head_seg.fill_null(head.str.head(SEGMENT_FALLBACK_CHARS)).str.strip_chars().alias(f"{P}hs"),
        tail_seg.fill_null(tail.str.tail(SEGMENT_FALLBACK_CHARS)).str.strip_chars().alias(f"{P}ts"),
    )
    # Stage 2: cheap prefilters and per-row facts.
    sp = col(f"{P}sp")
    s2 = s1.with_columns(
        (w.str.len_bytes() != w.str.len_chars()).alias(f"{P}na"),
        (sp.str.len_bytes() != sp.str.len_chars()).alias(f"{P}spna"),
        sp.str.contains("[A-Za-z]").alias(f"{P}asciil"),
        _any_regex(col(f"{P}hs"), m.template_regexes).alias(f"{P}hkw"),
        _any_regex(col(f"{P}ts"), m.template_regexes).alias(f"{P}tkw"),
        _any_regex(w, m.code_regexes).alias(f"{P}code"),
    )
    prefilters = ("cot_strong", "coercion", "step", "rubric", "identity")
    s3 = s2.with_columns(
        *[_prefilter(m.sets[name], w, na).alias(f"{P}pf_{name}") for name in prefilters],
    )
    # Stage 3: phrase matches on prefiltered rows; script facts on non-ASCII rows.
    spm = pl.when(col(f"{P}spna")).then(sp)
    s4 = s3.with_columns(
        *[_phrase_match(m.sets[name], w, col(f"{P}pf_{name}")).alias(f"{P}m_{name}") for name in prefilters],
        spm.str.extract(f"({_NON_LATIN_LETTER})").alias(f"{P}first"),
        spm.str.count_matches(_NON_LATIN_LETTER).alias(f"{P}nl"),
        spm.str.count_matches(r"\p{Latin}").alias(f"{P}lat"),
        spm.str.contains(r"[\p{Hiragana}\p{Katakana}]").alias(f"{P}kana"),
    )
    # Stage 4: reasoning words where a bare step-by-step phrase was found; script; template segment.
    first = col(f"{P}first")
    first_class: pl.Expr = pl.lit("other")
    for name, rx in reversed(_SCRIPT_CLASSES):
        first_class = pl.when(first.str.contains(rx)).then(pl.lit(name)).otherwise(first_class)
    wide = first.str.contains(r"^[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")
    nonlatin_wins = col(f"{P}nl") * pl.when(wide).then(2).otherwise(1) >= col(f"{P}lat")
    first_class = (
        pl.when(first_class.is_in(["cjk", "kana"]))
        .then(pl.when(col(f"{P}kana")).then(pl.lit("kana")).otherwise(pl.lit("cjk")))
        .otherwise(first_class)
    )
    detected = (
        pl.when(first.is_not_null() & nonlatin_wins)
        .then(first_class)
        .when(col(f"{P}asciil") | col(f"{P}lat").fill_null(0).gt(0) | first.is_not_null())
        .then(pl.lit("latin"))
        .otherwise(pl.lit(None, pl.String))
    )
    lang_script = _lang_script(col(f"{P}lang"))
    use_tail = col(f"{P}tkw") & ~col(f"{P}hkw")
    seg = pl.when(use_tail).then(pl.concat_str([pl.lit("t\x1f"), _normalise_segment(col(f"{P}ts"))])).otherwise(
        pl.concat_str([pl.lit("h\x1f"), _normalise_segment(col(f"{P}hs"))])
    )
    s5 = s4.with_columns(
        _phrase_match(m.sets["reason_word"], w, col(f"{P}m_step")).alias(f"{P}m_reason"),
        pl.when(t.is_null())
        .then(lang_script)
        .otherwise(detected.fill_null(lang_script).fill_null(pl.lit("other")))
        .alias("script"),
        seg.alias(f"{P}seg"),
    )

    # Stage 5: assemble the flags (text first, SimHash fallback second).
    has_text = t.is_not_null()
    tools = col(f"{P}tools").fill_null(0) > 0

    def near(set_names: Sequence[str]) -> pl.Expr:
        refs = [r for s in set_names for r in m.simhash_refs.get(s, ())]
        if not refs:
            return pl.lit(False)
        return pl.any_horizontal(
            [(h64 ^ pl.lit(r, pl.UInt64)).bitwise_count_ones() <= SIMHASH_MAX_DISTANCE for r in refs]
        ).fill_null(False)

    def flag(from_text: pl.Expr, from_simhash: pl.Expr) -> pl.Expr:
        return pl.when(has_text).then(from_text).when(from_simhash).then(True).otherwise(pl.lit(None, pl.Boolean))

    mt = {name: col(f"{P}m_{name}") for name in prefilters}
    cot_text = mt["cot_strong"] | mt["coercion"] | (mt["step"] & col(f"{P}m_reason"))
    fp_from_simhash = (h64 // (1 << 48)) | pl.lit(SIMHASH_FP_TAG << 48, pl.UInt64)
    out = s5.with_columns(
        flag(cot_text, near(["cot_strong", "coercion"])).alias("cot_elicit"),
        flag(mt["coercion"], near(["coercion"])).alias("reasoning_coercion"),
        flag(mt["rubric"], near(["rubric"])).alias("rubric_prompt"),
        flag(mt["identity"], near(["identity"])).alias("identity_probe"),
        flag(col(f"{P}code") | tools, tools).alias("code_agentic"),
        pl.when(has_text)
        .then(t.str.len_chars().cast(pl.Int64))
        .otherwise(col(f"{P}chars"))
        .alias("prompt_len"),
        pl.when(has_text).then(pl.lit(None, pl.UInt64)).otherwise(fp_from_simhash).alias("template_fp"),
    )
    seg_hash = _stable_hash_series(out.get_column(f"{P}seg"))
    out = out.with_columns(pl.coalesce(seg_hash, pl.col("template_fp")).alias("template_fp"))
    return out.drop([c for c in out.columns if c.startswith(_TMP)])
