"""Tests of the rules subsystem: loader errors with file:line, the safe condition language, inline
tests, vectorised evaluation, null semantics and reload."""

from __future__ import annotations

import builtins
import os
import random
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from detector.detect.rules import (
    CompiledCondition,
    ConditionError,
    ExpressionError,
    RuleLoadError,
    RuleSet,
    RuleWatcher,
    RuleYamlLoader,
    check_rules,
    compile_condition,
    load_rules,
    parse_condition,
)

DATA = Path(__file__).parent / "data"
OK_DIR = DATA / "rules_ok"
BROKEN_DIR = DATA / "rules_broken"

ACCOUNT: dict[str, Any] = {
    "requests_24h": pl.UInt32,
    "cot_share_24h": pl.Float64,
    "tier": pl.String,
    "verified": pl.Boolean,
    "distinct_prompts_24h": pl.Int64,
    "logprobs_share_24h": pl.Float64,
    "top_logprobs_max_24h": pl.Int64,
}
CLUSTER: dict[str, Any] = {
    "cluster_size": pl.UInt32,
    "cot_share_mean_24h": pl.Float64,
    "accounts_sharing_payment_7d": pl.Int64,
}
CATALOGUES = {"account": ACCOUNT, "cluster": CLUSTER}


# --- loading -------------------------------------------------------------------------------------

# file -> (line, column or None, a piece of the message)
BROKEN: dict[str, tuple[int, int | None, str]] = {
    "unknown_key.yaml": (7, 1, "unknown key 'owner'"),
    "duplicate_key.yaml": (5, 1, "duplicate key 'severity'"),
    "id_mismatch.yaml": (1, 5, "must equal the file name stem 'id_mismatch'"),
    "unknown_feature.yaml": (6, 35, "unknown feature 'cot_shar_24h' (did you mean 'cot_share_24h'?)"),
    "folded_condition.yaml": (8, 7, "unknown feature 'cot_share_24' (did you mean 'cot_share_24h'?)"),
    "string_vs_number.yaml": (6, 40, "cannot compare a string and a number"),
    "non_boolean.yaml": (6, 12, "must be true or false"),
    "bad_severity.yaml": (4, 11, "'urgent' is not allowed"),
    "syntax_error.yaml": (6, 27, "expected a value, got '>'"),
    "failing_test.yaml": (11, None, "inline test 'quiet' expects no_fire but the rule fired"),
    "no_tests.yaml": (1, 1, "rule has no tests"),
    "one_sided_tests.yaml": (8, 3, "none expects 'no_fire'"),
    "bad_test_value.yaml": (9, 30, "'many' does not fit"),
    "injection.yaml": (6, 12, "unknown function '__import__'"),
    "invalid_yaml.yaml": (4, 9, "invalid YAML"),
    "output_unknown_feature.yaml": (7, 9, "unknown feature 'cot_shar_24h' (did you mean 'cot_share_24h'?)"),
    "output_bad_spec.yaml": (7, 9, "output: '{tier:.0%}' does not fit the feature's type"),
}


def test_broken_directory_reports_one_error_per_file_with_file_and_line() -> None:
    with pytest.raises(RuleLoadError) as info:
        load_rules(BROKEN_DIR, CATALOGUES)
    errors = info.value.errors
    by_file: dict[str, list[Any]] = {}
    for error in errors:
        by_file.setdefault(error.path.name, []).append(error)
    assert set(by_file) == set(BROKEN) == {p.name for p in BROKEN_DIR.glob("*.yaml")}
    for name, (line, column, fragment) in BROKEN.items():
        (error,) = by_file[name]
        assert (error.line, error.column) == (line, column), f"{name}: {error}"
        assert fragment in error.message, f"{name}: {error}"
        location = f"{BROKEN_DIR / name}:{line}" + (f":{column}" if column else "")
        assert str(error).startswith(location + ": ")
        assert location in str(info.value)


