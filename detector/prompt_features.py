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
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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
HEAD_CHARS: Final = 1000
#: Characters read from the end of a long text: suffix instructions ("... your answer in \\boxed{}").
TAIL_CHARS: Final = 500
#: Characters that decide the dominant script (a prompt's script shows in its first sentence).
SCRIPT_CHARS: Final = 160
#: Non-ASCII work (non-ASCII fragments, script) is done for texts whose UTF-8 bytes exceed their characters
#: by at least this much: two Han/kana/Hangul characters or four Cyrillic/accented letters. Any non-ASCII
#: marker phrase has that many; English with a curly apostrophe (2 extra bytes) is spared the work.
NONASCII_MIN_EXTRA_BYTES: Final = 4
#: Kana are looked for in the first this many characters (Japanese text shows kana within a sentence).
KANA_CHARS: Final = 60
#: Longest template segment in characters (a template's fixed first or last sentence is short).
SEGMENT_CHARS: Final = 96
#: A first segment ends at the first delimiter at or after this character (so "Q:" or "Hi!" do not end it).
SEGMENT_MIN_CHARS: Final = 6
#: Rubric, identity and code markers are looked for in the first this many characters (they sit in the
#: instruction that opens a prompt; scanning less keeps the hot path within budget).
META_CHARS: Final = 300
#: Segment length when the first or last sentence is longer than SEGMENT_CHARS.
SEGMENT_FALLBACK_CHARS: Final = 64
#: A coercion qualifier and a reasoning-trace noun count as a pair at most this many characters apart.
PAIR_GAP_CHARS: Final = 48
#: Hamming radius for SimHash-only flags. Unrelated 64-bit SimHashes differ in ~32 +- 4 bits, so <= 12 is
#: 5 sd away (~3e-7 per reference by chance); benchmarks/prompt_signal.py measures it on real prompts.
SIMHASH_MAX_DISTANCE: Final = 12
#: Literals per ASCII prefilter regex. Each regex call costs ~0.15 us per row whatever its size, so a group
#: is one regex; one- or two-byte literals ruin the SIMD literal search and get a regex of their own.
LITERALS_PER_REGEX: Final = 100
#: Literals per non-ASCII prefilter regex (multi-byte literals: bigger regexes measured faster).
NONASCII_LITERALS_PER_REGEX: Final = 100
#: Texts longer than this are only read at their first HEAD_CHARS and last TAIL_CHARS characters.
LONG_TEXT_CHARS: Final = 1500
#: Batches are cut into parallel slices of at least this many rows
#: (below it, slicing costs more than it saves).
PARALLEL_MIN_ROWS: Final = 8192
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
#: What ends the first sentence or line.
_FIRST_DELIMITER: Final = r"[\n:：。？！?!]|\.\s|\.$"
_TAIL_SEGMENT: Final = r"[^\n.。?？!！:：]{6," + str(SEGMENT_CHARS) + r"}[.。?？!！:：]?\s*$"

