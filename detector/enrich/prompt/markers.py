"""The marker sets of ``detector/data/prompt_markers.json``, compiled to regexes and checked at load.

The file holds:

- ``sets``: phrase lists per language for ``cot_strong``, ``coercion``, ``step`` (bare step-by-step phrases),
  ``reason_word`` (reasoning / problem-solving words that make a bare step phrase count), ``rubric`` and
  ``identity``. A phrase is matched as written, in lower case, in Sentence case and in UPPER case, with
  hyphen/space variants of the ``compounds`` and straight/curly apostrophes (German nouns are written
  capitalised, as they are used).
- ``prefilters``: per group of sets, the case-sensitive literal fragments that every phrase of the group
  contains ("easoning" covers reasoning/Reasoning), plus optional ``nonascii_keywords``.
- ``coercion_pairs``: qualifiers and reasoning-trace nouns; a qualifier and a noun in one sentence make a
  coercion even when the exact phrase is not listed.
- ``code_literals``, ``template_keywords`` and ``simhash_references``.

``compile_markers`` checks the coverage rule that makes the prefilter exact for the cases above (see its
docstring) and raises ``MarkerError`` naming every violation at once, so a bad edit fails at start-up.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final

import polars as pl

from detector.enrich.prompt.hashing import simhash64
from detector.errors import DetectorError

#: Literals per prefilter regex. A regex call costs ~0.15 us per row almost whatever its size (measured),
#: so a group is one regex; one- or two-byte literals spoil the SIMD literal search and get their own.
LITERALS_PER_REGEX: Final = 100
#: A coercion qualifier and a reasoning-trace noun count as a pair at most this many characters apart.
PAIR_GAP_CHARS: Final = 48

#: The reasoning sets; they share one prefilter group.
REASONING_SETS: Final = ("cot_strong", "coercion", "step")
#: Every set the features need.
REQUIRED_SETS: Final = (*REASONING_SETS, "reason_word", "rubric", "identity")


@dataclass(frozen=True)
class PhraseSet:
    """One marker set's phrase variants as case-sensitive regex alternations."""

    name: str
    ascii_regex: str | None
    nonascii_regex: str | None

    @staticmethod
    def union(name: str, sets: Iterable[PhraseSet]) -> PhraseSet:
        """One set matching any phrase of ``sets``."""
        members = list(sets)
        return PhraseSet(
            name,
            "|".join(r for s in members if (r := s.ascii_regex)) or None,
            "|".join(r for s in members if (r := s.nonascii_regex)) or None,
        )


@dataclass(frozen=True)
class Prefilter:
    """A group's prefilter: ASCII literal regexes for every row, non-ASCII ones for non-ASCII rows."""

    name: str
    sets: tuple[str, ...]
    regexes: tuple[str, ...]
    nonascii_regexes: tuple[str, ...]


@dataclass(frozen=True)
class Markers:
    """Everything compiled from the marker file."""

    sets: Mapping[str, PhraseSet]
    prefilters: Mapping[str, Prefilter]
    code_ascii: tuple[str, ...]
    code_nonascii: tuple[str, ...]
    template_ascii: tuple[str, ...]
    template_nonascii: tuple[str, ...]
    coercion_pair: str | None  # a qualifier and a trace noun in one sentence, either order
    simhash_refs: Mapping[str, tuple[int, ...]]  # set name -> reference SimHashes
    version: int

    @property
    def reasoning(self) -> Prefilter:
        """The prefilter group of the reasoning sets."""
        return next(g for g in self.prefilters.values() if "cot_strong" in g.sets)


class MarkerError(DetectorError, ValueError):
    """The marker file is inconsistent (the message names every problem)."""


def _literal_regexes(literals: Iterable[str], per_regex: int = LITERALS_PER_REGEX) -> tuple[str, ...]:
    """Alternations of escaped literals, ``per_regex`` at a time; literals of <= 2 bytes get their own."""
    lits = sorted(set(literals))
    short = [x for x in lits if len(x.encode()) <= 2]
    rest = [x for x in lits if len(x.encode()) > 2]
    chunks = [rest[i : i + per_regex] for i in range(0, len(rest), per_regex)] + ([short] if short else [])
    return tuple("|".join(pl.escape_regex(x) for x in chunk) for chunk in chunks)


def _split_regexes(literals: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    lits = set(literals)
    return _literal_regexes(x for x in lits if x.isascii()), _literal_regexes(
        x for x in lits if not x.isascii()
    )


def _sentence_case(p: str) -> str:
    return p[:1].upper() + p[1:]


def phrase_forms(phrase: str, compounds: Sequence[str]) -> set[str]:
    """Spelling variants of a phrase as written: hyphenated compounds, curly apostrophe."""
    out = {phrase}
    low = phrase.lower()
    for comp in compounds:
        if comp in low:
            start = low.index(comp)
            written = phrase[start : start + len(comp)]
            out |= {p.replace(written, written.replace(" ", "-")) for p in out}
    if "'" in phrase:
        out |= {p.replace("'", "\u2019") for p in out}
    return out


def case_forms(form: str) -> set[str]:
    """The cases a phrase is matched in: as written, lower, Sentence (of both) and UPPER."""
    return {form, form.lower(), _sentence_case(form), _sentence_case(form.lower()), form.upper()}


def _alternation(literals: Iterable[str]) -> str | None:
    """A case-sensitive alternation of literals (a case-insensitive one measured up to 20x slower)."""
    lits = sorted(set(literals))
    return "|".join(pl.escape_regex(x) for x in lits) if lits else None


def _has_non_latin_letter(text: str) -> bool:
    return any(ch.isalpha() and not unicodedata.name(ch, "").startswith("LATIN") for ch in text)


def compile_markers(raw: Mapping[str, Any]) -> Markers:
    """Compile a parsed marker file; raise ``MarkerError`` listing every inconsistency.

    Coverage rule (it makes the two-stage match exact for the checked cases): every phrase, as written, in
    lower case and in Sentence case, contains one of its group's ASCII fragments; or, if it has non-ASCII
    characters, one of the group's non-ASCII fragments; or, for a group without non-ASCII fragments, a
    non-Latin letter (those phrases are searched wherever the prompt's first characters hold one).
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
            gname, tuple(g["sets"]), _literal_regexes(keywords), _literal_regexes(nonascii)
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
                for form in phrase_forms(p, compounds):
                    cased = case_forms(form)
                    variants |= cased
                    if name == "reason_word":  # evaluated only where a step phrase matched: no prefilter
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
    problems += [f"sets.{s}: missing" for s in REQUIRED_SETS if s not in sets]
    if len({group_of.get(s) for s in REASONING_SETS}) != 1:
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
    qualifiers = _alternation(v for q in pairs.get("qualifiers", []) for v in case_forms(str(q)))
    nouns = _alternation(v for n in pairs.get("nouns", []) for v in case_forms(str(n)))
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
    """The compiled marker sets (loaded once per process)."""
    return compile_markers(load_marker_file())
