"""Compiled rules and their vectorised evaluation over a feature frame."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from detector.contracts import Severity, Target
from detector.detect.rules.spec import Expect, Mode, Status

#: Columns of ``RuleSet.evaluate``'s result after the key column.
HIT_COLUMNS: dict[str, pl.DataType] = {
    "rule_id": pl.String(),
    "severity": pl.String(),
    "score": pl.Float64(),
    "mode": pl.String(),
    "campaign_type": pl.String(),
    "detail": pl.String(),
}
# Prefix of the per-rule columns inside evaluate; cannot clash with a feature name (not an identifier).
_RULE_COLUMN = "\x00rule:"
_VARIABLE = "\x00rule"


@dataclass(frozen=True, slots=True)
class InlineTest:
    """One inline test of a rule: feature values (others null), the expected outcome, its line."""

    name: str
    features: Mapping[str, object]
    expect: Expect
    line: int


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """A loaded rule: the spec's fields plus ``expr``, its boolean polars expression (null -> false).

    ``features`` are the feature columns the condition reads; ``detail`` the features shown in an
    alert's reason (the spec's ``detail``, else ``features``); ``detail_expr`` renders them for a row as
    ``"name=value name=value"``.
    """

    id: str
    title: str
    description: str
    severity: Severity
    target: Target
    condition: str
    tags: tuple[str, ...]
    mode: Mode
    campaign_type: str | None
    score: float
    detail: tuple[str, ...]
    tests: tuple[InlineTest, ...]
    path: Path
    expr: pl.Expr = field(repr=False)
    features: tuple[str, ...]
    detail_expr: pl.Expr = field(repr=False)
    output: str | None = None
    status: Status = "experimental"
    references: tuple[str, ...] = ()
    falsepositives: tuple[str, ...] = ()

    @property
    def shadow(self) -> bool:
        """Whether the rule runs in shadow mode (its hits are recorded, not enforced)."""
        return self.mode == "shadow"


def detail_expression(
    names: Iterable[str], catalogue: Mapping[str, pl.DataType | type[pl.DataType]]
) -> pl.Expr:
    """``"a=1 b=0.93"`` from the named feature columns; floats to 4 significant digits, null as ``null``."""
    parts: list[pl.Expr] = []
    for name in names:
        dtype = catalogue[name]
        col = pl.col(name)
        if dtype.is_float():
            # 4 significant digits: enough for a reason line, short enough to read
            col = col.round_sig_figs(4)
        text = col.cast(pl.String).fill_null("null")
        if parts:
            parts.append(pl.lit(" "))
        parts.extend([pl.lit(f"{name}="), text])
    if not parts:
        return pl.lit("", dtype=pl.String)
    return pl.concat_str(parts)


class RuleSet:
    """An immutable set of compiled rules, evaluated together over a feature frame."""

    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        self.rules: tuple[CompiledRule, ...] = tuple(sorted(rules, key=lambda r: r.id))
        self._by_id = {rule.id: rule for rule in self.rules}

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[CompiledRule]:
        return iter(self.rules)

    def __repr__(self) -> str:
        return f"RuleSet({len(self.rules)} rules: {', '.join(self._by_id)})"

    def get(self, rule_id: str) -> CompiledRule | None:
        """The rule with this id, if any."""
        return self._by_id.get(rule_id)

    def for_target(self, target: str) -> tuple[CompiledRule, ...]:
        """The rules that run on frames of ``target`` ("account" or "cluster")."""
        return tuple(rule for rule in self.rules if rule.target == target)

    def evaluate(self, frame: pl.DataFrame, target: str, key: str | None = None) -> pl.DataFrame:
        """One row per (row of ``frame``, rule of ``target`` that fired on it).

        Columns: ``key`` (default ``"<target>_id"``, with the frame's dtype), then rule_id, severity,
        score, mode, campaign_type, detail. Shadow rules are included (see ``mode``): the caller decides
        what a shadow hit does. Rows are ordered by rule id, then by their order in ``frame``. All rules
        are computed in one ``select``; the hits are then unpivoted.
        """
        key = key or f"{target}_id"
        if key not in frame.columns:
            raise ValueError(f"evaluate: key column '{key}' is not in the frame")
        if key in HIT_COLUMNS:
            raise ValueError(f"evaluate: key column '{key}' clashes with an output column")
        rules = self.for_target(target)
        schema = pl.Schema({key: frame.schema[key], **HIT_COLUMNS})
        if not rules or frame.height == 0:
            return pl.DataFrame(schema=schema)
        needed = {name for rule in rules for name in (*rule.features, *rule.detail)}
        missing = sorted(needed - set(frame.columns))
        if missing:
            raise ValueError(
                f"evaluate: the {target} frame lacks features used by the rules: {', '.join(missing)}"
            )
        names = [f"{_RULE_COLUMN}{rule.id}" for rule in rules]
        wide = frame.select(
            pl.col(key),
            *[
                pl.when(rule.expr).then(rule.detail_expr).otherwise(None).alias(name)
                for rule, name in zip(rules, names, strict=True)
            ],
        )
        hits = wide.unpivot(on=names, index=key, variable_name=_VARIABLE, value_name="detail").drop_nulls(
            "detail"
        )
        meta = pl.DataFrame(
            {
                _VARIABLE: names,
                "rule_id": [r.id for r in rules],
                "severity": [r.severity for r in rules],
                "score": [r.score for r in rules],
                "mode": [r.mode for r in rules],
                "campaign_type": [r.campaign_type for r in rules],
            },
            schema={_VARIABLE: pl.String, **{k: v for k, v in HIT_COLUMNS.items() if k != "detail"}},
        )
        joined = hits.join(meta, on=_VARIABLE, how="left", maintain_order="left")
        return joined.select(list(schema))