def test_condition_errors_give_the_column_within_the_condition() -> None:
    with pytest.raises(RuleLoadError) as info:
        load_rules(BROKEN_DIR, CATALOGUES)
    messages = {e.path.name: e.message for e in info.value.errors}
    assert messages["unknown_feature.yaml"].startswith("condition (column 24): ")
    assert messages["syntax_error.yaml"].startswith("condition (column 16): ")


def test_valid_directory_loads_and_inline_tests_pass() -> None:
    rules = load_rules(OK_DIR, CATALOGUES)
    assert [r.id for r in rules] == [
        "cot_harvest_account",
        "hydra_cluster",
        "logprob_harvest",
        "unverified_prompt_spray",
    ]
    report = check_rules(OK_DIR, CATALOGUES)
    assert report.ok, report.render()
    assert report.rules == 4
    assert len(report.results) == 11 and all(r.passed for r in report.results)
    shadow = rules.get("logprob_harvest")
    assert shadow is not None and shadow.mode == "shadow" and shadow.score == 0.4
    hydra = rules.get("hydra_cluster")
    assert hydra is not None and hydra.score == 1.0 and hydra.target == "cluster"  # default for critical
    assert hydra.tags == ("hydra", "distillation")
    spray = rules.get("unverified_prompt_spray")
    assert spray is not None and spray.detail == ("verified", "requests_24h", "distinct_prompts_24h")


def test_check_report_on_broken_directory() -> None:
    report = check_rules(BROKEN_DIR, CATALOGUES)
    assert not report.ok
    assert len(report.errors) == len(BROKEN)
    failed = [r for r in report.results if not r.passed]
    assert [(r.rule_id, r.name) for r in failed] == [("failing_test", "quiet")]
    assert "errors" in report.render().splitlines()[-1]


def test_missing_directory_and_missing_catalogue(tmp_path: Path) -> None:
    with pytest.raises(RuleLoadError, match="does not exist"):
        load_rules(tmp_path / "nope", CATALOGUES)
    shutil.copy(OK_DIR / "hydra_cluster.yaml", tmp_path)
    with pytest.raises(RuleLoadError) as info:
        load_rules(tmp_path, {"account": ACCOUNT})
    (error,) = info.value.errors
    assert error.line == 5 and "no feature catalogue for target 'cluster'" in error.message


def test_all_errors_of_one_file_are_reported(tmp_path: Path) -> None:
    (tmp_path / "many.yaml").write_text(
        "id: many\n"
        "title: t\n"
        "description: d\n"
        "severity: high\n"
        "target: account\n"
        "condition: tier > 1 or requests > 2 or verified + 1 > 0\n"
        "detail: [requests_24, tier]\n"
        "tests:\n"
        "  - name: a\n"
        "    features: {tierr: free}\n"
        "    expect: fire\n"
        "  - name: a\n"
        "    features: {}\n"
        "    expect: no_fire\n"
        "    extra: 1\n"
    )
    with pytest.raises(RuleLoadError) as info:
        load_rules(tmp_path, CATALOGUES)
    got = [(e.line, e.column, e.message.split(";")[0]) for e in info.value.errors]
    assert got == [  # the spec is invalid, but the condition is still checked
        (6, 17, "condition (column 6): cannot compare a string and a number with '>'"),
        (6, 24, "condition (column 13): unknown feature 'requests' (did you mean 'requests_24h'?)"),
        (6, 49, "condition (column 38): arithmetic '+' needs numbers, got a boolean and a number"),
        (15, 5, "unknown key 'extra' in tests[1]"),
    ]
    # without the unknown key, every other problem shows up together
    text = (tmp_path / "many.yaml").read_text().replace("    extra: 1\n", "")
    (tmp_path / "many.yaml").write_text(text)
    with pytest.raises(RuleLoadError) as info:
        load_rules(tmp_path, CATALOGUES)
    messages = [(e.line, e.column, e.message) for e in info.value.errors]
    assert [(line, col) for line, col, _ in messages] == [
        (6, 17),
        (6, 24),
        (6, 49),
        (7, 10),
        (10, 16),
        (12, 11),
    ]
    assert "cannot compare a string and a number" in messages[0][2]
    assert "unknown feature 'requests'" in messages[1][2]
    assert "arithmetic '+' needs numbers" in messages[2][2]
    assert messages[3][2] == "detail: unknown feature 'requests_24' (did you mean 'requests_24h'?)"
    assert "unknown feature 'tierr' (did you mean 'tier'?)" in messages[4][2]
    assert messages[5][2] == "duplicate test name 'a'"


