"""Load a rule directory: parse, validate, compile and test every file, reporting every error at once.

Each file goes raw YAML -> ``RuleSpec`` (unknown keys rejected) -> ``CompiledRule`` (condition
type-checked against the target's feature catalogue) -> its inline tests run. Nothing stops at the
first problem: ``load_rules`` raises one ``RuleLoadError`` with the errors of all files, and
``check_rules`` returns them with the inline test results (the ``check`` command and CI gate).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from detector.detect.rules.compiler import (
    Catalogue,
    CompiledCondition,
    ConditionError,
    Kind,
    compile_condition,
    kind_of,
    suggest,
)
from detector.detect.rules.errors import RuleError, RuleLoadError
from detector.detect.rules.output import check_output
from detector.detect.rules.reference import check_reference
from detector.detect.rules.ruleset import CompiledRule, InlineTest, RuleSet, detail_expression
from detector.detect.rules.source import RuleSource, read_rule_yaml
from detector.detect.rules.spec import RULE_KEYS, TEST_KEYS, Expect, RuleSpec

Catalogues = Mapping[str, Catalogue]

RULE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class TestResult:
    """The outcome of one inline test; ``fired`` is None when the test frame could not be evaluated."""

    rule_id: str
    name: str
    expect: Expect
    fired: bool | None
    path: Path
    line: int

    __test__ = False  # not a pytest test class

    @property
    def passed(self) -> bool:
        """Whether the rule did what the test expects."""
        return self.fired is not None and self.fired == (self.expect == "fire")


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Everything ``check_rules`` found: load errors (failing inline tests included) and test results."""

    errors: tuple[RuleError, ...]
    results: tuple[TestResult, ...]
    rules: int

    @property
    def ok(self) -> bool:
        """True when every file loaded and every inline test passed."""
        return not self.errors and all(r.passed for r in self.results)

    def render(self) -> str:
        """A human summary: one line per error, then the totals."""
        lines = [str(e) for e in self.errors]
        passed = sum(r.passed for r in self.results)
        lines.append(
            f"{self.rules} rules loaded, {passed}/{len(self.results)} inline tests passed, "
            f"{len(self.errors)} error{'s' if len(self.errors) != 1 else ''}"
        )
        return "\n".join(lines)


