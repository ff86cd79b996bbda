"""Model cards (``models/<name>-v<N>.md``), rendered from the manifest alone.

Data, features, decision bands, held-out metrics (per campaign family and benign persona, or per source
and language for the prompt model) and the known blind spots. Everything in a card is in the manifest,
so a card can be regenerated without the training data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from detector.detect.models.manifest import Manifest

#: Known blind spots per target (what the training data cannot teach).
BLIND_SPOTS: Final[dict[str, list[str]]] = {
    "account": [
        "Trained on the project's own simulator only: it learns the campaigns and honest personas that "
        "the simulator imagines. Backtest on your own logs before enforcing.",
        "Account age and observed hours are strong inputs: an attacker on aged, bought accounts loses "
        "that signal, and a brand-new honest account with heavy benchmark traffic gains it.",
        "It sees one account at a time: a hydra whose members each look organic is the cluster "
        "model's and the linkage rules' job.",
        "Scores are per tick; an account is accused when any tick reaches the threshold, so long "
        "replays give more chances for a false positive than the per-row metrics suggest.",
    ],
    "cluster": [
        "Trained on the simulator's linked clusters only; the linkage itself (shared cards, IPs, "
        "clients) decides which accounts are scored together, so unlinked attackers are invisible to it.",
        "Few training clusters (hundreds per run): rare honest shapes (a university NAT, one company "
        "card) are represented by a handful of examples each.",
        "Cluster labels are by majority of members: a cluster mixing attackers with their resellers' "
        "ordinary customers is labelled by whichever is more numerous.",
    ],
    "prompt": [
        "Reads prompt *structure* (the multilingual marker flags plus language-independent shapes), "
        "not meaning: a paraphrased CoT request outside the marker phrases, in a language without "
        "markers, is scored from its shape alone.",
        "Honest users ask for step-by-step answers and paste benchmark problems: a high score says "
        "what a prompt looks like, not who sent it; it is evidence for the account and cluster "
        "verdicts, not an accusation on its own.",
        "Held-out multilingual positives are the simulator's wrappers (another engineer's text); the "
        "organic multilingual negatives are the oasst2 subset. Languages outside both are unmeasured.",
        "Obfuscation (homoglyphs, base64, zero-width characters) is not modelled.",
        "Problem-set shift: training wraps gsm8k and self-instruct problems, the held-out sources wrap "
        "LaTeX-heavy competition math, and the structural inputs (digits, math marks, length) move with "
        "the problems. At its threshold it recalls fewer held-out distillation prompts than the "
        "``cot_elicit`` flag alone (an input of the model); use it as a graded score beside the flag, "
        "not in place of it.",
    ],
}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.4f}"


def _group_table(rows: list[dict[str, Any]], attack_word: str, benign_word: str) -> list[str]:
    out = [
        f"| group | kind | n | at or above threshold | {attack_word} / {benign_word} |",
        "|---|---|---|---|---|",
    ]
    for g in rows:
        kind = attack_word if g["attack"] else benign_word
        out.append(f"| {g['group']} | {kind} | {g['n']} | {g['flagged']} | {_pct(g['rate'])} |")
    return out


def render_card(m: Manifest) -> str:
    """The Markdown card of one model."""
    t, h = m.training, m.heldout
    entity = h.get("entity", "row")
    lines = [
        f"# {m.stem}",
        "",
        f"Target: **{m.target}**. Estimator: `{m.estimator.get('class')}` "
        f"({', '.join(f'{k}={v}' for k, v in m.estimator.get('params', {}).items() if k in _SHOWN)}). "
        f"ONNX SHA-256 `{m.onnx_sha256[:16]}...`; feature-schema hash `{m.feature_schema_hash[:16]}...`.",
        "",
        "## Data",
        "",
        f"- Training: {t.get('data')}.",
        f"- Label: {t.get('label')}. Rows: {t.get('rows')} ({t.get('positives')} positive).",
    ]
    if "seeds" in t:
        lines.append(
            f"- Simulator seeds {t['seeds']} for training, {h.get('seeds')} held out; {t.get('days')} days "
            f"at scale {t.get('scale')}. Events SHA-256 per seed: "
            + ", ".join(f"{s}: `{v[:12]}...`" for s, v in sorted(t.get("events_sha256", {}).items()))
            + "."
        )
    if "draws" in t:
        lines.append(
            f"- Randomized simulator draws {_span(t['draws'])} for training, {_span(h.get('draws', []))} "
            f"for calibration and the metrics below; {t.get('days')} day(s) at scale {t.get('scale')}, "
            f"{t.get('attack_accounts')} accounts per campaign (`detector/lab/train/draws.py`)."
        )
    if "sources" in t:
        lines.append(f"- Training sources: {', '.join(t['sources'])}.")
        lines.append(f"- Held-out sources: {', '.join(h.get('sources', []))}.")
        lines.append(f"- Texts SHA-256: `{t.get('texts_sha256', '')[:16]}...` (no text is stored).")
    lines += [
        f"- Rebuild: `{t.get('command')}`.",
        "",
        "## Features",
        "",
        f"In this order, as float32; a null or non-finite value becomes {m.fill_value:g}. Importance is the "
        "estimator's impurity importance; reference is the benign training median, the value explanations "
        "compare against.",
        "",
        "| feature | dtype | importance | benign reference |",
        "|---|---|---|---|",
    ]
    for f in m.features:
        lines.append(
            f"| {f} | {m.feature_dtypes[f]} | {m.importances.get(f, 0):.4f} | {m.reference[f]:.4g} |"
        )
    lines += [
        "",
        "## Decision",
        "",
        f"- Threshold {m.threshold:.2f} (severity medium), high band {m.high_threshold:.2f} (severity high); "
        f"{t.get('threshold_rule')}.",
        f"- Hits carry rule id `{m.rule_id}`, the score and the three features whose reset to their "
        "benign reference lowers the score most.",
        "",
        *_calibration(m),
        "## Held-out metrics",
        "",
        f"- ROC AUC per row: {_num(h.get('auc'))} on {h.get('rows')} rows ({h.get('positives')} positive); "
        f"out-of-fold AUC on training data {_num(h.get('oof_auc'))}.",
        f"- Per group: share of {entity}s whose highest score reaches the threshold (recall for attack "
        "groups, false-positive rate for benign ones).",
        "",
        *_group_table(h.get("groups", []), "attack", "benign"),
    ]
    if h.get("languages"):
        lines += ["", "Per language (prompts):", "", *_group_table(h["languages"], "distill", "organic")]
    lines += ["", "## Known blind spots", ""]
    lines += [f"- {b}" for b in BLIND_SPOTS.get(m.target, [])]
    lines += ["", f"Libraries: {', '.join(f'{k} {v}' for k, v in sorted(m.libraries.items()))}.", ""]
    return "\n".join(lines)


def _span(draws: list[int]) -> str:
    if draws and draws == list(range(draws[0], draws[-1] + 1)):
        return f"{draws[0]}..{draws[-1]}"
    return ", ".join(str(d) for d in draws)


def _calibration(m: Manifest) -> list[str]:
    """The calibration section: the Platt map and the operating points (empty for uncalibrated models)."""
    c = m.calibration
    if c is None:
        return []
    lines = [
        "## Calibration",
        "",
        f"- Scores are calibrated probabilities: sigmoid({c.a:.4f} * log-odds(raw) + {c.b:.4f}), Platt "
        f"scaling fitted per {m.heldout.get('entity', 'entity')} and draw (its highest score) on calibration "
        f"draws {_span(c.draws)} ({c.entities} entities, {c.positives} attackers).",
        f"- On the calibration block, per {m.heldout.get('entity', 'entity')} and draw (flagged when any "
        "tick reaches the threshold):",
        "",
        "| band | threshold | entities | attackers | flagged | true positives | false positives "
        "| precision | recall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for band, p in sorted(m.operating.items(), key=lambda kv: kv[1].threshold):
        lines.append(
            f"| {band} | {p.threshold:.2f} | {p.entities} | {p.positives} | {p.flagged} | "
            f"{p.true_positives} | {p.false_positives} | {_num(p.precision)} | {_num(p.recall)} |"
        )
    lines.append("")
    return lines


_SHOWN = ("n_estimators", "max_depth", "learning_rate", "subsample", "random_state")


def write_card(m: Manifest, out_dir: Path) -> Path:
    """Write ``<out_dir>/<name>-v<N>.md``; return its path."""
    path = out_dir / f"{m.stem}.md"
    path.write_text(render_card(m), encoding="utf-8")
    return path
