"""Per-request numeric prompt-structure columns for the prompt model, and its feature catalogue.

``prompt_structure_features(frame)`` is a pure, vectorised function over a text column (default
``prompt_text``): it adds the ``STRUCTURE_FEATURES`` columns and leaves the text alone (the caller drops
it, as enrichment does). Together with the flags of ``detector.enrich.prompt_features`` (``cot_elicit``,
``reasoning_coercion``, ``rubric_prompt``, ``identity_probe``, ``code_agentic``, ``prompt_len``) they make
the prompt model's inputs, ``PROMPT_MODEL_FEATURES``. All are language-independent shapes (lines, digits,
math and template marks, scripts) so the model reads Chinese or Russian prompts the way it reads English
ones; the multilingual phrase knowledge stays in the flags. A null text gives null columns (scored with
the fill value, see ``detector.detect.models.spec``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import polars as pl

#: Columns ``prompt_structure_features`` adds, with their dtypes.
STRUCTURE_FEATURES: Final[Mapping[str, pl.DataType]] = {
    "prompt_lines": pl.Int64(),
    "prompt_digit_share": pl.Float64(),
    "prompt_nonascii_share": pl.Float64(),
    "prompt_math_marks": pl.Int64(),
    "prompt_think_tag": pl.Boolean(),
    "prompt_boxed": pl.Boolean(),
    "prompt_slot_marks": pl.Int64(),
    "prompt_question_marks": pl.Int64(),
    "prompt_list_lines": pl.Int64(),
    "prompt_upper_share": pl.Float64(),
}

#: The prompt model's catalogue: flags from ``detector.enrich.prompt_features`` plus the structure columns.
PROMPT_MODEL_FEATURES: Final[Mapping[str, pl.DataType]] = {
    "cot_elicit": pl.Boolean(),
    "reasoning_coercion": pl.Boolean(),
    "rubric_prompt": pl.Boolean(),
    "identity_probe": pl.Boolean(),
    "code_agentic": pl.Boolean(),
    "prompt_len": pl.Int64(),
    **STRUCTURE_FEATURES,
}

# LaTeX commands, display math and equation signs: problem sets and their answer-format instructions.
_MATH = r"\\[a-zA-Z]+|\$|=|\^"
# Template slots and structured placeholders: {x}, [ASSESS], <tag>.
_SLOT = r"\{[^{}\n]{0,40}\}|\[[A-Z_]{3,}\]|<[a-z_]{2,20}>"
_LIST_LINE = r"(?m)^\s*(?:\d+[.)]|[-*•])\s"
_QUESTION = r"[?？]"


def prompt_structure_features(frame: pl.DataFrame, text: str = "prompt_text") -> pl.DataFrame:
    """``frame`` with the ``STRUCTURE_FEATURES`` columns computed from the ``text`` column."""
    t = pl.col(text)
    chars = t.str.len_chars()
    denom = pl.max_horizontal(chars, pl.lit(1)).cast(pl.Float64)
    return frame.with_columns(
        (t.str.count_matches("\n") + 1).cast(pl.Int64).alias("prompt_lines"),
        (t.str.count_matches(r"[0-9]").cast(pl.Float64) / denom).alias("prompt_digit_share"),
        (t.str.count_matches(r"[^\x00-\x7F]").cast(pl.Float64) / denom).alias("prompt_nonascii_share"),
        t.str.count_matches(_MATH).cast(pl.Int64).alias("prompt_math_marks"),
        t.str.contains(r"(?i)</?think>").alias("prompt_think_tag"),
        t.str.contains(r"\\boxed").alias("prompt_boxed"),
        t.str.count_matches(_SLOT).cast(pl.Int64).alias("prompt_slot_marks"),
        t.str.count_matches(_QUESTION).cast(pl.Int64).alias("prompt_question_marks"),
        t.str.count_matches(_LIST_LINE).cast(pl.Int64).alias("prompt_list_lines"),
        (t.str.count_matches(r"[A-Z]").cast(pl.Float64) / denom).alias("prompt_upper_share"),
    )


def prompt_model_frame(texts: list[str]) -> pl.DataFrame:
    """Every ``PROMPT_MODEL_FEATURES`` column for a list of texts (training, evaluation, tests)."""
    from detector.enrich.prompt_features import add_prompt_features

    frame = pl.DataFrame({"prompt_text": texts}, schema={"prompt_text": pl.String})
    frame = prompt_structure_features(frame)
    out = add_prompt_features(frame)
    return out.select(list(PROMPT_MODEL_FEATURES))