def rule_files(directory: Path) -> list[Path]:
    """Rule files under ``directory``, recursively (``*.yaml``, ``*.yml``; hidden paths skipped), sorted."""
    if not directory.is_dir():
        return []
    return sorted(
        path
        for path in directory.rglob("*")
        if path.suffix in RULE_SUFFIXES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for step in loc:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def _pydantic_error(source: RuleSource, err: ErrorDetails) -> RuleError:
    loc = tuple(err["loc"])
    where = _dotted(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = TEST_KEYS if loc[:1] == ("tests",) else RULE_KEYS
        place = f" in {_dotted(loc[:-1])}" if len(loc) > 1 else ""
        message = f"unknown key '{key}'{place}{suggest(key, allowed)}; allowed keys: {', '.join(allowed)}"
        return source.error(source.node_at(loc, key=True).start_mark, message)
    if kind == "missing":
        place = f" in {_dotted(loc[:-1])}" if len(loc) > 1 else ""
        return source.error(source.node_at(loc[:-1]).start_mark, f"missing required key '{loc[-1]}'{place}")
    if kind in ("literal_error", "enum"):  # a Literal or an Enum (Severity): the same message
        expected = err.get("ctx", {}).get("expected", "")
        message = f"{where}: {err['input']!r} is not allowed; expected {expected}"
    else:
        message = f"{where}: {err['msg'][:1].lower()}{err['msg'][1:]}"
    return source.error(source.node_at(loc).start_mark, message)


_VALUE_OK: dict[Kind, tuple[type, ...]] = {
    "number": (int, float),
    "bool": (bool,),
    "string": (str,),
    "time": (dt.datetime, dt.date),
}


def _value_fits(value: object, kind: Kind) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) and kind != "bool":
        return False
    return isinstance(value, _VALUE_OK.get(kind, ()))


def _check_tests(source: RuleSource, spec: RuleSpec, catalogue: Catalogue | None) -> list[RuleError]:
    errors: list[RuleError] = []
    if not spec.tests:
        mark = source.node_at(("tests",)).start_mark if "tests" in source.data else None
        return [
            source.error(
                mark, "rule has no tests: add at least one 'fire' and one 'no_fire' case under 'tests'"
            )
        ]
    expects = {t.expect for t in spec.tests}
    for needed in ("fire", "no_fire"):
        if needed not in expects:
            mark = source.node_at(("tests",)).start_mark
            errors.append(
                source.error(
                    mark, f"tests need at least one 'fire' and one 'no_fire' case; none expects '{needed}'"
                )
            )
    seen: set[str] = set()
    for i, test in enumerate(spec.tests):
        if test.name in seen:
            mark = source.node_at(("tests", i, "name")).start_mark
            errors.append(source.error(mark, f"duplicate test name '{test.name}'"))
        seen.add(test.name)
        if catalogue is None:
            continue
        for name, value in test.features.items():
            if name not in catalogue:
                node = source.node_at(("tests", i, "features", name), key=True)
                message = f"tests[{i}].features: unknown feature '{name}'{suggest(name, catalogue)}"
                errors.append(source.error(node.start_mark, message))
                continue
            kind = kind_of(catalogue[name])
            if not _value_fits(value, kind):
                node = source.node_at(("tests", i, "features", name))
                message = (
                    f"tests[{i}].features.{name}: {value!r} does not fit the feature's type {catalogue[name]}"
                )
                errors.append(source.error(node.start_mark, message))
    return errors


def _check_condition(
    source: RuleSource, condition: str, catalogue: Catalogue
) -> tuple[CompiledCondition | None, list[RuleError]]:
    """Compile the condition; its errors point at their line and column inside the file."""
    try:
        return compile_condition(condition, catalogue), []
    except ConditionError as exc:
        node = source.node_at(("condition",))
        errors = []
        for err in exc.errors:
            line, column = source.position_in_scalar(node, err.pos)
            errors.append(
                RuleError(source.path, line, column, f"condition (column {err.pos + 1}): {err.message}")
            )
        return None, errors


def _check_id(source: RuleSource, rule_id: str) -> list[RuleError]:
    """``id`` must be the file name's stem."""
    if rule_id == source.path.stem:
        return []
    message = f"id '{rule_id}' must equal the file name stem '{source.path.stem}'"
    return [source.error(source.node_at(("id",)).start_mark, message)]


def _salvage(source: RuleSource, exc: ValidationError, catalogues: Catalogues) -> list[RuleError]:
    """The spec did not validate: still check the id and condition where they are usable on their own."""
    bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
    data = source.data
    rule_id, target, condition = data.get("id"), data.get("target"), data.get("condition")
    errors: list[RuleError] = []
    if isinstance(rule_id, str) and "id" not in bad:
        errors.extend(_check_id(source, rule_id))
    if isinstance(target, str) and isinstance(condition, str) and not bad & {"target", "condition"}:
        catalogue = catalogues.get(target)
        if catalogue is not None:
            errors.extend(_check_condition(source, condition, catalogue)[1])
    return errors


def _build_rule(source: RuleSource, catalogues: Catalogues) -> tuple[CompiledRule | None, list[RuleError]]:
    """Validate one parsed file into a compiled rule, or return all its errors."""
    try:
        spec = RuleSpec.model_validate(source.data)
    except ValidationError as exc:
        return None, [_pydantic_error(source, e) for e in exc.errors()] + _salvage(source, exc, catalogues)
    errors = _check_id(source, spec.id)
    catalogue = catalogues.get(spec.target)
    condition = None
    if catalogue is None:
        have = ", ".join(sorted(catalogues)) or "none"
        message = f"no feature catalogue for target '{spec.target}' (catalogues: {have})"
        errors.append(source.error(source.node_at(("target",)).start_mark, message))
    else:
        condition, condition_errors = _check_condition(source, spec.condition, catalogue)
        errors.extend(condition_errors)
        for i, name in enumerate(spec.detail):
            if name not in catalogue:
                message = f"detail: unknown feature '{name}'{suggest(name, catalogue)}"
                errors.append(source.error(source.node_at(("detail", i)).start_mark, message))
        if spec.output is not None:
            mark = source.node_at(("output",)).start_mark
            errors.extend(source.error(mark, problem) for problem in check_output(spec.output, catalogue))
    errors.extend(_check_tests(source, spec, catalogue))
    if errors or condition is None or catalogue is None:
        return None, errors
    tests = tuple(
        InlineTest(t.name, dict(t.features), t.expect, source.node_at(("tests", i)).start_mark.line + 1)
        for i, t in enumerate(spec.tests)
    )
    detail = tuple(spec.detail) or condition.features  # default reason: the features the condition reads
    rule = CompiledRule(
        id=spec.id,
        title=spec.title,
        description=spec.description,
        severity=spec.severity,
        target=spec.target,
        condition=spec.condition,
        tags=tuple(spec.tags),
        mode=spec.mode,
        campaign_type=spec.campaign_type,
        score=spec.effective_score,
        detail=detail,
        tests=tests,
        path=source.path,
        expr=condition.expr,
        features=condition.features,
        detail_expr=detail_expression(detail, catalogue),
        output=spec.output,
        status=spec.status,
        references=tuple(spec.references),
        falsepositives=tuple(spec.falsepositives),
    )
    return rule, []


def inline_test_frame(tests: tuple[InlineTest, ...], catalogue: Catalogue) -> pl.DataFrame:
    """One row per test, one column per catalogue feature in its dtype; features a test omits are null."""
    columns: list[pl.Series] = [pl.Series("\x00test", range(len(tests)), dtype=pl.Int64)]
    for name, dtype in catalogue.items():
        values: list[Any] = [t.features.get(name) for t in tests]
        columns.append(pl.Series(name, values, dtype=dtype))
    return pl.DataFrame(columns)


def run_inline_tests(rule: CompiledRule, catalogue: Catalogue) -> tuple[list[TestResult], list[RuleError]]:
    """Run a rule's inline tests in one vectorised pass; failures come back as errors at the test's line."""
    try:
        fired: list[bool | None] = list(
            inline_test_frame(rule.tests, catalogue).select(rule.expr)[:, 0].to_list()
        )
        problem = ""
    except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError) as exc:  # e.g. a value too big
        fired = [None] * len(rule.tests)
        problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
    results: list[TestResult] = []
    errors: list[RuleError] = []
    for test, did_fire in zip(rule.tests, fired, strict=True):
        result = TestResult(rule.id, test.name, test.expect, did_fire, rule.path, test.line)
        results.append(result)
        if did_fire is None:
            errors.append(
                RuleError(rule.path, test.line, None, f"inline test '{test.name}' could not run: {problem}")
            )
        elif not result.passed:
            outcome = "fired" if did_fire else "did not fire"
            message = f"inline test '{test.name}' expects {test.expect} but the rule {outcome}"
            errors.append(RuleError(rule.path, test.line, None, message))
    return results, errors


