"""A rule's ``output``: one human sentence with feature placeholders, rendered from the hit's features.

Falco's ``output`` habit: the rule author writes the sentence an analyst reads, e.g.
``"{accounts} new accounts share {link_families} kinds of artefact; {cot_share_24h:.0%} of their
requests ask for step-by-step reasoning"``. A placeholder is ``{feature}`` or ``{feature:spec}`` with a
Python format spec (``.0%``, ``,.0f``, ``.2f``); ``{{`` and ``}}`` are literal braces. Placeholders are
checked at load against the target's feature catalogue (``check_output``), so ``rules check`` catches a
typo. Only feature values are rendered (counts, shares, hashes): never prompt text, which no feature
holds.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from detector.detect.rules.compiler import Catalogue, kind_of, suggest

_FORMATTER = string.Formatter()
#: A sample value per feature kind, formatted at load to prove a placeholder's spec fits the feature.
_SAMPLES: dict[str, Any] = {
    "number": 0.5,
    "bool": True,
    "string": "x",
    "time": datetime(2026, 1, 1),  # noqa: DTZ001 - a sample for format-spec checking only
    "duration": timedelta(hours=1),
}
#: What a placeholder shows when its feature is null (unknown).
MISSING = "n/a"


def placeholders(template: str) -> list[tuple[str, str]]:
    """(feature, format spec) for each placeholder, in order; raises ValueError on broken braces."""
    out: list[tuple[str, str]] = []
    for _, field, spec, conversion in _FORMATTER.parse(template):
        if field is None:
            continue
        if conversion:
            raise ValueError(f"placeholder '{{{field}!{conversion}}}': conversions are not supported")
        if "{" in (spec or ""):
            raise ValueError(f"placeholder '{{{field}:{spec}}}': nested placeholders are not supported")
        out.append((field, spec or ""))
    return out


def check_output(template: str, catalogue: Catalogue) -> list[str]:
    """Every problem of an output template against a feature catalogue (empty: fine)."""
    try:
        fields = placeholders(template)
    except ValueError as exc:
        return [f"output: {exc}"]
    problems: list[str] = []
    for name, spec in fields:
        if not name.isidentifier():
            problems.append(f"output: placeholder '{{{name}}}' must name one feature")
            continue
        if name not in catalogue:
            problems.append(f"output: unknown feature '{name}'{suggest(name, catalogue)}")
            continue
        if spec:
            sample = _SAMPLES.get(kind_of(catalogue[name]))
            try:
                format(sample, spec)
            except (ValueError, TypeError) as exc:
                problems.append(f"output: '{{{name}:{spec}}}' does not fit the feature's type: {exc}")
    return problems


def format_value(value: Any, spec: str = "") -> str:
    """One feature value as text: the spec if given, else counts with separators and 3 significant
    digits for fractions; null and NaN as ``n/a``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if spec:
        return format(value, spec)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds() / 3600:.3g} h"
    return str(value)


def render_output(template: str, features: Mapping[str, Any]) -> str:
    """The sentence with each placeholder replaced by its feature's formatted value."""
    parts: list[str] = []
    for literal, field, spec, _ in _FORMATTER.parse(template):
        parts.append(literal)
        if field is not None:
            try:
                parts.append(format_value(features.get(field), spec or ""))
            except (ValueError, TypeError):
                parts.append(format_value(features.get(field)))
    return "".join(parts)
