"""Scoring with onnxruntime: ``ModelSet`` loads every shipped model and turns feature frames into hits.

One ``InferenceSession`` per model, on the first available provider of ``PREFERRED_PROVIDERS`` (CUDA,
then CPU; the ``gpu`` extra installs onnxruntime-gpu). A frame is scored in one batch as a float32
matrix built by ``detector.detect.models.spec.to_matrix``. The session's probability is *raw*
(``LoadedModel.predict``); thresholds, hits, explanations and alert scores use the *calibrated* one
(``LoadedModel.score``: the manifest's calibration applied to it, see ``manifest.Calibration``).

Hits have exactly the columns of ``RuleSet.evaluate``: ``<key>, rule_id, severity, score, mode,
campaign_type, detail``; ``rule_id`` is ``model:<name>-v<N>``, ``score`` the model's probability,
``mode`` "live", ``campaign_type`` null. Severity bands (from the manifest): ``score >= threshold`` is
medium, ``score >= high_threshold`` is high (the fusion may cap them: ``detector.detect.fusion``).

Why a score is high (``detail``): for each hit row and each feature, the score drop when that feature
alone is set to its benign reference value (the median over benign training rows). The three largest
drops are named with the row's value, e.g. ``model 0.97 >= 0.80: cot_share_24h=0.82 (+0.41 vs 0.00),
...``. It is computed by the same ONNX session (one extra batch of rows x features, for hit rows only),
so it explains this model, not an approximation of it. When no single feature moves the score (the
evidence is spread over several), the row's most important features by training importance are named
instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.contracts import Severity
from detector.detect.models.manifest import STEM, Manifest, read_manifest
from detector.detect.models.spec import catalogue, schema_entries, schema_hash, to_matrix, to_vector
from detector.detect.rules.ruleset import HIT_COLUMNS
from detector.errors import DetectorError

log = logging.getLogger("detector.detect.models")

#: Execution providers in order of preference.
PREFERRED_PROVIDERS: Final = ("CUDAExecutionProvider", "CPUExecutionProvider")
#: Features named in a hit's detail.
TOP_FEATURES: Final = 3
#: A drop smaller than this does not count as a feature "driving" the score.
MIN_DROP: Final = 1e-3


class ModelError(DetectorError, ValueError):
    """A model file or manifest that cannot be used; the message names the file and the mismatch."""


def select_providers(available: Sequence[str]) -> list[str]:
    """The providers to ask for, best first: ``PREFERRED_PROVIDERS`` that ``available`` has."""
    chosen = [p for p in PREFERRED_PROVIDERS if p in available]
    if not chosen:
        raise ModelError(f"no usable onnxruntime provider among {list(available)}")
    return chosen


def check_manifest(manifest: Manifest, cat: Mapping[str, pl.DataType], path: Path) -> None:
    """Raise ``ModelError`` naming every disagreement between ``manifest`` and the engine's catalogue."""
    problems: list[str] = []
    for name, entry in zip(manifest.features, schema_entries(manifest.features, cat), strict=True):
        if entry.endswith(":MISSING"):
            problems.append(f"feature '{name}' is not in the engine's {manifest.target} catalogue")
    if not problems:
        for name in manifest.features:
            trained, now = manifest.feature_dtypes.get(name), str(cat[name])
            if trained != now:
                problems.append(f"feature '{name}' was trained as {trained}, the engine has {now}")
        expected = schema_hash(manifest.features, cat)
        if expected != manifest.feature_schema_hash:
            problems.append(
                f"feature-schema hash {manifest.feature_schema_hash[:12]}... != engine's {expected[:12]}..."
            )
    if set(manifest.reference) != set(manifest.features):
        problems.append("reference values do not cover exactly the model's features")
    if problems:
        raise ModelError(f"{path}: model {manifest.stem} does not match the engine: " + "; ".join(problems))


