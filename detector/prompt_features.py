"""Prompt-structure features: vectorised, multilingual, and prompt text never survives them.

``add_prompt_features(df)`` takes a decoded event batch (``prompt_text``, ``prompt_simhash``,
``prompt_lang``, ``prompt_chars``, ``tools``; see ``detector.schema.EVENT_SCHEMA``), adds the columns in
``PROMPT_FEATURE_SCHEMA`` and drops ``prompt_text``:

- ``cot_elicit``: chain-of-thought elicitation in any language: a "strong" phrase ("think step by step",
  "explain your reasoning", "show your work", ``<think>`` tags, "razona paso a paso", "思维链", the public
  distillation templates such as DeepSeek-R1's "Please reason step by step ... \\boxed{}" or an inlined
  SkyThought system prompt), a coercion phrase, or a bare step-by-step phrase together with a reasoning /
  problem-solving word ("solve ... step by step", "Löse ... Schritt für Schritt"; a "step-by-step guide to
  installing X" is not).
- ``reasoning_coercion``: the stronger subset that demands the model's own hidden / internal / raw / full
  reasoning trace, verbatim or unsummarised.
- ``rubric_prompt``: the model used as a judge, grader or reward model.
- ``identity_probe``: "which model are you", "who built you", "what is your system prompt".
- ``code_agentic``: code or agentic-task markers in the text, or the request defines tools.
- ``template_fp``: a template-skeleton fingerprint (see "Template fingerprint" below).
- ``prompt_simhash64``: the gateway's SimHash parsed from hex (null when absent or malformed).
- ``script``: dominant script of the first ``SCRIPT_CHARS`` characters (one of ``SCRIPTS``), else from
  ``prompt_lang``.
- ``prompt_len``: characters of text, else the gateway's ``prompt_chars``.

How it stays fast (the replay's budget for this step is ~2.5 us per event on 2 cores): a text longer than
``HEAD_CHARS + TAIL_CHARS`` is read only at its start and end (instructions sit before or after the
pasted content). Each marker set is matched in two stages: a prefilter (a few case-sensitive literal
fragments, e.g. "easoning" for reasoning/Reasoning, searched by the Rust regex engine's SIMD multi-literal
search at several GB/s) and then an Aho-Corasick pass over the set's full phrase list
(``str.contains_any``, ASCII case-insensitive) only on the rows the prefilter kept; every other row is
masked to null, which costs nothing. Prefilter fragments with non-ASCII characters are only searched in
rows that contain a non-ASCII character. The reasoning sets share one prefilter and one Aho-Corasick pass
over their union; the individual sets run only where that union matched. The phrases and fragments live
in ``detector/data/prompt_markers.json`` and are checked at import (every phrase, in lower and in Sentence
case, must contain a fragment of its group; ``MarkerError`` lists every violation).

Limits, stated plainly: markers are phrase lists, so paraphrases outside the lists, ALL-CAPS or Title Case
text beyond the few upper-case fragments, text split across the head/tail gap, obfuscation (homoglyphs,
base64, zero-width characters) and languages without phrases are missed. Honest users also ask for
step-by-step reasoning; a flag says what a prompt does, not who sent it (``benchmarks/prompt_signal.py``
reports measured rates per source and language).

Template fingerprint: ``stable_hash64`` (the same on every machine and polars version, unlike polars'
``hash``) of one normalised segment of the prompt. The segment is the first sentence or line (ended by a
newline, ``:``, ``?``, ``!``, ``。`` or ". " at or after character 16, at most ``SEGMENT_CHARS`` characters;
otherwise the first ``SEGMENT_FALLBACK_CHARS`` characters). When the prompt carries a marker and only its
last sentence (not the first) holds an instruction keyword, the last sentence is used instead (suffix
templates such as "{problem}\\nReturn your final response within \\boxed{}"). Normalisation turns digit
runs and Capitalised words after the first into "#", so slot values such as ids, numbers, names and
products do not change the fingerprint. Equal for prompts that share a prefix template (or a marked
suffix template); different for unrelated prompts unless their first sentences coincide (short greetings
such as "Hi! How are you?" do). Missed: templates whose fixed text is only in the middle, lower-case slot
words inside the first sentence, and unmarked suffix templates. Without text the fingerprint is the
SimHash's top 16 bits under the tag ``SIMHASH_FP_TAG``: near-duplicate prompts share it only when none of
their differing bits falls in those 16, so it is coarse; ``prompt_simhash64`` is kept for a proper
Hamming-distance comparison downstream.

SimHash-only flags: without text, a flag is True when the SimHash lies within ``SIMHASH_MAX_DISTANCE``
bits of a reference SimHash of a known template (``simhash_references`` in the marker file) and null
otherwise. SimHash only stays close when the template dominates the prompt's word 3-grams (a long system
prompt inlined before a short problem); a one-sentence CoT suffix after a long problem is invisible to it.
Treat it as weak evidence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from hashlib import blake2b
from importlib import resources
from typing import Any, Final

import numpy as np
import polars as pl
import pyarrow as pa

# ------------------------------------------------------------------------------------------------------
# Tunables (each with its reason)

#: Characters read from the start of a long text: instructions and inlined system prompts lead the prompt.
HEAD_CHARS: Final = 600
#: Characters read from the end of a long text: suffix instructions ("... your answer in \\boxed{}").
TAIL_CHARS: Final = 300
#: Characters that decide the dominant script (a prompt's script shows in its first sentence).
SCRIPT_CHARS: Final = 160
#: Longest template segment in characters (a template's fixed first or last sentence is short).
SEGMENT_CHARS: Final = 96
#: A first segment ends at the first delimiter at or after this character (so "Q:" or "Hi!" do not end it).
SEGMENT_MIN_CHARS: Final = 16
#: Segment length when the first or last sentence is longer than SEGMENT_CHARS.
SEGMENT_FALLBACK_CHARS: Final = 64
#: Hamming radius for SimHash-only flags. Unrelated 64-bit SimHashes differ in ~32 +- 4 bits, so <= 12 is
#: 5 sd away (~3e-7 per reference by chance); benchmarks/prompt_signal.py measures it on real prompts.
SIMHASH_MAX_DISTANCE: Final = 12
#: Literals per prefilter regex: the Rust regex engine's SIMD literal search (Teddy) degrades beyond ~24-32.
LITERALS_PER_REGEX: Final = 24
#: Tag in the top 16 bits of a template fingerprint derived from a SimHash ("SH").
SIMHASH_FP_TAG: Final = 0x5348
#: Seed of stable_hash64; changing it changes every template fingerprint (allow-lists key on them).
STABLE_HASH_SEED: Final = 0x7072_6F6D_7074_6670  # "promptfp"
#: XORed into the fingerprint of a last-sentence (suffix) segment, so the two sides never collide.
SUFFIX_SIDE_SALT: Final = 0x5355_4646_4958_5F5F  # "SUFFIX__"

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

#: Input columns read (a missing one counts as all-null).
INPUT_COLUMNS: Final[Mapping[str, pl.DataType]] = {
    "prompt_text": pl.String(),
    "prompt_simhash": pl.String(),
    "prompt_lang": pl.String(),
    "prompt_chars": pl.Int64(),
    "tools": pl.Int64(),
}

_MASK64: Final = (1 << 64) - 1
_TMP: Final = "__pf_"  # prefix of temporary columns
_REASONING_SETS: Final = ("cot_strong", "coercion", "step")
_REQUIRED_SETS: Final = (*_REASONING_SETS, "reason_word", "rubric", "identity")
_DELIM_HEAD: Final = r"[\n:：。？！?!]|\.\s|\.$"
_TAIL_SEGMENT: Final = r"[^\n.。?？!！:：]{6," + str(SEGMENT_CHARS) + r"}[.。?？!！:：]?\s*$"

# Primary language subtag -> script (rows without text, or text without letters).
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

    Tokens are the lower-cased text's ``\\w+`` words, except that each Han ideograph or kana is a token of
    its own (those scripts do not put spaces between words). Shingles are token 3-grams joined by one space;
    a text of one or two tokens is a single shingle; a text without tokens hashes to 0. Each shingle is
    hashed with ``blake2b(digest_size=8)`` read big-endian, and bit ``i`` of the result is set when more
    than half of the shingles have bit ``i`` set. Reference code, one call per prompt: the detector's hot
    path only parses the gateway's hex.
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


_SM2: Final = 0xBF58476D1CE4E5B9
_SM3: Final = 0x94D049BB133111EB


def _mix_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * _SM2) & _MASK64
    z = ((z ^ (z >> 27)) * _SM3) & _MASK64
    return z ^ (z >> 31)


def stable_hash64(data: bytes) -> int:
    """A 64-bit hash that is the same on every machine and polars version (reference implementation).

    ``h = mix(SEED ^ len)``; then for each 8-byte little-endian word ``w`` (the last one zero-padded),
    ``h = mix(h ^ w)``; ``mix`` is the splitmix64 finaliser. The batch code uses a vectorised twin; the
    two agree (tested).
    """
    h = _mix_int(STABLE_HASH_SEED ^ len(data))
    for k in range(0, len(data), 8):
        h = _mix_int(h ^ int.from_bytes(data[k : k + 8].ljust(8, b"\0"), "little"))
    return h


def _mix_np(z: np.ndarray[Any, np.dtype[np.uint64]]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_SM2)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_SM3)
    return z ^ (z >> np.uint64(31))


def stable_hash_series(s: pl.Series) -> pl.Series:
    """``stable_hash64`` of the UTF-8 bytes of every value of a String series (nulls stay null)."""
    n = s.len()
    if n == 0:
        return pl.Series(s.name, [], dtype=pl.UInt64)
    arr = s.rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]  # type: ignore[arg-type]
    raw = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    data = np.concatenate([raw, np.zeros(8, dtype=np.uint8)])  # the last word may read past the end
    starts = offsets[:-1]
    lens = offsets[1:] - starts
    lane = np.arange(8, dtype=np.int64)
    with np.errstate(over="ignore"):
        h = _mix_np(np.uint64(STABLE_HASH_SEED) ^ lens.astype(np.uint64))
        for k in range(0, int(lens.max()), 8):
            rows = np.nonzero(lens > k)[0]
            grab = data[(starts[rows] + k)[:, None] + lane[None, :]]
            grab = np.where(lane[None, :] < (lens[rows] - k)[:, None], grab, 0).astype(np.uint8)
            words = np.ascontiguousarray(grab).view("<u8").ravel().astype(np.uint64)
            h[rows] = _mix_np(h[rows] ^ words)
    out = pl.Series(s.name, h, dtype=pl.UInt64)
    if s.null_count():
        out = pl.select(pl.when(s.is_null()).then(None).otherwise(out)).to_series().alias(s.name)
    return out


# ------------------------------------------------------------------------------------------------------
# Marker sets

@dataclass(frozen=True)
class Prefilter:
    """A prefilter group: literal regexes (ASCII ones run on every row, the others on non-ASCII rows)."""

    name: str
    sets: tuple[str, ...]
    ascii_regexes: tuple[str, ...]
    nonascii_regexes: tuple[str, ...]


@dataclass(frozen=True)
class Markers:
    """Everything compiled from ``prompt_markers.json`` (once, at first use)."""

    phrases: Mapping[str, tuple[str, ...]]  # set name -> Aho-Corasick patterns (lower-case + variants)
    prefilters: Mapping[str, Prefilter]
    code_ascii: tuple[str, ...]
    code_nonascii: tuple[str, ...]
    template_ascii: tuple[str, ...]
    template_nonascii: tuple[str, ...]
    simhash_refs: Mapping[str, tuple[int, ...]]  # set name -> reference SimHashes
    version: int


class MarkerError(ValueError):
    """The marker file is inconsistent (names every problem at once)."""


def _literal_regexes(literals: Iterable[str]) -> tuple[str, ...]:
    lits = sorted(set(literals))
    return tuple(
        "|".join(pl.escape_regex(x) for x in lits[i : i + LITERALS_PER_REGEX])
        for i in range(0, len(lits), LITERALS_PER_REGEX)
    )


def _split_regexes(literals: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    lits = set(literals)
    return _literal_regexes(x for x in lits if x.isascii()), _literal_regexes(x for x in lits if not x.isascii())


def _phrase_variants(phrase: str, compounds: Sequence[str]) -> set[str]:
    out = {phrase.lower()}
    for comp in compounds:
        if comp in phrase.lower():
            out |= {p.replace(comp, comp.replace(" ", "-")) for p in out}
    if "'" in phrase:
        out |= {p.replace("'", "\u2019") for p in out}
    if not phrase.isascii():
        out |= {v for p in out for v in (p, p[:1].upper() + p[1:], p.upper())}
    return out


def _sentence_case(p: str) -> str:
    return p[:1].upper() + p[1:]


def compile_markers(raw: Mapping[str, Any]) -> Markers:
    """Compile a parsed marker file; raise ``MarkerError`` listing every inconsistency."""
    problems: list[str] = []
    compounds = [str(c) for c in raw.get("compounds", [])]
    phrases: dict[str, tuple[str, ...]] = {}
    originals: dict[str, list[tuple[str, str]]] = {}
    for name, spec in raw["sets"].items():
        pats: set[str] = set()
        originals[name] = []
        for lang, plist in spec["phrases"].items():
            for p in plist:
                originals[name].append((lang, str(p)))
                pats |= _phrase_variants(str(p), compounds)
        phrases[name] = tuple(sorted(pats))
    problems += [f"sets.{s}: missing" for s in _REQUIRED_SETS if s not in phrases]
    prefilters: dict[str, Prefilter] = {}
    fed: dict[str, str] = {}
    for gname, g in raw["prefilters"].items():
        keywords = [str(k) for k in g["keywords"]]
        for set_name in g["sets"]:
            if set_name not in phrases:
                problems.append(f"prefilters.{gname}: unknown set {set_name!r}")
                continue
            fed[set_name] = gname
            for lang, p in originals[set_name]:
                for form in (p.lower(), _sentence_case(p.lower())):
                    if not any(k in form for k in keywords):
                        problems.append(f"sets.{set_name}.phrases.{lang}: {form!r} contains no fragment of "
                                        f"prefilter {gname!r}")
        asc, nonasc = _split_regexes(keywords)
        prefilters[gname] = Prefilter(gname, tuple(g["sets"]), asc, nonasc)
    problems += [f"sets.{s}: no prefilter feeds it" for s in _REQUIRED_SETS
                 if s != "reason_word" and s in phrases and s not in fed]
    if fed.get("cot_strong") != fed.get("coercion") or fed.get("cot_strong") != fed.get("step"):
        problems.append("prefilters: cot_strong, coercion and step must share one prefilter group")
    refs: dict[str, list[int]] = {}
    for ref in raw.get("simhash_references", []):
        for set_name in ref["sets"]:
            if set_name not in phrases:
                problems.append(f"simhash_references.{ref['name']}: unknown set {set_name!r}")
            refs.setdefault(set_name, []).append(simhash64(ref["text"]))
    if problems:
        raise MarkerError("prompt_markers.json:\n  " + "\n  ".join(problems))
    code_ascii, code_nonascii = _split_regexes(str(x) for x in raw["code_literals"])
    tmpl_ascii, tmpl_nonascii = _split_regexes(str(x) for x in raw["template_keywords"])
    return Markers(
        phrases=phrases,
        prefilters=prefilters,
        code_ascii=code_ascii,
        code_nonascii=code_nonascii,
        template_ascii=tmpl_ascii,
        template_nonascii=tmpl_nonascii,
        simhash_refs={k: tuple(v) for k, v in refs.items()},
        version=int(raw.get("version", 0)),
    )


def load_marker_file() -> dict[str, Any]:
    """The parsed ``detector/data/prompt_markers.json``."""
    text = resources.files("detector").joinpath("data/prompt_markers.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def markers() -> Markers:
    """The compiled marker sets (loaded once)."""
    return compile_markers(load_marker_file())


# ------------------------------------------------------------------------------------------------------
# Expressions

def _any_regex(expr: pl.Expr, regexes: Sequence[str]) -> pl.Expr:
    out: pl.Expr | None = None
    for rx in regexes:
        hit = expr.str.contains(rx)
        out = hit if out is None else out | hit
    return pl.lit(False) if out is None else out


def _gated_any_regex(expr: pl.Expr, regexes: Sequence[str], gate: pl.Expr) -> pl.Expr:
    if not regexes:
        return pl.lit(False)
    return _any_regex(pl.when(gate).then(expr), regexes).fill_null(False)


def _phrase_match(patterns: Sequence[str], text: pl.Expr, gate: pl.Expr) -> pl.Expr:
    masked = pl.when(gate).then(text)
    return masked.str.contains_any(list(patterns), ascii_case_insensitive=True).fill_null(False)


def _normalise_segment(seg: pl.Expr) -> pl.Expr:
    # Capitalised words after the first and digit runs (slot values: ids, numbers, names, products) -> " #".
    return seg.str.replace_all(r"\s\p{Lu}\S*|\p{N}+", " #").str.strip_chars()


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


def _byte_prefix(text: pl.Expr, nbytes: pl.Expr) -> pl.Expr:
    """The first ``nbytes`` bytes of ``text`` (a char boundary, as ``str.find`` offsets are)."""
    return text.cast(pl.Binary).bin.slice(0, nbytes).cast(pl.String)


def _byte_suffix(text: pl.Expr, start: pl.Expr) -> pl.Expr:
    return text.cast(pl.Binary).bin.slice(start).cast(pl.String)


def add_prompt_features(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``PROMPT_FEATURE_SCHEMA``'s columns to an event batch and drop ``prompt_text``.

    Pure and vectorised (no per-row Python). Missing input columns count as null. With text the five flags
    are never null; without text they come from the SimHash (True) or ``tools`` (``code_agentic``), and are
    null otherwise.
    """
    m = markers()
    P = _TMP
    col = pl.col
    t, w, na = col(f"{P}text"), col(f"{P}w"), col(f"{P}na")

    base = df.with_columns(
        _col_or_null(df, "prompt_text").alias(f"{P}text"),
        _col_or_null(df, "prompt_simhash").str.to_integer(base=16, dtype=pl.UInt64, strict=False)
        .alias("prompt_simhash64"),
        _col_or_null(df, "prompt_lang").alias(f"{P}lang"),
        _col_or_null(df, "prompt_chars").alias(f"{P}chars"),
        _col_or_null(df, "tools").alias(f"{P}tools"),
    )
    if "prompt_text" in base.columns:
        base = base.drop("prompt_text")

    # 1. The window (only long texts are cut), the script prefix, the first-segment delimiter.
    long_text = pl.when(t.str.len_chars() > HEAD_CHARS + TAIL_CHARS).then(t)
    hp = t.str.head(SEGMENT_CHARS)
    s1 = base.with_columns(
        pl.concat_str([long_text.str.head(HEAD_CHARS), long_text.str.tail(TAIL_CHARS)], separator="\n")
        .fill_null(t).alias(f"{P}w"),
        t.str.head(SCRIPT_CHARS).alias(f"{P}sp"),
        (hp.str.slice(SEGMENT_MIN_CHARS).str.find(_DELIM_HEAD) + hp.str.head(SEGMENT_MIN_CHARS).str.len_bytes())
        .alias(f"{P}hend"),
    )
    # 2. ASCII prefilters, code markers, non-ASCII facts, the first segment.
    sp = col(f"{P}sp")
    s2 = s1.with_columns(
        (w.str.len_bytes() != w.str.len_chars()).alias(f"{P}na"),
        (sp.str.len_bytes() != sp.str.len_chars()).alias(f"{P}spna"),
        sp.str.contains("[A-Za-z]").alias(f"{P}asciil"),
        *[_any_regex(w, g.ascii_regexes).alias(f"{P}pfa_{g.name}") for g in m.prefilters.values()],
        _any_regex(w, m.code_ascii).alias(f"{P}codea"),
        _normalise_segment(
            pl.when(col(f"{P}hend").is_not_null())
            .then(_byte_prefix(t, col(f"{P}hend")))
            .otherwise(t.str.head(SEGMENT_FALLBACK_CHARS))
        ).alias(f"{P}hs"),
    )
    # 3. Non-ASCII prefilters (non-ASCII rows only) and script facts.
    spm = pl.when(col(f"{P}spna")).then(sp)
    s3 = s2.with_columns(
        *[
            (col(f"{P}pfa_{g.name}") | _gated_any_regex(w, g.nonascii_regexes, na)).alias(f"{P}pf_{g.name}")
            for g in m.prefilters.values()
        ],
        (col(f"{P}codea") | _gated_any_regex(w, m.code_nonascii, na)).alias(f"{P}code"),
        spm.str.extract(f"({_NON_LATIN_LETTER})").alias(f"{P}first"),
        spm.str.count_matches(_NON_LATIN_LETTER).alias(f"{P}nl"),
        spm.str.count_matches(r"\p{Latin}").alias(f"{P}lat"),
        spm.str.contains(r"[\p{Hiragana}\p{Katakana}]").alias(f"{P}kana"),
    )
    # 4. Phrase matches: the reasoning union, rubric, identity.
    reasoning_group = next(g for g in m.prefilters.values() if "cot_strong" in g.sets)
    union = sorted({p for s in _REASONING_SETS for p in m.phrases[s]})
    group_exprs = [
        _phrase_match(union, w, col(f"{P}pf_{reasoning_group.name}")).alias(f"{P}m_reasoning"),
        *[
            _phrase_match(m.phrases[s], w, col(f"{P}pf_{g.name}")).alias(f"{P}m_{s}")
            for g in m.prefilters.values() if g is not reasoning_group for s in g.sets
        ],
    ]
    s4 = s3.with_columns(group_exprs)
    # 5. Individual reasoning sets where the union matched; the last segment of marked prompts.
    mr = col(f"{P}m_reasoning")
    marked = mr | col(f"{P}m_rubric") | col(f"{P}m_identity")
    tp = pl.when(marked).then(t).str.tail(SEGMENT_CHARS + 24)
    tstart = tp.str.find(_TAIL_SEGMENT)
    s5 = s4.with_columns(
        *[_phrase_match(m.phrases[s], w, mr).alias(f"{P}m_{s}") for s in _REASONING_SETS],
        pl.when(tstart.is_not_null()).then(_byte_suffix(tp, tstart)).otherwise(tp.str.tail(SEGMENT_FALLBACK_CHARS))
        .alias(f"{P}ts"),
    )
    # 6. Reasoning words where a bare step phrase matched; side of the template segment; script.
    ts = col(f"{P}ts")
    hs = col(f"{P}hs")

    def has_template_keyword(seg: pl.Expr) -> pl.Expr:
        return _gated_any_regex(seg, m.template_ascii, marked) | _gated_any_regex(
            seg, m.template_nonascii, marked & col(f"{P}spna")
        )

    first = col(f"{P}first")
    first_class: pl.Expr = pl.lit("other")
    for name, rx in reversed(_SCRIPT_CLASSES):
        first_class = pl.when(first.str.contains(rx)).then(pl.lit(name)).otherwise(first_class)
    first_class = (
        pl.when(first_class.is_in(["cjk", "kana"]))
        .then(pl.when(col(f"{P}kana")).then(pl.lit("kana")).otherwise(pl.lit("cjk")))
        .otherwise(first_class)
    )
    wide = first.str.contains(r"^[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")
    nonlatin_wins = col(f"{P}nl") * pl.when(wide).then(2).otherwise(1) >= col(f"{P}lat")
    detected = (
        pl.when(first.is_not_null() & nonlatin_wins)
        .then(first_class)
        .when(col(f"{P}asciil") | (col(f"{P}lat").fill_null(0) > 0) | first.is_not_null())
        .then(pl.lit("latin"))
        .otherwise(pl.lit(None, pl.String))
    )
    lang_script = _lang_script(col(f"{P}lang"))
    s6 = s5.with_columns(
        _phrase_match(m.phrases["reason_word"], w, col(f"{P}m_step")).alias(f"{P}m_reason_word"),
        (marked & has_template_keyword(ts) & ~has_template_keyword(hs)).alias(f"{P}suffix"),
        pl.when(t.is_null())
        .then(lang_script)
        .otherwise(detected.fill_null(lang_script).fill_null(pl.lit("other")))
        .alias("script"),
    )

    # 7. Assemble: text first, SimHash / tools second.
    has_text = t.is_not_null()
    h64 = col("prompt_simhash64")
    tools = col(f"{P}tools").fill_null(0) > 0

    def near(set_names: Sequence[str]) -> pl.Expr:
        refs = [r for s in set_names for r in m.simhash_refs.get(s, ())]
        if not refs:
            return pl.lit(False)
        dist = [(h64 ^ pl.lit(r, pl.UInt64)).bitwise_count_ones() <= SIMHASH_MAX_DISTANCE for r in refs]
        return pl.any_horizontal(dist).fill_null(False)

    def flag(from_text: pl.Expr, from_simhash: pl.Expr) -> pl.Expr:
        return pl.when(has_text).then(from_text).when(from_simhash).then(True).otherwise(pl.lit(None, pl.Boolean))

    mt = {s: col(f"{P}m_{s}") for s in _REQUIRED_SETS}
    cot_text = mt["cot_strong"] | mt["coercion"] | (mt["step"] & mt["reason_word"])
    suffix = col(f"{P}suffix")
    out = s6.with_columns(
        flag(cot_text, near(["cot_strong", "coercion"])).alias("cot_elicit"),
        flag(mt["coercion"], near(["coercion"])).alias("reasoning_coercion"),
        flag(mt["rubric"], near(["rubric"])).alias("rubric_prompt"),
        flag(mt["identity"], near(["identity"])).alias("identity_probe"),
        flag(col(f"{P}code") | tools, tools).alias("code_agentic"),
        pl.when(has_text).then(t.str.len_chars().cast(pl.Int64)).otherwise(col(f"{P}chars")).alias("prompt_len"),
        pl.when(suffix).then(_normalise_segment(ts)).otherwise(hs).alias(f"{P}seg"),
    )
    seg_hash = stable_hash_series(out.get_column(f"{P}seg"))
    fp_from_simhash = (h64 // (1 << 48)) | pl.lit(SIMHASH_FP_TAG << 48, pl.UInt64)
    out = out.with_columns(
        pl.when(has_text)
        .then(pl.when(suffix).then(seg_hash ^ pl.lit(SUFFIX_SIDE_SALT, pl.UInt64)).otherwise(seg_hash))
        .otherwise(fp_from_simhash)
        .alias("template_fp")
    )
    return out.drop([c for c in out.columns if c.startswith(_TMP)])