def _unbound_no_fire(rule: CompiledRule) -> list[RuleError]:
    """A ``no_fire`` test must bind every feature the condition reads: an unbound one is null, and a
    comparison with null never fires, so the test would pass whatever the condition says. (A test
    about a missing value says so: ``feature: null``.)"""
    errors = []
    for test in rule.tests:
        missing = [f for f in rule.features if f not in test.features]
        if test.expect == "no_fire" and missing:
            message = f"no_fire test '{test.name}' leaves {', '.join(missing)} unbound: bind every feature"
            errors.append(RuleError(rule.path, test.line, None, message))
    return errors


def _load(
    directory: Path, catalogues: Catalogues
) -> tuple[list[CompiledRule], list[RuleError], list[TestResult]]:
    if not directory.is_dir():
        return [], [RuleError(directory, None, None, "rule directory does not exist")], []
    rules: list[CompiledRule] = []
    errors: list[RuleError] = []
    results: list[TestResult] = []
    first_path: dict[str, Path] = {}
    if not rule_files(directory):
        return [], [RuleError(directory, None, None, "rule directory holds no rule file (*.yaml, *.yml)")], []
    for path in rule_files(directory):
        source, file_errors = read_rule_yaml(path)
        rule: CompiledRule | None = None
        if source is not None:
            rule, file_errors = _build_rule(source, catalogues)
        if rule is not None:
            test_results, file_errors = run_inline_tests(rule, catalogues[rule.target])
            results.extend(test_results)
            file_errors += _unbound_no_fire(rule)
        if path.stem in first_path:
            message = f"rule id '{path.stem}' is also defined in {first_path[path.stem]}"
            file_errors.append(RuleError(path, 1, 1, message))
        first_path.setdefault(path.stem, path)
        if rule is not None and not file_errors:
            rules.append(rule)
        errors.extend(sorted(file_errors, key=lambda e: (e.line or 0, e.column or 0)))
    return rules, errors, results


def load_rules(directory: Path, catalogues: Catalogues) -> RuleSet:
    """Load every rule under ``directory``; raises ``RuleLoadError`` with all errors of all files.

    ``catalogues`` maps each target ("account", "cluster") to its features' dtypes.
    """
    rules, errors, _ = _load(Path(directory), catalogues)
    if errors:
        raise RuleLoadError(errors)
    return RuleSet(rules)


def check_rules(directory: Path, catalogues: Catalogues) -> CheckReport:
    """Load and test every rule under ``directory`` without raising; ``.ok`` gates CI and deploys."""
    rules, errors, results = _load(Path(directory), catalogues)
    errors += check_reference(Path(directory), rules)
    return CheckReport(tuple(errors), tuple(results), len(rules))