@dataclass
class LoadedModel:
    """One model: its manifest and its onnxruntime session."""

    manifest: Manifest
    session: Any  # onnxruntime.InferenceSession (untyped library)
    provider: str
    #: "tree" (the skl2onnx tree operator) or "matrix" (gemm.py's rewrite, run where CUDA is asked for)
    form: str = "tree"

    def predict(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """The graph's raw probability of the positive class for each row of ``x``."""
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        m = self.manifest
        out = self.session.run([m.probability_output], {m.input_name: x})[0]
        return np.asarray(out, dtype=np.float64)[:, 1]

    def score(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """The calibrated probability for each row of ``x`` (what thresholds and alerts read)."""
        return self.manifest.calibrate(self.predict(x))

    def explain(self, x: npt.NDArray[np.float32], scores: npt.NDArray[np.float64]) -> list[str]:
        """One reason line per row of ``x`` (see the module docstring)."""
        m = self.manifest
        n, k = x.shape
        ref = np.array([m.reference[f] for f in m.features], dtype=np.float32)
        probe = np.repeat(x, k, axis=0).reshape(n, k, k)
        idx = np.arange(k)
        probe[:, idx, idx] = ref
        drops = scores[:, None] - self.score(probe.reshape(n * k, k)).reshape(n, k)
        imp = np.array([m.importances.get(f, 0.0) for f in m.features])
        lines = []
        for row, score, d in zip(x, scores, drops, strict=True):
            order = [j for j in np.argsort(-d, kind="stable")[:TOP_FEATURES] if d[j] >= MIN_DROP]
            parts = [f"{m.features[j]}={_fmt(row[j])} (+{d[j]:.2f} vs {_fmt(ref[j])})" for j in order]
            if not parts:
                top = np.argsort(-imp, kind="stable")[:TOP_FEATURES]
                parts = [f"{m.features[j]}={_fmt(row[j])}" for j in top]
            lines.append(f"model {score:.3f} >= {m.threshold:.2f}: " + ", ".join(parts))
        return lines


def in_domain(frame: pl.DataFrame, manifest: Manifest) -> npt.NDArray[np.bool_]:
    """Rows that carry every feature the model never saw missing in training (see ``Manifest.required``)."""
    if not manifest.required or frame.height == 0:
        return np.ones(frame.height, dtype=bool)
    ok = frame.select(pl.all_horizontal(pl.col(n).is_not_null() for n in manifest.required))
    return ok.to_series().to_numpy().astype(bool)


def _fmt(v: float) -> str:
    return f"{float(v):.4g}"


class ModelSet:
    """Every model of a models folder, ready to score feature frames."""

    def __init__(
        self,
        models: Sequence[LoadedModel] = (),
        vote_precision: float = 0.99,
        vote_min_accounts: int = 5,
        vote_min_artefacts: int = 2,
    ) -> None:
        self.models: tuple[LoadedModel, ...] = tuple(sorted(models, key=lambda lm: lm.manifest.stem))
        #: The calibration-block precision at its medium threshold a model needs to raise a subject to
        #: medium on its own (``settings.model_vote_precision``; see ``detector.detect.fusion``).
        self.vote_precision = vote_precision
        #: The fewest accounts a cluster needs for a voter's lone hit to reach medium
        #: (``settings.model_vote_min_accounts``); smaller clusters keep a low lead.
        self.vote_min_accounts = vote_min_accounts
        #: ... and the fewest rare artefact families it must share
        #: (``settings.model_vote_min_artefact_families``).
        self.vote_min_artefacts = vote_min_artefacts

    def __len__(self) -> int:
        return len(self.models)

    def __repr__(self) -> str:
        return f"ModelSet({', '.join(f'{m.manifest.stem}@{m.provider}' for m in self.models)})"

    @classmethod
    def load(
        cls,
        models_dir: Path | None,
        available: Sequence[str] | None = None,
        vote_precision: float = 0.99,
        vote_min_accounts: int = 5,
        vote_min_artefacts: int = 2,
    ) -> ModelSet:
        """Load ``models_dir/<name>-v<N>.onnx`` with their manifests; empty when there is no folder.

        ``available`` overrides the providers onnxruntime reports (tests). Raises ``ModelError`` when a
        file has no manifest, the manifest names another model, the ONNX bytes do not match its hash, or
        its features disagree with the engine's catalogue.
        """
        if models_dir is None or not Path(models_dir).is_dir():
            return cls(
                vote_precision=vote_precision,
                vote_min_accounts=vote_min_accounts,
                vote_min_artefacts=vote_min_artefacts,
            )
        import hashlib

        import onnxruntime as ort

        providers = select_providers(available if available is not None else ort.get_available_providers())
        loaded = []
        for path in sorted(Path(models_dir).glob("*.onnx")):
            match = STEM.match(path.stem)
            if match is None:
                raise ModelError(f"{path}: model files are named <name>-v<N>.onnx")
            mpath = path.with_suffix(".json")
            if not mpath.is_file():
                raise ModelError(f"{path}: no manifest {mpath.name} beside it")
            try:
                manifest = read_manifest(mpath)
            except ValueError as exc:
                raise ModelError(f"{mpath}: invalid manifest: {exc}") from exc
            if manifest.stem != path.stem:
                raise ModelError(f"{mpath}: manifest describes {manifest.stem}, not {path.stem}")
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest != manifest.onnx_sha256:
                raise ModelError(
                    f"{path}: SHA-256 {digest[:12]}... != the manifest's {manifest.onnx_sha256[:12]}..."
                )
            try:
                cat = catalogue(manifest.target)
            except ValueError as exc:
                raise ModelError(f"{mpath}: {exc}") from exc
            check_manifest(manifest, cat, mpath)
            options = ort.SessionOptions()
            options.log_severity_level = 3
            # no busy-waiting between runs: a spinning pool kept about half a core busy doing nothing
            # while the engine ran polars work between small inferences (CPU the decoder, the Kafka
            # consumer thread and the broker need)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
            # the CUDA provider has no kernel for tree ensembles: on a GPU the same trees run as
            # matrix products (gemm.py); on the CPU the tree operator is the faster form
            form = "matrix" if providers[0] == "CUDAExecutionProvider" else "tree"
            if form == "matrix":
                # onnx (the graph rewrite) costs about 1.4 s to import: only a GPU process pays it
                from detector.detect.models.gemm import to_gemm

                graph = to_gemm(data)
            else:
                graph = data
            session = ort.InferenceSession(graph, sess_options=options, providers=providers)
            provider = session.get_providers()[0]
            log.info("model %s loaded on %s (%s form)", manifest.stem, provider, form)
            loaded.append(LoadedModel(manifest, session, provider, form))
        return cls(loaded, vote_precision, vote_min_accounts, vote_min_artefacts)

    @property
    def providers(self) -> dict[str, str]:
        """Model stem -> the execution provider its session runs on."""
        return {m.manifest.stem: m.provider for m in self.models}

    def voters(self) -> frozenset[str]:
        """Rule ids of the models whose measured precision earns a vote alone (``Manifest.votes``)."""
        return frozenset(m.manifest.rule_id for m in self.models if m.manifest.votes(self.vote_precision))

    def for_target(self, target: str) -> tuple[LoadedModel, ...]:
        """The models that score frames of ``target``."""
        return tuple(m for m in self.models if m.manifest.target == target)

    def explain_row(self, row: Mapping[str, Any], rule_id: str) -> str | None:
        """The reason line ``hits`` would give for one feature row (name -> value) and model ``rule_id``."""
        return self.explain_rows([row], rule_id)[0]

    def explain_rows(self, rows: Sequence[Mapping[str, Any]], rule_id: str) -> list[str | None]:
        """``explain_row`` for many rows of one model in one batched inference (same lines)."""
        for m in self.models:
            if m.manifest.rule_id == rule_id and rows:
                x = np.concatenate([to_vector(row, m.manifest.features) for row in rows])
                return list(m.explain(x, m.score(x)))
        return [None] * len(rows)

    def scores(self, frame: pl.DataFrame, target: str) -> dict[str, npt.NDArray[np.float64]]:
        """Model stem -> calibrated probability per row of ``frame``, for every model of ``target``."""
        return {
            m.manifest.stem: m.score(to_matrix(frame, m.manifest.features)) for m in self.for_target(target)
        }

    def hits(
        self,
        frame: pl.DataFrame,
        target: str,
        key: str,
        *,
        explain: bool = True,
        scores: Mapping[str, npt.NDArray[np.float64]] | None = None,
    ) -> pl.DataFrame:
        """One row per (row of ``frame``, model of ``target``) scoring at or above the model's threshold.

        Columns and dtypes as ``RuleSet.evaluate``: ``key`` (the frame's dtype), rule_id, severity,
        score, mode, campaign_type, detail. Ordered by model, then by row order in ``frame``.
        ``explain=False`` leaves ``detail`` null (the engine explains only the hits that become alerts,
        with ``explain_row``: an explanation rescored every feature and costs ~k predictions per hit).
        ``scores``: the result of ``scores(frame, target)`` when the caller already has it.
        """
        if key not in frame.columns:
            raise ValueError(f"hits: key column '{key}' is not in the frame")
        schema = pl.Schema({key: frame.schema[key], **HIT_COLUMNS})
        parts = []
        for m in self.for_target(target):
            man = m.manifest
            x = to_matrix(frame, man.features)
            p = scores[man.stem] if scores is not None else m.score(x)
            rows = np.flatnonzero((p >= man.threshold) & in_domain(frame, man))
            if rows.size == 0:
                continue
            got = p[rows]
            parts.append(
                pl.DataFrame(
                    {
                        key: frame.get_column(key).gather(rows),
                        "rule_id": [man.rule_id] * rows.size,
                        "severity": np.where(
                            got >= man.high_threshold, Severity.HIGH.value, Severity.MEDIUM.value
                        ).tolist(),
                        "score": got,
                        "mode": ["live"] * rows.size,
                        "campaign_type": pl.Series([None] * rows.size, dtype=pl.String),
                        "detail": m.explain(x[rows], got) if explain else [None] * rows.size,
                    },
                    schema=schema,
                )
            )
        return pl.concat(parts) if parts else pl.DataFrame(schema=schema)
