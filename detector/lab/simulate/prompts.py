"""Prompt material: the built-in set (``detector/data/sim_prompts.json``) plus, optionally, real sets.

``PromptBank.load(None)`` uses only the built-in, original material. Given ``prompts_dir`` (the
shared ``data/prompts`` folder), it also draws benign prompts from ``benign/*``, problems from
``distillation/gsm8k`` and ``distillation/limo_eval``, instructions from ``distillation/self_instruct``
and grading templates and the R1-style step-by-step directive from ``distillation/templates``.
Missing or unreadable files are skipped. No text is ever logged.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

_MAX_CHARS = 2000  # the gateway truncates long prompts; keeps events near the contract's typical size
_FORMATTER = string.Formatter()


def _builtin() -> dict[str, Any]:
    text = resources.files("detector").joinpath("data/sim_prompts.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    obj = json.loads(line)
                    if isinstance(obj, dict):
                        yield obj
    except (OSError, ValueError):
        return


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@dataclass
class ExtraPrompts:
    """Real prompt material read from a ``prompts_dir``."""

    benign: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)
    rubric_templates: list[str] = field(default_factory=list)
    cot_wrappers: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, root: Path) -> ExtraPrompts:
        """Read what is there under ``root``; anything missing is simply absent."""
        ex = cls()
        ben = root / "benign"
        for name in ("arena-hard-v0.1_question.jsonl", "arena-hard-v2.0_question.jsonl"):
            ex._add_benign("en", (str(o.get("prompt", "")) for o in _jsonl(ben / "arena_hard_auto" / name)))
        for name in ("mt_bench_question.jsonl", "vicuna_bench_question.jsonl"):
            ex._add_benign(
                "en", (str((o.get("turns") or [""])[0]) for o in _jsonl(ben / "fastchat_mtbench" / name))
            )
        for o in _jsonl(ben / "oasst2_subset_openpaws" / "oasst2_filtered.jsonl"):
            p = o.get("prompt") or {}
            lang = str(p.get("lang") or "en").split("-")[0]
            ex._add_benign(lang, [str(p.get("text") or "")])
        dist = root / "distillation"
        for name in ("train.jsonl", "test.jsonl"):
            ex.problems += [str(o["question"]) for o in _jsonl(dist / "gsm8k" / name) if o.get("question")]
        limo = dist / "limo_eval"
        if limo.is_dir():
            for path in sorted(limo.glob("*.jsonl")):
                ex.problems += [
                    str(o.get("problem") or o.get("question"))
                    for o in _jsonl(path)
                    if o.get("problem") or o.get("question")
                ]
        for name in ("seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
            for o in _jsonl(dist / "self_instruct" / name):
                inst = (o.get("instances") or [{}])[0]
                extra = str(inst.get("input") or "") if isinstance(inst, dict) else ""
                ex.instructions.append(
                    (str(o.get("instruction", "")) + ("\n" + extra if extra else ""))[:_MAX_CHARS]
                )
        ex._read_templates(dist / "templates")
        ex.problems = [p[:_MAX_CHARS] for p in ex.problems]
        return ex

    def _add_benign(self, lang: str, texts: Iterator[str] | list[str]) -> None:
        keep = [t[:_MAX_CHARS] for t in texts if t.strip()]
        if keep:
            self.benign.setdefault(lang, []).extend(keep)

    def _read_templates(self, tdir: Path) -> None:
        for o in _jsonl(tdir / "fastchat" / "judge_prompts.jsonl"):
            tpl = str(o.get("prompt_template") or "")
            if o.get("type") == "single" and "{question}" in tpl and "{answer}" in tpl:
                try:
                    tpl.format_map(_Defaults(question="q", answer="a"))
                except (ValueError, IndexError, KeyError):
                    continue
                self.rubric_templates.append(tpl)
        for path in (tdir / "open-r1" / "README_excerpt.md", tdir / "deepseek-r1" / "README.md"):
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError:
                continue
            for line in lines:
                if "reason step by step" in line and len(line) < 200:
                    directive = line.strip().strip('"').strip()
                    if directive.startswith("3. "):
                        continue
                    self.cot_wrappers.append(_escape(directive) + "\n{problem}")
                    break


class _Defaults(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


class PromptBank:
    """Draws prompt texts of each kind the simulator needs."""

    def __init__(self, data: dict[str, Any], extra: ExtraPrompts | None = None) -> None:
        self.d = data
        self.extra = extra or ExtraPrompts()
        self._fields: dict[str, list[str]] = {}

    @classmethod
    def load(cls, prompts_dir: Path | None = None) -> PromptBank:
        """The built-in bank, enriched from ``prompts_dir`` when given."""
        extra = ExtraPrompts.read(prompts_dir) if prompts_dir is not None else None
        return cls(_builtin(), extra)

    # -- slot filling ---------------------------------------------------------------------------
    def _names(self, template: str) -> list[str]:
        names = self._fields.get(template)
        if names is None:
            names = [f for _, f, _, _ in _FORMATTER.parse(template) if f]
            self._fields[template] = names
        return names

    def _slot(self, rng: np.random.Generator, name: str, lang: str, local: dict[str, list[str]]) -> str:
        if name in local:
            return self.fill(rng, _pick(rng, local[name]), lang)
        slots = self.d["slots"].get(lang) or self.d["slots"]["en"]
        if name in slots:
            return str(_pick(rng, slots[name]))
        if name in self.d["slots"]["en"]:
            return str(_pick(rng, self.d["slots"]["en"][name]))
        return _number_slot(rng, name, self.d)

    def fill(
        self,
        rng: np.random.Generator,
        template: str,
        lang: str = "en",
        local: dict[str, list[str]] | None = None,
        **fixed: str,
    ) -> str:
        """Fill every ``{slot}`` of ``template``; ``fixed`` values are inserted verbatim."""
        values = {
            n: fixed[n] if n in fixed else self._slot(rng, n, lang, local or {})
            for n in self._names(template)
        }
        return template.format_map(values)

    # -- kinds ----------------------------------------------------------------------------------
    def benign(self, rng: np.random.Generator, langs: Sequence[str]) -> list[str]:
        """Ordinary user prompts, one per requested language."""
        out: list[str] = []
        for lang in langs:
            real = self.extra.benign.get(lang)
            if real and rng.random() < 0.5:
                out.append(_pick(rng, real))
                continue
            pool = self.d["benign"].get(lang) or self.d["benign"]["en"]
            prefix = _pick(rng, self.d["prefixes"].get(lang) or [""])
            out.append(prefix + self.fill(rng, _pick(rng, pool), lang))
        return out

    def code(self, rng: np.random.Generator, n: int) -> list[str]:
        """Everyday coding questions."""
        return [self.fill(rng, _pick(rng, self.d["code_tasks"])) for _ in range(n)]

    @property
    def n_apps(self) -> int:
        """How many app-backend templates there are."""
        return len(self.d["app_templates"])

    def app(self, rng: np.random.Generator, app: int, n: int) -> list[str]:
        """Requests from one app backend: its one template with varying slots."""
        spec = self.d["app_templates"][app % self.n_apps]
        return [self.fill(rng, spec["template"], "en", spec["slots"]) for _ in range(n)]

    def problems(self, rng: np.random.Generator, n: int, sweep: bool = False) -> list[str]:
        """Benchmark-style math problems (procedural, fixed, or real when loaded). ``sweep``: drawn per
        request by a campaign sweeping its bank: never the ten fixed problems (a fixed set re-sent from
        every seat all day is a benchmark re-run, not a sweep: issue 17, round 10)."""
        out: list[str] = []
        for _ in range(n):
            u = rng.random()
            if self.extra.problems and u < 0.6:
                out.append(_pick(rng, self.extra.problems))
            elif u < 0.85 or sweep:
                out.append(self.fill(rng, _pick(rng, self.d["math_templates"])))
            else:
                out.append(_pick(rng, self.d["math_problems"]))
        return out

    def eval_prompts(self, rng: np.random.Generator, template: int, n: int) -> list[str]:
        """An honest eval harness: one fixed format around benchmark problems."""
        tpl = self.d["eval_templates"][template % len(self.d["eval_templates"])]
        return [tpl.format(problem=p) for p in self.problems(rng, n)]

    def cot(self, rng: np.random.Generator, n: int, en_share: float = 0.8) -> tuple[list[str], list[str]]:
        """Chain-of-thought elicitation wrapped around problems; returns texts and languages."""
        wrappers: dict[str, list[str]] = self.d["cot_wrappers"]
        other = sorted(k for k in wrappers if k != "en")
        texts, langs = [], []
        for problem in self.problems(rng, n, sweep=True):
            lang = "en" if rng.random() < en_share else _pick(rng, other)
            pool = wrappers[lang] + (self.extra.cot_wrappers if lang == "en" else [])
            texts.append(_pick(rng, pool).format(problem=problem))
            langs.append(lang)
        return texts, langs

    def coercion(self, rng: np.random.Generator, langs: Sequence[str]) -> list[str]:
        """Reasoning-trace coercion in each given language, around a problem or a native task."""
        out: list[str] = []
        wrappers: dict[str, list[str]] = self.d["coercion_wrappers"]
        tasks: dict[str, list[str]] = self.d["coercion_tasks"]
        for lang in langs:
            task = (
                _pick(rng, tasks[lang])
                if lang in tasks and rng.random() < 0.4
                else self.problems(rng, 1, True)[0]
            )
            out.append(_pick(rng, wrappers.get(lang) or wrappers["zh"]).format(problem=task))
        return out

    @property
    def coercion_langs(self) -> list[str]:
        """Languages the coercion wrappers exist in."""
        return sorted(self.d["coercion_wrappers"])

    def rubric(self, rng: np.random.Generator, n: int) -> list[str]:
        """The model used as a grader / reward model."""
        templates = list(self.d["rubric_templates"]) + self.extra.rubric_templates
        answers = self.d["candidate_answers"]
        out = []
        for q in self.problems(rng, n, sweep=True):
            vals = _Defaults(
                question=q,
                answer=_pick(rng, answers),
                answer_b=_pick(rng, answers),
                ref_answer_1=_pick(rng, answers),
            )
            out.append(_pick(rng, templates).format_map(vals))
        return out

    def identity(self, rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
        """Identity probes ("which model are you")."""
        probes: dict[str, list[str]] = self.d["identity_probes"]
        keys = sorted(probes)
        langs = ["en" if rng.random() < 0.6 else _pick(rng, keys) for _ in range(n)]
        return [_pick(rng, probes[lang]) for lang in langs], langs

    def agent_first(self, rng: np.random.Generator, n: int, sweep: bool = False) -> list[str]:
        """The opening instruction of an agentic coding session. ``sweep``: a farm harvesting trajectories
        draws each session's task from its procedural bank (``agent_task_bank``: almost never a repeat),
        not the ten fixed tasks an honest agent user or a course opens with (a fixed set with a fill,
        repeated across a farm's seats, read as a course's sheet: issue 17, round 19, as round 10's
        ``problems(sweep=True)``)."""
        if not sweep:
            return [self.fill(rng, _pick(rng, self.d["agentic_tasks"])) for _ in range(n)]
        bank = self.d["agent_task_bank"]
        return [self.fill(rng, _pick(rng, bank["templates"]), "en", bank["slots"]) for _ in range(n)]

    def agent_next(self, rng: np.random.Generator, n: int) -> list[str]:
        """A later turn of an agentic session: a tool result or a short follow-up."""
        out = []
        for _ in range(n):
            pool = self.d["tool_results"] if rng.random() < 0.7 else self.d["agent_followups"]
            out.append(self.fill(rng, _pick(rng, pool)))
        return out

    def synthetic(self, rng: np.random.Generator, n: int, template: int | None = None) -> list[str]:
        """Bulk synthetic-data generation requests."""
        specs = self.d["synthetic_templates"]
        out = []
        for _ in range(n):
            spec = (
                specs[template % len(specs)]
                if template is not None and rng.random() < 0.8
                else _pick(rng, specs)
            )
            out.append(self.fill(rng, spec["template"], "en", spec["slots"]))
        return out

    def instructions(self, rng: np.random.Generator, n: int) -> list[str]:
        """Short instructions whose output distribution is worth harvesting."""
        out = []
        for _ in range(n):
            if self.extra.instructions and rng.random() < 0.5:
                out.append(_pick(rng, self.extra.instructions))
            else:
                out.append(self.fill(rng, _pick(rng, self.d["instructions"])))
        return out

    def skeleton(self, rng: np.random.Generator, n: int, tag: str) -> list[str]:
        """One campaign's template skeleton with varying slots (the low-and-slow family's signature)."""
        tpl = self.d["skeletons"][0]
        return [
            tpl.format(tag=f"{tag}-{int(rng.integers(1000, 9999))}", problem=p)
            for p in self.problems(rng, n, sweep=True)
        ]


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.random() * len(items))]


def _number_slot(rng: np.random.Generator, name: str, data: dict[str, Any]) -> str:
    ranges = {
        "n": (2, 11),
        "id": (1000, 99999),
        "a": (2, 60),
        "b": (2, 40),
        "c": (2, 30),
        "d": (1, 99),
        "p": (20, 200),
        "s": (30, 900),
        "big": (100, 5000),
        "pct": (5, 40),
    }
    if name == "name":
        return str(_pick(rng, data["names"]))
    if name == "plang":
        return str(_pick(rng, data["code_langs"]))
    lo, hi = ranges.get(name, (1, 100))
    return str(int(rng.integers(lo, hi)))