# Primary language subtag -> script (rows without text, or text without letters).
_LANG_SCRIPT: Final[Mapping[str, str]] = {
    **dict.fromkeys(("zh", "yue", "wuu", "cmn"), "cjk"),
    "ja": "kana",
    "ko": "hangul",
    **dict.fromkeys(
        ("ru", "uk", "be", "bg", "sr", "mk", "kk", "ky", "tg", "mn", "ba", "tt", "cv"), "cyrillic"
    ),
    **dict.fromkeys(("ar", "fa", "ur", "ps", "ug", "ckb", "sd", "arz"), "arabic"),
    **dict.fromkeys(("hi", "mr", "ne", "sa", "kok", "mai", "bho", "new"), "devanagari"),
    **dict.fromkeys(
        (
            "en",
            "es",
            "fr",
            "de",
            "it",
            "pt",
            "nl",
            "pl",
            "tr",
            "vi",
            "id",
            "ms",
            "sv",
            "da",
            "no",
            "nb",
            "nn",
            "fi",
            "cs",
            "sk",
            "hu",
            "ro",
            "ca",
            "eu",
            "gl",
            "eo",
            "hr",
            "sl",
            "lt",
            "lv",
            "et",
            "sq",
            "af",
            "sw",
            "tl",
            "fil",
            "is",
            "ga",
            "cy",
            "mt",
            "lb",
            "bs",
            "az",
            "uz",
            "tk",
            "ha",
            "yo",
            "ig",
            "zu",
            "xh",
            "so",
            "bar",
            "swg",
            "la",
            "oc",
            "br",
            "fy",
            "gd",
            "jv",
            "su",
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


_WORD_K: Final = 0x9E3779B97F4A7C15
_SM2: Final = 0xBF58476D1CE4E5B9
_SM3: Final = 0x94D049BB133111EB


def _mix_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * _SM2) & _MASK64
    z = ((z ^ (z >> 27)) * _SM3) & _MASK64
    return z ^ (z >> 31)


def stable_hash64(data: bytes) -> int:
    """A 64-bit hash that is the same on every machine and polars version (reference implementation).

    ``h = SEED ^ len``; for each 8-byte little-endian word ``w`` (the last one zero-padded)
    ``h = ((h ^ w) * K) mod 2**64; h ^= h >> 29``; the result is the splitmix64 finaliser of ``h``.
    ``stable_hash_series`` is the vectorised twin (the two agree; tested).
    """
    h = STABLE_HASH_SEED ^ len(data)
    for k in range(0, len(data), 8):
        h = ((h ^ int.from_bytes(data[k : k + 8].ljust(8, b"\0"), "little")) * _WORD_K) & _MASK64
        h ^= h >> 29
    return _mix_int(h)


def template_fingerprint(segment: str, suffix: bool = False) -> int:
    """``template_fp`` of a prompt whose chosen segment is ``segment`` (reference for gateways and tests).

    The fingerprint is ``stable_hash64`` of the segment's UTF-8 bytes without ASCII digits, XORed with
    ``SUFFIX_SIDE_SALT`` when the segment is the prompt's last one.
    """
    h = stable_hash64(re.sub("[0-9]+", "", segment).encode("utf-8"))
    return h ^ SUFFIX_SIDE_SALT if suffix else h


def _mix_np(z: np.ndarray[Any, np.dtype[np.uint64]]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_SM2)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_SM3)
    return z ^ (z >> np.uint64(31))


def stable_hash_series(s: pl.Series, prefix_bytes: pl.Series | None = None) -> pl.Series:
    """``stable_hash64`` of every value of a String or Binary series (UTF-8 bytes; nulls stay null).

    With ``prefix_bytes`` only each value's first that many bytes are hashed (null: all of them).
    Vectorised: 64-bit words are read at every value's byte offsets and mixed, longest values first, while
    a value still has bytes left.
    """
    n = s.len()
    if n == 0:
        return pl.Series(s.name, [], dtype=pl.UInt64)
    arr = s.rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type not in (pa.large_string(), pa.large_binary()):
        arr = arr.cast(pa.large_binary())
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    lens = (offsets[1:] - offsets[:-1]).astype(np.int64)
    if prefix_bytes is not None:
        cut = prefix_bytes.cast(pl.Int64).fill_null(-1).to_numpy()
        lens = np.where((cut < 0) | (cut > lens), lens, cut)
    # Longest first, so that the values still holding bytes at word k are a prefix of the order.
    order = np.argsort(-lens, kind="stable")
    starts, lens_sorted = offsets[:-1][order], lens[order]
    padded = np.concatenate([data, np.zeros(8, dtype=np.uint8)])
    # A byte-strided view: word[o] is the little-endian 64-bit word starting at byte o (unaligned reads).
    word = np.ndarray((len(data) + 1,), dtype="<u8", buffer=padded, strides=(1,))
    tail_mask = np.array([(1 << (8 * r)) - 1 for r in range(8)] + [_MASK64], dtype=np.uint64)
    ascending = lens_sorted[::-1]
    h = np.uint64(STABLE_HASH_SEED) ^ lens_sorted.astype(np.uint64)
    with np.errstate(over="ignore"):
        for k in range(0, int(lens_sorted[0]), 8):
            live = n - int(np.searchsorted(ascending, k, side="right"))  # values with more than k bytes
            w = word[starts[:live] + k].astype(np.uint64) & tail_mask[np.minimum(lens_sorted[:live] - k, 8)]
            hk = (h[:live] ^ w) * np.uint64(_WORD_K)
            h[:live] = hk ^ (hk >> np.uint64(29))
        h = _mix_np(h)
    h = h[np.argsort(order, kind="stable")]
    out = pl.Series(s.name, h, dtype=pl.UInt64)
    if s.null_count():
        out = pl.select(pl.when(s.is_null()).then(None).otherwise(out)).to_series().alias(s.name)
    return out


# ------------------------------------------------------------------------------------------------------
# Marker sets


@dataclass(frozen=True)
class PhraseSet:
    """One marker set's phrases as case-sensitive regex alternations (lower, Sentence and UPPER forms)."""

    name: str
    ascii_regex: str | None
    nonascii_regex: str | None


@dataclass(frozen=True)
class Prefilter:
    """A group's prefilter: ASCII literal regexes run on every row, non-ASCII ones on non-ASCII rows."""

    name: str
    sets: tuple[str, ...]
    regexes: tuple[str, ...]
    nonascii_regexes: tuple[str, ...]


@dataclass(frozen=True)
class Markers:
    """Everything compiled from ``prompt_markers.json`` (once, at first use)."""

    sets: Mapping[str, PhraseSet]
    prefilters: Mapping[str, Prefilter]
    code_ascii: tuple[str, ...]
    code_nonascii: tuple[str, ...]
    template_ascii: tuple[str, ...]
    template_nonascii: tuple[str, ...]
    coercion_pair: str | None  # qualifier and trace noun in one sentence, either order
    simhash_refs: Mapping[str, tuple[int, ...]]  # set name -> reference SimHashes
    version: int


class MarkerError(ValueError):
    """The marker file is inconsistent (names every problem at once)."""


def _literal_regexes(literals: Iterable[str], per_regex: int = LITERALS_PER_REGEX) -> tuple[str, ...]:
    """Alternations of escaped literals, ``per_regex`` at a time; literals of <= 2 bytes get their own."""
    lits = sorted(set(literals))
    short = [x for x in lits if len(x.encode()) <= 2]
    rest = [x for x in lits if len(x.encode()) > 2]
    chunks = [rest[i : i + per_regex] for i in range(0, len(rest), per_regex)] + ([short] if short else [])
    return tuple("|".join(pl.escape_regex(x) for x in chunk) for chunk in chunks)


def _split_regexes(literals: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    lits = set(literals)
    return (
        _literal_regexes(x for x in lits if x.isascii()),
        _literal_regexes((x for x in lits if not x.isascii()), NONASCII_LITERALS_PER_REGEX),
    )


def _sentence_case(p: str) -> str:
    return p[:1].upper() + p[1:]


def _phrase_forms(phrase: str, compounds: Sequence[str]) -> set[str]:
    """Spelling variants of a phrase as written (hyphenated compounds, curly apostrophe)."""
    out = {phrase}
    for comp in compounds:
        low = phrase.lower()
        if comp in low:
            start = low.index(comp)
            written = phrase[start : start + len(comp)]
            out |= {p.replace(written, written.replace(" ", "-")) for p in out}
    if "'" in phrase:
        out |= {p.replace("'", "\u2019") for p in out}
    return out


def _case_forms(form: str) -> set[str]:
    """The cases a phrase is matched in: as written, lower, Sentence (of both) and UPPER."""
    return {form, form.lower(), _sentence_case(form), _sentence_case(form.lower()), form.upper()}


def _alternation(literals: Iterable[str]) -> str | None:
    """A case-sensitive alternation of literals (a case-insensitive one measured 20x slower)."""
    lits = sorted(set(literals))
    return "|".join(pl.escape_regex(x) for x in lits) if lits else None


def _has_non_latin_letter(text: str) -> bool:
    return any(ch.isalpha() and not unicodedata.name(ch, "").startswith("LATIN") for ch in text)


def compile_markers(raw: Mapping[str, Any]) -> Markers:
    """Compile a parsed marker file; raise ``MarkerError`` listing every inconsistency.

    Coverage rule (what makes the two-stage match exact for the forms checked): every phrase, in lower and
    in Sentence case, must contain one of its group's ASCII fragments, or one of the group's non-ASCII
    fragments, or, for a group without non-ASCII fragments, a non-Latin letter (such phrases are searched
    wherever the prompt's first characters hold a non-Latin letter).
    """
    problems: list[str] = []
    compounds = [str(c) for c in raw.get("compounds", [])]
    group_of: dict[str, str] = {}
    prefilters: dict[str, Prefilter] = {}
    for gname, g in raw["prefilters"].items():
        keywords = [str(k) for k in g["keywords"]]
        nonascii = [str(k) for k in g.get("nonascii_keywords", [])]
        problems += [f"prefilters.{gname}.keywords: {k!r} is not ASCII" for k in keywords if not k.isascii()]
        problems += [f"prefilters.{gname}.nonascii_keywords: {k!r} is ASCII" for k in nonascii if k.isascii()]
        prefilters[gname] = Prefilter(
            gname,
            tuple(g["sets"]),
            _literal_regexes(keywords),
            _literal_regexes(nonascii, NONASCII_LITERALS_PER_REGEX),
        )
        for set_name in g["sets"]:
            group_of[set_name] = gname
    sets: dict[str, PhraseSet] = {}
    for name, spec in raw["sets"].items():
        if name != "reason_word" and name not in group_of:
            problems.append(f"sets.{name}: no prefilter group feeds it")
            continue
        group = raw["prefilters"][group_of[name]] if name in group_of else {}
        keywords = [str(k) for k in group.get("keywords", [])]
        nonascii = [str(k) for k in group.get("nonascii_keywords", [])]
        variants: set[str] = set()
        for lang, plist in spec["phrases"].items():
            for p in map(str, plist):
                for form in _phrase_forms(p, compounds):
                    cased = _case_forms(form)
                    variants |= cased
                    if name == "reason_word":
                        continue
                    for v in cased - {form.upper()}:
                        covered = any(k in v for k in keywords) or (
                            not v.isascii()
                            and (any(k in v for k in nonascii) if nonascii else _has_non_latin_letter(v))
                        )
                        if not covered:
                            problems.append(
                                f"sets.{name}.phrases.{lang}: {v!r} contains no prefilter fragment"
                            )
        sets[name] = PhraseSet(
            name,
            _alternation(v for v in variants if v.isascii()),
            _alternation(v for v in variants if not v.isascii()),
        )
    problems += [f"sets.{s}: missing" for s in _REQUIRED_SETS if s not in sets]
    if len({group_of.get(s) for s in _REASONING_SETS}) != 1:
        problems.append("prefilters: cot_strong, coercion and step must share one prefilter group")
    refs: dict[str, list[int]] = {}
    for ref in raw.get("simhash_references", []):
        for set_name in ref["sets"]:
            if set_name not in sets:
                problems.append(f"simhash_references.{ref['name']}: unknown set {set_name!r}")
            refs.setdefault(set_name, []).append(simhash64(ref["text"]))
    if problems:
        raise MarkerError("prompt_markers.json:\n  " + "\n  ".join(sorted(set(problems))))
    pairs = raw.get("coercion_pairs") or {}
    qualifiers = _alternation(v for q in pairs.get("qualifiers", []) for v in _case_forms(str(q)))
    nouns = _alternation(v for n in pairs.get("nouns", []) for v in _case_forms(str(n)))
    gap = f"[^\\n.!?。！？]{{0,{PAIR_GAP_CHARS}}}"
    pair = (
        f"(?:{qualifiers}){gap}(?:{nouns})|(?:{nouns}){gap}(?:{qualifiers})" if qualifiers and nouns else None
    )
    code_ascii, code_nonascii = _split_regexes(str(x) for x in raw["code_literals"])
    tmpl_ascii, tmpl_nonascii = _split_regexes(str(x) for x in raw["template_keywords"])
    return Markers(
        sets=sets,
        prefilters=prefilters,
        code_ascii=code_ascii,
        code_nonascii=code_nonascii,
        template_ascii=tmpl_ascii,
        template_nonascii=tmpl_nonascii,
        coercion_pair=pair,
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


def _gated(expr: pl.Expr, gate: pl.Expr) -> pl.Expr:
    """``expr`` where ``gate`` holds, else the empty string.

    String kernels run over every value, null or not, so masking with null saves nothing; an empty string
    costs nothing to scan (and no marker regex matches it).
    """
    return pl.when(gate).then(expr).otherwise(pl.lit(""))


def _gated_any_regex(expr: pl.Expr, regexes: Sequence[str], gate: pl.Expr) -> pl.Expr:
    if not regexes:
        return pl.lit(False)
    return _any_regex(_gated(expr, gate), regexes).fill_null(False)


def _phrase_match(ps: PhraseSet, text: pl.Expr, ascii_gate: pl.Expr, nonascii_gate: pl.Expr) -> pl.Expr:
    """Phrase hits: ASCII phrases where ``ascii_gate``, the others where ``nonascii_gate``."""
    hit: pl.Expr = pl.lit(False)
    if ps.ascii_regex:
        hit = hit | _gated(text, ascii_gate).str.contains(ps.ascii_regex).fill_null(False)
    if ps.nonascii_regex:
        hit = hit | _gated(text, nonascii_gate).str.contains(ps.nonascii_regex).fill_null(False)
    return hit


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
    """The first ``nbytes`` bytes of ``text`` (at a char boundary, as ``str.find`` offsets are)."""
    return text.cast(pl.Binary).bin.slice(0, nbytes).cast(pl.String)


def _byte_suffix(text: pl.Expr, start: pl.Expr) -> pl.Expr:
    return text.cast(pl.Binary).bin.slice(start).cast(pl.String)


def _first_script(first: pl.Expr, prefix: pl.Expr) -> pl.Expr:
    """The script value of a prefix's first non-Latin letter (kana when the prefix has kana besides Han)."""
    out: pl.Expr = pl.lit("other")
    for name, rx in reversed(_SCRIPT_CLASSES):
        out = pl.when(first.str.contains(rx)).then(pl.lit(name)).otherwise(out)
    has_kana = prefix.str.head(KANA_CHARS).str.contains(r"[\p{Hiragana}\p{Katakana}]")
    return (
        pl.when(out.is_in(["cjk", "kana"]))
        .then(pl.when(has_kana).then(pl.lit("kana")).otherwise(pl.lit("cjk")))
        .otherwise(out)
    )


def _sparse(frame: pl.DataFrame, gate: pl.Series, exprs: Sequence[pl.Expr]) -> list[pl.Series]:
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


def add_prompt_features(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``PROMPT_FEATURE_SCHEMA``'s columns to an event batch and drop ``prompt_text``.

    Pure and vectorised (per batch, never per row). Missing input columns count as null. With text the five
    flags are never null; without text they come from the SimHash (True) or ``tools`` (``code_agentic``),
    and are null otherwise. Batches of at least ``2 * PARALLEL_MIN_ROWS`` rows are cut into as many slices
    as polars has threads and the slices run on a small thread pool: the work has sequential stretches
    (sparse steps, hashing) that one batch alone cannot spread over the cores.
    """
    parts = min(pl.thread_pool_size(), df.height // PARALLEL_MIN_ROWS)
    if parts <= 1:
        return _add_prompt_features(df)
    step = -(-df.height // parts)
    slices = [df.slice(i * step, step) for i in range(parts)]
    return pl.concat(list(_pool().map(_add_prompt_features, slices)), how="vertical", rechunk=False)


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=pl.thread_pool_size(), thread_name_prefix="prompt-features")


def _add_prompt_features(df: pl.DataFrame) -> pl.DataFrame:
    m = markers()
    P = _TMP
    col = pl.col
    t, w, h6 = col(f"{P}text"), col(f"{P}w"), col(f"{P}h6")
    na = col(f"{P}extra") > 0  # the text has a non-ASCII character
    groups = list(m.prefilters.values())
    reasoning = next(g for g in groups if "cot_strong" in g.sets)

    frame = df.with_columns(
        _col_or_null(df, "prompt_text").alias(f"{P}text"),
        _col_or_null(df, "prompt_simhash")
        .str.to_integer(base=16, dtype=pl.UInt64, strict=False)
        .alias("prompt_simhash64"),
        _col_or_null(df, "prompt_lang").alias(f"{P}lang"),
        _col_or_null(df, "prompt_chars").alias(f"{P}chars"),
        _col_or_null(df, "tools").alias(f"{P}tools"),
    )
    if "prompt_text" in frame.columns:
        frame = frame.drop("prompt_text")

    def get(name: str) -> pl.Series:
        return frame.get_column(name)

    # 1. Dense: the window (only long texts are cut), the first characters.
    is_long = t.str.len_chars() > LONG_TEXT_CHARS
    long_text = _gated(t, is_long)
    frame = frame.with_columns(
        pl.when(is_long)
        .then(pl.concat_str([long_text.str.head(HEAD_CHARS), long_text.str.tail(TAIL_CHARS)], separator="\n"))
        .otherwise(t)
        .alias(f"{P}w"),
        t.str.head(META_CHARS).alias(f"{P}h6"),
        t.str.head(SEGMENT_CHARS).str.replace_all("[0-9]+", "").alias(f"{P}hp"),
    )
    # 2. Dense: ASCII prefilters and code markers, non-ASCII facts, the first segment.
    hp = col(f"{P}hp")
    hend = hp.str.find(_FIRST_DELIMITER)
    frame = frame.with_columns(
        (w.str.len_bytes() - w.str.len_chars()).alias(f"{P}extra"),
        h6.str.contains("[A-Za-z]").alias(f"{P}asciil"),
        *[_any_regex(w if g is reasoning else h6, g.regexes).alias(f"{P}pf_{g.name}") for g in groups],
        _any_regex(h6, m.code_ascii).alias(f"{P}code"),
        pl.when(hend >= SEGMENT_MIN_CHARS).then(hend).otherwise(hp.str.len_bytes()).alias(f"{P}hlen"),
    )
    # 3. Sparse, rows with a non-ASCII character: non-ASCII fragments and code markers, the first non-Latin
    #    letter of the prefix and whether that script dominates it; then, where there is one, its script.
    sp = t.str.head(SCRIPT_CHARS)
    frame = frame.with_columns(
        _sparse(
            frame,
            get(f"{P}extra") >= NONASCII_MIN_EXTRA_BYTES,
            [
                *[
                    _any_regex(w, g.nonascii_regexes).alias(f"{P}pfn_{g.name}")
                    for g in groups
                    if g.nonascii_regexes
                ],
                _any_regex(h6, m.code_nonascii).alias(f"{P}coden"),
                sp.str.extract(f"({_NON_LATIN_LETTER})").alias(f"{P}first"),
                # The UTF-8 bytes beyond one per character, doubled, reach the prefix's length:
                # Cyrillic/Arabic/
                # Greek letters (2 bytes) match its ASCII characters in number, or Han/kana/Hangul/Devanagari
                # (3 bytes, about a word each) are a third of them. English with a few curly quotes does not.
                (2 * (sp.str.len_bytes() - sp.str.len_chars()) >= sp.str.len_chars()).alias(f"{P}dominant"),
            ],
        )
    )
    frame = frame.with_columns(
        _sparse(
            frame, get(f"{P}first").is_not_null(), [_first_script(col(f"{P}first"), sp).alias(f"{P}fclass")]
        )
    )

    # 4. Sparse, rows where a group's prefilter hit: one pass over the union of the group's phrase sets. ASCII
    #    phrases run where the group's ASCII prefilter hit; non-ASCII phrases where that or its non-ASCII
    #    prefilter hit, or (groups without non-ASCII fragments) where the prefix holds a non-Latin letter.
    def union(name: str, set_names: Sequence[str]) -> PhraseSet:
        return PhraseSet(
            name,
            "|".join(r for s in set_names if (r := m.sets[s].ascii_regex)) or None,
            "|".join(r for s in set_names if (r := m.sets[s].nonascii_regex)) or None,
        )

    for g in groups:
        ascii_pf = col(f"{P}pf_{g.name}")
        if g.nonascii_regexes:
            other_pf, other_rows = col(f"{P}pfn_{g.name}"), get(f"{P}pfn_{g.name}")
        else:
            other_pf, other_rows = col(f"{P}first").is_not_null(), get(f"{P}first").is_not_null()
        text = w if g is reasoning else h6
        frame = frame.with_columns(
            _sparse(
                frame,
                get(f"{P}pf_{g.name}") | other_rows,
                [
                    _phrase_match(union(g.name, g.sets), text, ascii_pf, (ascii_pf | other_pf) & na).alias(
                        f"{P}g_{g.name}"
                    )
                ],
            )
        )
    # 5. Sparse and small, rows where a group's union matched: its sets one by one ("strong" is cot_strong or
    #    coercion); then reasoning words where only a bare step phrase matched; for marked rows, whether
    #    the first segment holds an instruction keyword, and where it does not, the last segment (a suffix
    #    template) and whether that one does.
    yes = pl.lit(True)
    frame = frame.with_columns(
        [
            series
            for g in groups
            for series in _sparse(
                frame,
                get(f"{P}g_{g.name}"),
                [
                    _phrase_match(ps, w if g is reasoning else h6, yes, na).alias(f"{P}m_{ps.name}")
                    for ps in (
                        [union("strong", ("cot_strong", "coercion")), m.sets["coercion"], m.sets["step"]]
                        if g is reasoning
                        else [m.sets[s] for s in g.sets]
                    )
                ]
                + (
                    [w.str.contains(m.coercion_pair).alias(f"{P}m_pair")]
                    if g is reasoning and m.coercion_pair
                    else []
                ),
            )
        ]
    )
    if f"{P}m_pair" not in frame.columns:
        frame = frame.with_columns(pl.lit(False).alias(f"{P}m_pair"))

    def has_template_keyword(seg: pl.Expr) -> pl.Expr:
        return _any_regex(seg, m.template_ascii) | _gated_any_regex(seg, m.template_nonascii, na)

    m_strong, m_step = get(f"{P}m_strong") | get(f"{P}m_pair"), get(f"{P}m_step")
    marked = m_strong | m_step | get(f"{P}m_rubric") | get(f"{P}m_identity")
    frame = frame.with_columns(
        _sparse(
            frame,
            m_step & ~m_strong,
            [_phrase_match(m.sets["reason_word"], w, yes, na).alias(f"{P}m_reason_word")],
        )
        + _sparse(frame, marked, [has_template_keyword(_byte_prefix(hp, col(f"{P}hlen"))).alias(f"{P}hkw")])
    )
    tp = t.str.tail(SEGMENT_CHARS + 24)
    tstart = tp.str.find(_TAIL_SEGMENT)
    ts = (
        pl.when(tstart.is_not_null())
        .then(_byte_suffix(tp, tstart))
        .otherwise(tp.str.tail(SEGMENT_FALLBACK_CHARS))
    )
    frame = frame.with_columns(
        _sparse(
            frame,
            marked & ~get(f"{P}hkw"),
            [
                has_template_keyword(ts).alias(f"{P}suffix"),
                ts.str.replace_all("[0-9]+", "").alias(f"{P}ts"),
            ],
        )
    )

    # 6. Assemble: text first, SimHash / tools second.
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

    mt = {s: col(f"{P}m_{s}") for s in _REQUIRED_SETS if s != "cot_strong"}
    pair = col(f"{P}m_pair")
    cot_text = col(f"{P}m_strong") | pair | (mt["step"] & mt["reason_word"])
    suffix = col(f"{P}suffix")
    detected = (
        pl.when(col(f"{P}fclass").is_not_null() & col(f"{P}dominant"))
        .then(col(f"{P}fclass"))
        .when(col(f"{P}asciil") | col(f"{P}fclass").is_not_null())
        .then(pl.lit("latin"))
        .otherwise(pl.lit(None, pl.String))
    )
    lang_script = _lang_script(col(f"{P}lang"))
    out = frame.with_columns(
        flag(cot_text, near(["cot_strong", "coercion"])).alias("cot_elicit"),
        flag(mt["coercion"] | pair, near(["coercion"])).alias("reasoning_coercion"),
        flag(mt["rubric"], near(["rubric"])).alias("rubric_prompt"),
        flag(mt["identity"], near(["identity"])).alias("identity_probe"),
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
    head_hash = stable_hash_series(out.get_column(f"{P}hp"), out.get_column(f"{P}hlen"))
    tail_hash = stable_hash_series(out.select(pl.when(suffix).then(col(f"{P}ts"))).to_series())
    fp_from_simhash = (h64 // (1 << 48)) | pl.lit(SIMHASH_FP_TAG << 48, pl.UInt64)
    out = out.with_columns(
        pl.when(has_text)
        .then(pl.when(suffix).then(tail_hash ^ pl.lit(SUFFIX_SIDE_SALT, pl.UInt64)).otherwise(head_hash))
        .otherwise(fp_from_simhash)
        .alias("template_fp")
    )
    return out.drop([c for c in out.columns if c.startswith(_TMP)])