def test_duplicate_rule_ids_across_files(tmp_path: Path) -> None:
    shutil.copy(OK_DIR / "hydra_cluster.yaml", tmp_path / "hydra_cluster.yaml")
    (tmp_path / "sub").mkdir()
    shutil.copy(OK_DIR / "hydra_cluster.yaml", tmp_path / "sub" / "hydra_cluster.yml")
    with pytest.raises(RuleLoadError, match="also defined in"):
        load_rules(tmp_path, CATALOGUES)


def test_yaml_loader_rejects_duplicate_keys_in_nested_mappings() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'a'"):
        yaml.load("x:\n  a: 1\n  a: 2\n", Loader=RuleYamlLoader)
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.load("!!python/object/apply:os.system ['id']", Loader=RuleYamlLoader)


_RULE_HEAD = "title: t\ndescription: d\nseverity: low\ntarget: account\n"
_LOLS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
HOSTILE_YAML: dict[str, tuple[str, str]] = {  # file stem -> (text after the id line, expected message)
    "alias_bomb": ("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + _LOLS, "aliases"),
    "alias_in_tests": (
        _RULE_HEAD + "condition: requests_24h > 1\nf: &f {requests_24h: 5}\n"
        "tests: [{name: a, features: *f, expect: fire}]\n",
        "aliases",
    ),
    "deep_flow": ("x: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested more than"),
    "deep_block": ("x:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200)), "nested more than"),
    "big_yaml_int": (_RULE_HEAD + "condition: requests_24h > 1\nscore: " + "9" * 5000 + "\n", "cannot read"),
    "bad_date": (_RULE_HEAD + "condition: requests_24h > 1\ntitle2: 2024-13-45\n", "month must be"),
    "bad_timestamp": ("x: 2024-01-01 99:99:99\n", "hour must be"),
    "sexagesimal": ("x: " + ":".join(["59"] * 3000) + ".5\n", "cannot read"),
    "python_tag": ("x: !!python/object/apply:os.system ['echo pwned']\n", "could not determine a"),
    "big_literal": (_RULE_HEAD + "condition: requests_24h > " + "9" * 5000 + "\n", "(5000 digits) does not"),
}


def test_hostile_rule_files_are_errors_not_crashes_or_hangs(tmp_path: Path) -> None:
    """Alias bombs hung the loader (its node walk followed every alias), deep nesting overflowed the
    stack, and values PyYAML or ``int()`` cannot build raised ValueError out of ``rules check``."""
    for stem, (body, _) in HOSTILE_YAML.items():
        (tmp_path / f"{stem}.yaml").write_text(f"id: {stem}\n{body}")
    report = check_rules(tmp_path, CATALOGUES)
    assert report.rules == 0 and not report.ok
    by_file: dict[str, list[str]] = {}
    for e in report.errors:
        by_file.setdefault(e.rule_id, []).append(f"{e.line}:{e.column}: {e.message}")
    for stem, (_, fragment) in HOSTILE_YAML.items():
        assert any(fragment in m for m in by_file[stem]), (stem, by_file[stem])
    assert all(len(str(e)) < 400 for e in report.errors)
    # anchors alone are harmless, and ordinary nesting stays well inside the limit
    assert yaml.load("a: &x [1, {b: [2]}]\n", Loader=RuleYamlLoader) == {"a": [1, {"b": [2]}]}


# --- the condition language -------------------------------------------------------------------------

INJECTIONS = [
    "__import__('os')",
    "__import__('os').system('id')",
    "requests_24h.__class__",
    "tier.upper() == 'FREE'",
    "(lambda: 1)()",
    "lambda x: x",
    "requests_24h[0] > 1",
    "[c for c in ()]",
    "eval('1')",
    "exec('import os')",
    "open('/etc/passwd')",
    "getattr(tier, 'x')",
    "requests_24h if true else 1",
    "f'{requests_24h}'",
    "requests_24h > 1; import os",
    "requests_24h ** 2 > 1",
    "requests_24h > 1 # comment",
    "{'a': 1}",
    "`id`",
    "$(id)",
    "requests_24h @ 2",
    "cot_share_24h > .5",
    "tier == 'a' \\\n or true",
]


@pytest.mark.parametrize("source", INJECTIONS)
def test_code_is_rejected_as_syntax_error(source: str) -> None:
    with pytest.raises(ExpressionError):
        parse_condition(source)
    with pytest.raises(ConditionError):
        compile_condition(source, ACCOUNT)


_FUZZ_PIECES = [
    *ACCOUNT,
    "__import__",
    "os",
    "system",
    "abs",
    "min",
    "max",
    "coalesce",
    "log1p",
    "between",
    "and",
    "or",
    "not",
    "in",
    "is",
    "null",
    "true",
    "false",
    "lambda",
    "0",
    "1",
    "2.5",
    "1e3",
    "'free'",
    '"x"',
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    ":",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "!=",
    "+",
    "-",
    "*",
    "/",
    "**",
    "=",
    "'",
    "\\",
    "{",
    "}",
    ";",
    "#",
    "\n",
]


def test_fuzz_never_runs_code_and_never_crashes(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the condition language must never reach eval/exec/compile")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    rng = random.Random(20240601)
    frame = _test_row_frame()
    compiled = 0
    for _ in range(3000):
        if rng.random() < 0.5:
            source = " ".join(rng.choice(_FUZZ_PIECES) for _ in range(rng.randint(1, 12)))
        else:
            source = "".join(chr(rng.randint(0, 0x7F)) for _ in range(rng.randint(0, 30)))
        try:
            result = compile_condition(source, ACCOUNT)
        except ConditionError as exc:
            assert exc.errors and all(0 <= e.pos <= len(source) for e in exc.errors)
            continue
        assert isinstance(result, CompiledCondition)
        assert frame.select(result.expr).dtypes == [pl.Boolean]
        compiled += 1
    assert compiled > 0  # the fuzzer does produce valid conditions, and they evaluate


def test_deep_nesting_is_a_syntax_error_not_a_crash() -> None:
    with pytest.raises(ConditionError, match="nested"):
        compile_condition("(" * 1000 + "true" + ")" * 1000, ACCOUNT)
    with pytest.raises(ConditionError, match="nested"):
        compile_condition("not " * 1000 + "true", ACCOUNT)
    with pytest.raises(ConditionError, match="nested"):
        compile_condition("-" * 1000 + "requests_24h > 0", ACCOUNT)
    with pytest.raises(ConditionError, match="chains more than"):
        compile_condition("true or " * 1000 + "true", ACCOUNT)
    with pytest.raises(ConditionError, match="chains more than"):
        compile_condition("requests_24h" + " + 1" * 1000 + " > 0", ACCOUNT)
    with pytest.raises(ConditionError, match="longer than"):
        compile_condition("true or " * 5000 + "true", ACCOUNT)
    chain = " and ".join(f"requests_24h > {i}" for i in range(100))
    assert compile_condition(chain, ACCOUNT).features == ("requests_24h",)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("tier > 5", "cannot compare a string and a number"),
        ("verified + 1 > 0", "arithmetic '+' needs numbers"),
        ("tier * 2 > 0", "arithmetic '*' needs numbers"),
        ("requests_24h", "must be true or false"),
        ("tier", "must be true or false"),
        ("abs(requests_24h, 1) > 0", "abs() takes 1 argument, got 2"),
        ("between(requests_24h, 1) ", "between() takes 3 arguments, got 2"),
        ("min(requests_24h) > 0", "min() takes at least 2 arguments, got 1"),
        ("requests_24h == null", "write 'is null'"),
        ("verified > false", "'>' does not apply to a boolean"),
        ("requests_24h and verified", "'and' needs booleans"),
        ("not requests_24h", "'not' needs a boolean"),
        ("tier in [1, 2]", "list item is a number but the value tested is a string"),
        ("tier in ['a', null]", "null in a list never matches"),
        ("coalesce(tier, 1) == 1", "coalesce() needs arguments of one type"),
        ("requests_24h < 1 < 2", "comparisons do not chain"),
        ("requestz_24h > 1", "did you mean 'requests_24h'?"),
        ("True", "write 'true'"),
        ("requests_24h > 99999999999999999999", "does not fit in 64 bits"),
    ],
)
def test_type_and_syntax_errors(source: str, fragment: str) -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition(source, ACCOUNT)
    assert any(fragment in e.message for e in info.value.errors), info.value


def test_precedence_and_operators() -> None:
    frame = pl.DataFrame({"a": [1, 2, 3, None], "b": [2.0, 0.0, 1.5, 1.0], "s": ["x", "y", "z", None]})
    catalogue = {"a": pl.Int64, "b": pl.Float64, "s": pl.String}

    def run(source: str) -> list[bool]:
        return list(frame.select(compile_condition(source, catalogue).expr).to_series().to_list())

    assert run("a + 1 * 2 == 3") == [True, False, False, False]
    assert run("(a + 1) * 2 == 4") == [True, False, False, False]
    assert run("-a < -1") == [False, True, True, False]
    assert run("a - -1 == 2") == [True, False, False, False]
    assert run("not a > 1 or s == 'z'") == [True, False, True, False]
    assert run("a > 1 and b > 1 or s == 'x'") == [True, False, True, False]
    assert run("a in [1, 3]") == [True, False, True, False]
    assert run("a in [1.0, 2.5]") == [True, False, False, False]
    assert run("b in [2, 1.5]") == [True, False, True, False]
    assert run("s not in ['x', 'y']") == [False, False, True, False]
    assert run("s is null") == [False, False, False, True]
    assert run("s is not null") == [True, True, True, False]
    assert run("between(a, 2, 3)") == [False, True, True, False]
    assert run("abs(a - 3) >= 2") == [True, False, False, False]
    assert run("min(a, b) < 1.5") == [True, True, False, False]
    assert run("max(a, b, 2) == 2") == [True, True, False, False]
    assert run("coalesce(a, 0) == 0") == [False, False, False, True]
    assert run("log1p(a) > 1") == [False, True, True, False]
    assert run("a / b > 1") == [False, False, True, False]
    assert run("s == \"x\" or s == 'y'") == [True, True, False, False]


# --- null semantics ---------------------------------------------------------------------------------


def test_null_features_never_fire() -> None:
    frame = pl.DataFrame(
        {"x": [None, 5, float("nan")], "n": [None, 0, 0], "s": [None, "a", "a"]},
        schema={"x": pl.Float64, "n": pl.Int64, "s": pl.String},
    )
    catalogue = {"x": pl.Float64, "n": pl.Int64, "s": pl.String}

    def run(source: str) -> list[bool]:
        return list(frame.select(compile_condition(source, catalogue).expr).to_series().to_list())

    assert run("x > 1") == [False, True, False]
    assert run("not (x > 1)") == [False, False, False]  # unknown stays unknown, then false
    assert run("x != 1") == [False, True, False]
    assert run("s not in ['b']") == [False, True, True]
    assert run("x > 1 or s == 'a'") == [False, True, True]  # Kleene: null or true is true
    assert run("x > 1 and s == 'a'") == [False, True, False]
    assert run("x / n > 0") == [False, False, False]  # division by zero is null, not inf
    assert run("n / n >= 0") == [False, False, False]  # 0 / 0 is null, not NaN (which polars orders high)
    assert run("x is null") == [True, False, True]  # NaN reads as null
    assert run("coalesce(x, 0) == 0") == [True, False, True]
    assert run("max(x, 1) >= 1") == [False, True, False]  # min/max propagate null


# --- evaluation -------------------------------------------------------------------------------------


def _test_row_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "requests_24h": [410],
            "cot_share_24h": [0.93],
            "tier": ["free"],
            "verified": [False],
            "distinct_prompts_24h": [400],
            "logprobs_share_24h": [0.1],
            "top_logprobs_max_24h": [None],
        },
        schema=ACCOUNT,
    )


