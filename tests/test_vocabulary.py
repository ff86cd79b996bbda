"""The domain vocabulary is defined once, in ``detector.contracts``: the severity ladder (order, rank,
default score), the kinds of subject and the linkage families. A second spelling of the ladder or of the
family list anywhere in the package fails here."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path
from typing import get_args

import pytest

from detector.contracts import (
    DEFAULT_SCORE,
    KINDS,
    LINK_FAMILIES,
    SEVERITIES,
    SEVERITY_RANK,
    Alert,
    Severity,
    SeverityName,
)
from detector.lab.report.linkage import FAMILY_COLOURS
from detector.window.state import link_key_exprs

PACKAGE = Path(__file__).resolve().parents[1] / "detector"


def test_severity_is_ordered_by_rank_not_alphabet() -> None:
    assert [s.value for s in SEVERITIES] == ["low", "medium", "high", "critical"]
    assert [s.rank for s in SEVERITIES] == [1, 2, 3, 4]
    assert get_args(SeverityName) == tuple(s.value for s in SEVERITIES)
    assert all(s.text == s.value for s in SEVERITIES)
    assert Severity.LOW < Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL
    assert Severity.HIGH > "medium" and Severity.MEDIUM <= "medium" and not Severity.CRITICAL < "low"
    assert max(Severity.HIGH, Severity.CRITICAL, Severity.LOW) is Severity.CRITICAL
    assert sorted(["critical", "low", "high", "medium"], key=Severity) == [
        "low",
        "medium",
        "high",
        "critical",
    ]
    assert all(Severity.of_rank(s.rank) is s for s in SEVERITIES)
    with pytest.raises(ValueError):
        _ = Severity.LOW < "urgent"


def test_default_scores_rise_with_the_ladder_and_end_at_one() -> None:
    scores = [s.default_score for s in SEVERITIES]
    assert scores == sorted(scores) and len(set(scores)) == 4 and scores[-1] == 1.0
    assert {s.value: s.default_score for s in SEVERITIES} == DEFAULT_SCORE
    assert {s.value: s.rank for s in SEVERITIES} == SEVERITY_RANK


def test_severity_serialises_as_plain_text() -> None:
    from datetime import UTC, datetime

    from detector.contracts import Reason

    now = datetime(2026, 3, 1, tzinfo=UTC)
    alert = Alert(
        alert_id="al-1",
        revision=1,
        kind="account",
        subject="a",
        account_ids=["a"],
        severity=Severity.HIGH,
        score=0.5,
        first_event_ts=now,
        detected_event_ts=now,
        reasons=[Reason(source="rule", name="r")],
    )
    assert alert.to_json_dict()["severity"] == "high" and f"{alert.severity}" == "high"
    assert KINDS == ("account", "cluster")


def test_every_link_family_has_a_key_and_a_colour() -> None:
    assert tuple(link_key_exprs(timedelta(minutes=10))) == LINK_FAMILIES
    assert set(FAMILY_COLOURS) == set(LINK_FAMILIES)


def _string_tuples(tree: ast.AST) -> list[tuple[int, set[str]]]:
    """(line, strings) of every tuple, list, set or dict-key literal made of string constants."""
    out: list[tuple[int, set[str]]] = []
    for node in ast.walk(tree):
        elts: list[ast.expr | None] = []
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            elts = list(node.elts)
        elif isinstance(node, ast.Dict):
            elts = list(node.keys)
        elif isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "Literal":
            sl = node.slice
            elts = list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]
        strings = {e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
        if strings:
            out.append((getattr(node, "lineno", 0), strings))
    return out


@pytest.mark.parametrize(
    ("what", "words", "at_least"),
    [
        ("the severity ladder", {"low", "medium", "high", "critical"}, 3),
        ("the linkage families", set(LINK_FAMILIES), 5),
    ],
)
def test_the_vocabulary_is_spelled_out_only_in_contracts(what: str, words: set[str], at_least: int) -> None:
    """No module but ``contracts.py`` lists most of the ladder or of the families as literals."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "contracts.py" and path.parent == PACKAGE:
            continue
        for line, strings in _string_tuples(ast.parse(path.read_text(encoding="utf-8"))):
            if len(strings & words) >= at_least:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    # one entry per family, checked against LINK_FAMILIES above: the key expressions, the colours
    allowed = {"detector/window/tables.py", "detector/lab/report/linkage.py"}
    assert [f for f in found if f.rsplit(":", 1)[0] not in allowed] == [], f"{what} spelled out again"
