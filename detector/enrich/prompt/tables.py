"""The tunables, column layouts and pattern tables of the prompt-structure features: how much of a text is
read, the columns read and added, the sentence delimiters and the script tables. Constants only;
``detector.enrich.prompt_features`` builds the features from them (and re-exports ``SCRIPTS``,
``PROMPT_FEATURE_SCHEMA`` and ``INPUT_COLUMNS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import polars as pl

# Tunables (each with its reason)

#: Texts longer than this are read only at their first HEAD_CHARS and last TAIL_CHARS characters.
LONG_TEXT_CHARS: Final = 1500
#: Instructions and inlined system prompts lead a prompt ...
HEAD_CHARS: Final = 1000
#: ... or follow the pasted content ("... put your final answer within \\boxed{}").
TAIL_CHARS: Final = 500
#: Rubric, identity and code markers sit in the instruction that opens a prompt; reading less is faster.
META_CHARS: Final = 300
#: Characters that decide the dominant script (a prompt's script shows in its first sentence).
SCRIPT_CHARS: Final = 160
#: Kana are looked for in the first this many characters (Japanese shows kana within any sentence).
KANA_CHARS: Final = 60
#: Non-ASCII work is done for texts whose UTF-8 bytes exceed their characters by at least this much (two
#: Han/kana/Hangul characters, four Cyrillic or accented letters): English with a curly apostrophe (2) is
#: spared it.
NONASCII_MIN_EXTRA_BYTES: Final = 4
#: Texts up to this many bytes are checked for having a letter at all; longer ones are taken to have one.
LETTERLESS_MAX_BYTES: Final = 64
#: The template segment is looked for in the first this many characters (a template's fixed opening is short).
SEGMENT_CHARS: Final = 96
#: A first sentence shorter than this (in bytes) does not make a segment ("Hi!", "Q:").
SEGMENT_MIN_BYTES: Final = 6
#: Characters of the last segment when the last sentence is longer than SEGMENT_CHARS.
TAIL_SEGMENT_FALLBACK_CHARS: Final = 64
#: Hamming radius for SimHash-only flags. Unrelated 64-bit SimHashes differ in ~32 +- 4 bits, so <= 12 is
#: 5 sd away (~3e-7 per reference by chance); benchmarks/prompt_signal.py measures it on real prompts.
SIMHASH_MAX_DISTANCE: Final = 12
#: Tag in the top 16 bits of a template fingerprint derived from a SimHash ("SH").
SIMHASH_FP_TAG: Final = 0x5348
#: Batches of at least twice this many rows are cut into slices run on parallel threads.
PARALLEL_MIN_ROWS: Final = 8192

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
    #: the whole text's 64-bit hash (a long text: its read window), else the gateway's SimHash
    "text_fp": pl.UInt64(),
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

TMP: Final = "__pf_"  # prefix of temporary columns
#: What ends the first sentence or line.
FIRST_DELIMITER: Final = r"[\n:：。？！?!]|\.\s|\.$"
#: The last sentence (6 to SEGMENT_CHARS characters without a delimiter, then at most one, to the end).
LAST_SENTENCE: Final = r"[^\n.。?？!！:：]{6," + str(SEGMENT_CHARS) + r"}[.。?？!！:：]?\s*$"
NON_LATIN_LETTER: Final = r"[\p{L}--\p{Latin}]"
# Unicode script of the first non-Latin letter -> script value (first match wins; "other" otherwise).
SCRIPT_CLASSES: Final = (
    ("cyrillic", r"^\p{Cyrillic}"),
    ("arabic", r"^\p{Arabic}"),
    ("devanagari", r"^\p{Devanagari}"),
    ("hangul", r"^\p{Hangul}"),
    ("kana", r"^[\p{Hiragana}\p{Katakana}]"),
    ("cjk", r"^\p{Han}"),
)
_LATIN_LANGS: Final = (
    "en es fr de it pt nl pl tr vi id ms sv da no nb nn fi cs sk hu ro ca eu gl eo hr sl lt lv et sq af sw "
    "tl fil is ga cy mt lb bs az uz tk ha yo ig zu xh so bar swg la oc br fy gd jv su"
)
# Primary language subtag -> script (rows without text, or text without letters).
LANG_SCRIPT: Final[Mapping[str, str]] = {
    **dict.fromkeys(["zh", "yue", "wuu", "cmn"], "cjk"),
    "ja": "kana",
    "ko": "hangul",
    **dict.fromkeys(
        ["ru", "uk", "be", "bg", "sr", "mk", "kk", "ky", "tg", "mn", "ba", "tt", "cv"], "cyrillic"
    ),
    **dict.fromkeys(["ar", "fa", "ur", "ps", "ug", "ckb", "sd", "arz"], "arabic"),
    **dict.fromkeys(["hi", "mr", "ne", "sa", "kok", "mai", "bho", "new"], "devanagari"),
    **dict.fromkeys(_LATIN_LANGS.split(), "latin"),
}