def test_evaluate_returns_exactly_the_hits_including_shadow_rules() -> None:
    rules = load_rules(OK_DIR, CATALOGUES)
    frame = pl.DataFrame(
        {
            "account_id": ["a1", "a2", "a3", "a4", "a5"],
            "requests_24h": [410, 60, None, 200, 5],
            "cot_share_24h": [0.93, 0.1, 0.9, 0.8512345, 0.95],
            "tier": ["free", "free", "free", "trial", "enterprise"],
            "verified": [True, False, None, False, True],
            "distinct_prompts_24h": [10, 60, 5, 199, 5],
            "logprobs_share_24h": [0.9, None, 0.0, 0.7, 0.2],
            "top_logprobs_max_24h": [20, None, None, 5, 3],
        },
        schema={"account_id": pl.String, **ACCOUNT},
    )
    hits = rules.evaluate(frame, "account", key="account_id")
    assert hits.columns == ["account_id", "rule_id", "severity", "score", "mode", "campaign_type", "detail"]
    assert hits.schema["score"] == pl.Float64
    assert sorted(hits.rows()) == sorted(
        [
            ("a1", "cot_harvest_account", "high", 0.75, "enforce", "chain_of_thought",
             "cot_share_24h=0.93 requests_24h=410"),
            ("a4", "cot_harvest_account", "high", 0.75, "enforce", "chain_of_thought",
             "cot_share_24h=0.8512 requests_24h=200"),
            ("a1", "logprob_harvest", "medium", 0.4, "shadow", "logprob_harvest",
             "logprobs_share_24h=0.9 top_logprobs_max_24h=20"),
            ("a4", "logprob_harvest", "medium", 0.4, "shadow", "logprob_harvest",
             "logprobs_share_24h=0.7 top_logprobs_max_24h=5"),
            ("a2", "unverified_prompt_spray", "low", 0.25, "enforce", "reasoning_trace",
             "verified=false requests_24h=60 distinct_prompts_24h=60"),
            ("a4", "unverified_prompt_spray", "low", 0.25, "enforce", "reasoning_trace",
             "verified=false requests_24h=200 distinct_prompts_24h=199"),
        ]
    )  # fmt: skip
    # the default key is "<target>_id"
    assert rules.evaluate(frame, "account").equals(hits)


