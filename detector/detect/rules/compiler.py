"""Type-check a parsed condition against a feature catalogue and compile it to one ``pl.Expr``.

Every feature has a *kind* derived from its polars dtype (number, bool, string, time, duration, other).
The checker walks the AST once, records every type error it finds (an ``error`` kind stops cascades),
and builds the polars expression alongside. Semantics worth knowing:

* null means "unknown": comparisons, arithmetic, ``in``, ``between``, ``min`` and ``max`` with a null
  operand give null, ``and``/``or`` follow Kleene logic, and the final condition's nulls become
  ``false``: a rule never fires on a feature it does not know.
* NaN in a float feature is read as null, and ``x / 0`` is null (polars would order NaN above every
  number, so ``0 / 0 > 0.5`` would otherwise fire).
* unsigned integer features are widened to Int64 so ``a - b`` cannot wrap around.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal as TypingLiteral

import polars as pl

from detector.detect.rules.errors import ExpressionError
from detector.detect.rules.expr import (
    FUNCTIONS,
    Binary,
    Call,
    Feature,
    InList,
    IsNull,
    Literal,
    Node,
    Unary,
    parse_condition,
)
from detector.errors import DetectorError

Kind = TypingLiteral["number", "bool", "string", "time", "duration", "null", "other", "error"]
Catalogue = Mapping[str, pl.DataType | type[pl.DataType]]

_ORDERED: frozenset[Kind] = frozenset({"number", "string", "time", "duration"})
_ARITHMETIC = frozenset({"+", "-", "*", "/"})
_KIND_WORDS: dict[Kind, str] = {
    "number": "a number",
    "bool": "a boolean",
    "string": "a string",
    "time": "a timestamp",
    "duration": "a duration",
    "null": "null",
    "other": "a value of an unsupported type",
    "error": "an invalid value",
}


def _dtype_class(dtype: pl.DataType | type[pl.DataType]) -> type[pl.DataType]:
    return dtype if isinstance(dtype, type) else type(dtype)


def kind_of(dtype: pl.DataType | type[pl.DataType]) -> Kind:
    """The condition-language kind of a polars dtype (given as a class or an instance)."""
    cls = _dtype_class(dtype)
    if issubclass(cls, pl.Boolean):
        return "bool"
    if dtype.is_numeric():
        return "number"
    if issubclass(cls, pl.String | pl.Categorical | pl.Enum):
        return "string"
    if issubclass(cls, pl.Datetime | pl.Date | pl.Time):
        return "time"
    if issubclass(cls, pl.Duration):
        return "duration"
    return "other"


def is_integral(dtype: pl.DataType | type[pl.DataType]) -> bool:
    """Whether a numeric dtype holds integers."""
    return bool(dtype.is_integer())


def suggest(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate name, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def feature_expr(name: str, dtype: pl.DataType | type[pl.DataType]) -> pl.Expr:
    """How a condition reads a feature column: NaN as null, unsigned widened, categoricals as strings."""
    col = pl.col(name)
    cls = _dtype_class(dtype)
    if dtype.is_float():
        return col.fill_nan(None)
    if dtype.is_unsigned_integer():
        return col.cast(pl.Int64)
    if issubclass(cls, pl.Categorical | pl.Enum):
        return col.cast(pl.String)
    return col


@dataclass(frozen=True, slots=True)
class Typed:
    """A compiled sub-expression: its kind, its polars expression and, for numbers, whether integral."""

    kind: Kind
    expr: pl.Expr
    integral: bool = False


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    """A checked condition: ``expr`` is boolean with nulls already filled with ``false``."""

    source: str
    expr: pl.Expr
    features: tuple[str, ...]


class ConditionError(DetectorError):
    """All syntax or type errors of one condition (a syntax error stops parsing, so it comes alone)."""

    def __init__(self, errors: list[ExpressionError]) -> None:
        super().__init__("; ".join(f"column {e.pos + 1}: {e.message}" for e in errors))
        self.errors = errors


_ERROR = Typed("error", pl.lit(None))


class _Checker:
    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.errors: list[ExpressionError] = []
        self.features: list[str] = []

    def fail(self, message: str, pos: int) -> Typed:
        self.errors.append(ExpressionError(message, pos))
        return _ERROR

    def visit(self, node: Node) -> Typed:
        if isinstance(node, Literal):
            return self.literal(node)
        if isinstance(node, Feature):
            return self.feature(node)
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, InList):
            return self.in_list(node)
        if isinstance(node, IsNull):
            operand = self.visit(node.operand)
            test = operand.expr.is_not_null() if node.negated else operand.expr.is_null()
            return Typed("bool", test) if operand.kind != "error" else _ERROR
        return self.call(node)

    def literal(self, node: Literal) -> Typed:
        value = node.value
        if value is None:
            return Typed("null", pl.lit(None))
        if isinstance(value, bool):
            return Typed("bool", pl.lit(value, dtype=pl.Boolean))
        if isinstance(value, int):
            return Typed("number", pl.lit(value, dtype=pl.Int64), integral=True)
        if isinstance(value, float):
            return Typed("number", pl.lit(value, dtype=pl.Float64))
        return Typed("string", pl.lit(value, dtype=pl.String))

    def feature(self, node: Feature) -> Typed:
        dtype = self.catalogue.get(node.name)
        if dtype is None:
            return self.fail(f"unknown feature '{node.name}'{suggest(node.name, self.catalogue)}", node.pos)
        if node.name not in self.features:
            self.features.append(node.name)
        kind = kind_of(dtype)
        return Typed(kind, feature_expr(node.name, dtype), integral=kind == "number" and is_integral(dtype))

    def unary(self, node: Unary) -> Typed:
        operand = self.visit(node.operand)
        if operand.kind == "error":
            return _ERROR
        if node.op == "not":
            if operand.kind != "bool":
                return self.fail(f"'not' needs a boolean, got {_KIND_WORDS[operand.kind]}", node.pos)
            return Typed("bool", ~operand.expr)
        if operand.kind != "number":
            return self.fail(f"'-' needs a number, got {_KIND_WORDS[operand.kind]}", node.pos)
        return Typed("number", -operand.expr, operand.integral)

    def binary(self, node: Binary) -> Typed:
        left, right = self.visit(node.left), self.visit(node.right)
        if "error" in (left.kind, right.kind):
            return _ERROR
        kinds = f"{_KIND_WORDS[left.kind]} and {_KIND_WORDS[right.kind]}"
        if node.op in ("and", "or"):
            if left.kind != "bool" or right.kind != "bool":
                return self.fail(f"'{node.op}' needs booleans on both sides, got {kinds}", node.pos)
            return Typed("bool", left.expr & right.expr if node.op == "and" else left.expr | right.expr)
        if node.op in _ARITHMETIC:
            if left.kind != "number" or right.kind != "number":
                return self.fail(f"arithmetic '{node.op}' needs numbers, got {kinds}", node.pos)
            if node.op == "/":
                quotient = pl.when(right.expr == 0).then(None).otherwise(left.expr / right.expr)
                return Typed("number", quotient.fill_nan(None))
            expr = {"+": left.expr + right.expr, "-": left.expr - right.expr, "*": left.expr * right.expr}
            return Typed("number", expr[node.op], left.integral and right.integral)
        return self.compare(node, left, right, kinds)

    def compare(self, node: Binary, left: Typed, right: Typed, kinds: str) -> Typed:
        if "null" in (left.kind, right.kind):
            word = "is not null" if node.op == "!=" else "is null"
            return self.fail(f"comparing with null never fires: write '{word}'", node.pos)
        if left.kind != right.kind or left.kind == "other":
            return self.fail(f"cannot compare {kinds} with '{node.op}'", node.pos)
        if node.op not in ("==", "!=") and left.kind not in _ORDERED:
            return self.fail(
                f"'{node.op}' does not apply to {_KIND_WORDS[left.kind]}; use '==' or '!='", node.pos
            )
        ops = {
            "<": left.expr < right.expr,
            "<=": left.expr <= right.expr,
            ">": left.expr > right.expr,
            ">=": left.expr >= right.expr,
            "==": left.expr == right.expr,
            "!=": left.expr != right.expr,
        }
        return Typed("bool", ops[node.op])

    def in_list(self, node: InList) -> Typed:
        operand = self.visit(node.operand)
        word = "not in" if node.negated else "in"
        if operand.kind == "error":
            return _ERROR
        if operand.kind not in ("number", "string", "bool"):
            return self.fail(
                f"'{word}' needs a number, string or boolean, got {_KIND_WORDS[operand.kind]}", node.pos
            )
        items = [self.literal(item) for item in node.items]
        ok = True
        for item, typed in zip(node.items, items, strict=True):
            if typed.kind == "null":
                self.fail("null in a list never matches: test with 'is null'", item.pos)
                ok = False
            elif typed.kind != operand.kind:
                self.fail(
                    f"list item is {_KIND_WORDS[typed.kind]} but the value tested is "
                    f"{_KIND_WORDS[operand.kind]}",
                    item.pos,
                )
                ok = False
        if not ok:
            return _ERROR
        values = [item.value for item in node.items]
        expr = operand.expr
        if operand.kind == "number":
            # polars 2 no longer coerces in is_in: both sides must be Int64, or both Float64
            if operand.integral and all(t.integral for t in items):
                test = expr.cast(pl.Int64).is_in(pl.Series(values, dtype=pl.Int64).implode())
            else:
                floats = [float(v) for v in values if isinstance(v, int | float)]
                test = expr.cast(pl.Float64).is_in(pl.Series(floats, dtype=pl.Float64).implode())
        else:
            dtype = pl.String if operand.kind == "string" else pl.Boolean
            test = expr.is_in(pl.Series(values, dtype=dtype).implode())
        return Typed("bool", ~test if node.negated else test)

    def call(self, node: Call) -> Typed:
        args = [self.visit(arg) for arg in node.args]
        low, high = FUNCTIONS[node.name]
        if len(args) < low or (high is not None and len(args) > high):
            want = f"{low} argument{'s' if low != 1 else ''}" if high == low else f"at least {low} arguments"
            return self.fail(f"{node.name}() takes {want}, got {len(args)}", node.pos)
        if any(a.kind == "error" for a in args):
            return _ERROR
        kinds = ", ".join(_KIND_WORDS[a.kind] for a in args)
        exprs = [a.expr for a in args]
        if node.name in ("abs", "log1p", "min", "max"):
            if any(a.kind != "number" for a in args):
                return self.fail(f"{node.name}() needs numbers, got {kinds}", node.pos)
            if node.name == "abs":
                return Typed("number", exprs[0].abs(), args[0].integral)
            if node.name == "log1p":
                return Typed("number", exprs[0].log1p().fill_nan(None))
            any_null = pl.any_horizontal([e.is_null() for e in exprs])
            pick = pl.min_horizontal(exprs) if node.name == "min" else pl.max_horizontal(exprs)
            return Typed(
                "number", pl.when(any_null).then(None).otherwise(pick), all(a.integral for a in args)
            )
        if node.name == "coalesce":
            real = {a.kind for a in args if a.kind != "null"}
            if len(real) > 1 or "other" in real:
                return self.fail(f"coalesce() needs arguments of one type, got {kinds}", node.pos)
            kind: Kind = real.pop() if real else "null"
            integral = all(a.integral for a in args if a.kind != "null")
            if kind == "number" and not integral:
                exprs = [e.cast(pl.Float64) for e in exprs]
            return Typed(kind, pl.coalesce(exprs), integral and kind == "number")
        # between(x, lo, hi): inclusive at both ends
        kinds_seen = {a.kind for a in args}
        if len(kinds_seen) != 1 or not kinds_seen <= _ORDERED:
            return self.fail(f"between() needs three numbers, strings or timestamps, got {kinds}", node.pos)
        return Typed("bool", exprs[0].is_between(exprs[1], exprs[2], closed="both"))


def compile_condition(source: str, catalogue: Catalogue) -> CompiledCondition:
    """Parse, type-check and compile ``source``; raises ``ConditionError`` listing every error found."""
    try:
        tree = parse_condition(source)
    except ExpressionError as exc:
        raise ConditionError([exc]) from None
    checker = _Checker(catalogue)
    typed = checker.visit(tree)
    if typed.kind not in ("bool", "error"):
        checker.fail(
            f"the condition must be true or false, but it is {_KIND_WORDS[typed.kind]}"
            " (compare it, e.g. 'x > 0', or test it with 'is null')",
            0,
        )
    if checker.errors:
        raise ConditionError(sorted(checker.errors, key=lambda e: e.pos))
    return CompiledCondition(source, typed.expr.fill_null(False), tuple(checker.features))
