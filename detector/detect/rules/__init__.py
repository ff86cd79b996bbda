"""Declarative YAML rules over account and cluster feature frames.

A rule file names a condition in a small, safe expression language (see ``detector.detect.rules.expr``),
compiled once at load to a polars expression and type-checked against the target's feature
catalogue. ``load_rules`` fails with every error of every file; ``RuleSet.evaluate`` runs all rules of
a target in one vectorised pass; ``check_rules`` gates CI; ``RuleWatcher`` reloads on change.
"""

from detector.detect.rules.compiler import Catalogue, CompiledCondition, ConditionError, compile_condition
from detector.detect.rules.errors import ExpressionError, RuleError, RuleLoadError
from detector.detect.rules.expr import FUNCTIONS, parse_condition
from detector.detect.rules.loader import (
    Catalogues,
    CheckReport,
    TestResult,
    check_rules,
    load_rules,
    rule_files,
)
from detector.detect.rules.ruleset import CompiledRule, InlineTest, RuleSet
from detector.detect.rules.source import RuleYamlLoader
from detector.detect.rules.spec import InlineTestSpec, RuleSpec
from detector.detect.rules.watch import RuleWatcher

__all__ = [
    "FUNCTIONS",
    "Catalogue",
    "Catalogues",
    "CheckReport",
    "CompiledCondition",
    "CompiledRule",
    "ConditionError",
    "ExpressionError",
    "InlineTest",
    "InlineTestSpec",
    "RuleError",
    "RuleLoadError",
    "RuleSet",
    "RuleSpec",
    "RuleWatcher",
    "RuleYamlLoader",
    "TestResult",
    "check_rules",
    "compile_condition",
    "load_rules",
    "parse_condition",
    "rule_files",
]