def test_evaluate_cluster_target_and_empty_cases() -> None:
    rules = load_rules(OK_DIR, CATALOGUES)
    clusters = pl.DataFrame(
        {
            "cluster_id": [7, 8, 9],
            "cluster_size": [12, 3, 40],
            "cot_share_mean_24h": [0.8, 0.9, None],
            "accounts_sharing_payment_7d": [3, 5, 30],
        },
        schema={"cluster_id": pl.Int64, **CLUSTER},
    )
    hits = rules.evaluate(clusters, "cluster")
    assert hits.select("cluster_id", "rule_id", "detail").rows() == [
        (7, "hydra_cluster", "cluster_size=12 cot_share_mean_24h=0.8")
    ]
    assert hits.schema["cluster_id"] == pl.Int64
    empty = rules.evaluate(clusters.head(0), "cluster")
    assert empty.height == 0 and empty.schema == hits.schema
    none = RuleSet([]).evaluate(clusters, "cluster")
    assert none.height == 0 and none.columns == hits.columns


def test_evaluate_rejects_frames_without_the_features_or_key() -> None:
    rules = load_rules(OK_DIR, CATALOGUES)
    with pytest.raises(ValueError, match="lacks features"):
        rules.evaluate(pl.DataFrame({"cluster_id": [1], "cluster_size": [3]}), "cluster")
    with pytest.raises(ValueError, match="key column 'account_id'"):
        rules.evaluate(pl.DataFrame({"cluster_id": [1]}), "account")


