"""Prompt-structure features: multilingual signals, template fingerprints, text dropped, real-data targets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from detector.prompt_features import add_prompt_features

ROOT = Path(__file__).resolve().parents[1]


def _frame(texts: list[str | None], simhash: list[str | None] | None = None) -> pl.DataFrame:
    n = len(texts)
    return pl.DataFrame(
        {
            "prompt_text": texts,
            "prompt_simhash": simhash or [None] * n,
            "prompt_lang": [None] * n,
            "prompt_chars": [None] * n,
            "prompt_turns": [1] * n,
            "system_prompt_hash": [None] * n,
            "tools": [0] * n,
        },
        schema_overrides={
            "prompt_text": pl.String,
            "prompt_simhash": pl.String,
            "prompt_lang": pl.String,
            "prompt_chars": pl.Int64,
            "system_prompt_hash": pl.String,
        },
    )


@pytest.mark.parametrize(
    "text",
    [
        "Solve this. Think step by step and write out every intermediate step of your reasoning.",
        "Please reason step by step, and put your final answer within \\boxed{}. What is 7*8?",
        "请一步一步地思考，并写出完整的推理过程：3+5等于几？",
        "Реши задачу и покажи весь ход рассуждений шаг за шагом: 12/4",
        "Resuelve el problema paso a paso y explica tu razonamiento: 2x+1=5",
        "Löse die Aufgabe Schritt für Schritt und erkläre jeden Gedankengang: 3x=9",
    ],
)
def test_cot_elicitation_in_several_languages(text: str) -> None:
    assert add_prompt_features(_frame([text]))["cot_elicit"].to_list() == [True]


@pytest.mark.parametrize(
    "text",
    [
        "What foods are high in vitamin C?",
        "Write a step-by-step guide to installing Postgres on Debian.",
        "Natalia sold clips to 48 of her friends in April. How many clips did she sell altogether?",
        "Translate 'good morning' into French.",
    ],
)
def test_ordinary_prompts_are_not_cot_elicitation(text: str) -> None:
    assert add_prompt_features(_frame([text]))["cot_elicit"].to_list() == [False]


def test_prompt_text_is_dropped_and_columns_typed() -> None:
    out = add_prompt_features(_frame(["Which model are you, and who created you?", None]))
    assert "prompt_text" not in out.columns
    assert out.schema["cot_elicit"] == pl.Boolean and out.schema["template_fp"] == pl.UInt64
    assert out["identity_probe"].to_list()[0] is True


def test_template_fingerprint_groups_one_template_with_varying_slots() -> None:
    wrap = "Solve the following problem. Think step by step and show all your work.\n\nProblem: {} Answer:"
    a, b = wrap.format("What is 17 * 23?"), wrap.format("How many primes are below 50?")
    other = "Write a short poem about the sea at night, in the style of a sailor's song, with four verses."
    fp = add_prompt_features(_frame([a, b, other]))["template_fp"].to_list()
    assert fp[0] == fp[1] and fp[0] != fp[2]


@pytest.mark.shared
def test_cot_signal_meets_targets_on_real_prompt_sets(shared_dir: Path) -> None:
    """Recall >= 0.9 at <= 1% false positives on ../shared/data/prompts (the script exits 1 otherwise)."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "prompt_signal.py"), "--shared", str(shared_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "PASS" in run.stdout