def test_evaluate_many_rules_on_many_rows_in_one_pass(tmp_path: Path) -> None:
    template = (OK_DIR / "cot_harvest_account.yaml").read_text()
    for threshold in range(0, 100, 5):
        rule_id = f"cot_over_{threshold}"
        text = template.replace("cot_harvest_account", rule_id).replace(
            "cot_share_24h >= 0.8", f"cot_share_24h * 100 >= {threshold}"
        )
        text = text.split("tests:")[0] + (
            "tests:\n  - name: hi\n    features: {cot_share_24h: 1.0, requests_24h: 500, tier: free}\n"
            "    expect: fire\n  - name: lo\n"
            "    features: {cot_share_24h: 1.0, requests_24h: 0, tier: free}\n    expect: no_fire\n"
        )
        (tmp_path / f"{rule_id}.yaml").write_text(text)
    rules = load_rules(tmp_path, CATALOGUES)
    n = 10_000
    frame = pl.DataFrame(
        {
            "account_id": [f"acct{i}" for i in range(n)],
            "requests_24h": [500] * n,
            "cot_share_24h": [i / n for i in range(n)],
            "tier": ["free"] * n,
        },
        schema_overrides={"requests_24h": pl.UInt32},
    )
    absent = [name for name in ACCOUNT if name not in frame.columns]
    frame = frame.with_columns(pl.lit(None, dtype=ACCOUNT[name]).alias(name) for name in absent)
    hits = rules.evaluate(frame, "account")
    expected = sum(sum(1 for i in range(n) if i * 100 >= t * n) for t in range(0, 100, 5))
    assert hits.height == expected


# --- reload -----------------------------------------------------------------------------------------


def _bump(path: Path, text: str) -> None:
    """Rewrite a file and move its mtime forward, so the edit is seen even on coarse-mtime filesystems."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


def test_watcher_reloads_on_change_and_keeps_the_old_set_when_broken(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    shutil.copytree(OK_DIR, rules_dir)
    failures: list[RuleLoadError] = []
    watcher = RuleWatcher(rules_dir, CATALOGUES, on_error=failures.append)
    first = watcher.current
    assert len(first) == 4
    assert watcher.poll() is None  # nothing changed

    path = rules_dir / "hydra_cluster.yaml"
    good = path.read_text()
    _bump(
        path,
        good.replace("cluster_size >= 5", "cluster_size >= 6").replace("title: Hydra", "title: Big hydra"),
    )
    second = watcher.poll()
    assert second is not None and watcher.current is second
    hydra = second.get("hydra_cluster")
    assert hydra is not None and hydra.title.startswith("Big hydra")

    _bump(path, good.replace("severity: critical", "severity: catastrophic"))
    assert watcher.poll() is None
    assert watcher.current is second  # the old set stays in force
    assert len(failures) == 1 and "catastrophic" in str(failures[0])
    assert watcher.errors and watcher.errors[0].line == 4
    assert watcher.poll() is None and len(failures) == 1  # the same broken files are not reloaded again

    _bump(path, good)
    third = watcher.poll()
    assert third is not None and watcher.errors == []

    watcher.request_reload()  # what a SIGHUP handler does
    fourth = watcher.poll()
    assert fourth is not None and fourth is not third

    (rules_dir / "logprob_harvest.yaml").unlink()
    fifth = watcher.poll()
    assert fifth is not None and len(fifth) == 3


def test_watcher_fails_at_start_up_on_broken_rules() -> None:
    with pytest.raises(RuleLoadError):
        RuleWatcher(BROKEN_DIR, CATALOGUES)
