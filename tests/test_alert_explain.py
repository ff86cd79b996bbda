"""Alerts that explain themselves: rule ``output`` sentences and Sigma metadata, and alert episodes that
keep their accumulated reasons and campaign type across revisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from detector.alert.explain import describe
from detector.alert.verdict import AlertBook, Given, Verdict
from detector.contracts import Reason, Severity
from detector.detect.rules import load_rules
from detector.detect.rules.output import check_output, format_value, placeholders, render_output
from detector.window.features import CATALOGUES

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_format_value_and_render() -> None:
    """Counts get separators, fractions 3 significant digits, null reads n/a, a spec wins."""
    assert format_value(12345) == "12,345"
    assert format_value(0.87654) == "0.877"
    assert format_value(1234.56) == "1,235"
    assert format_value(3.0) == "3"
    assert format_value(None) == "n/a" and format_value(float("nan")) == "n/a"
    assert format_value(True) == "yes"
    assert format_value(0.876, ".0%") == "88%"
    text = render_output("{a} of {b:.0%} {{literal}}", {"a": 1500, "b": 0.5})
    assert text == "1,500 of 50% {literal}"
    assert placeholders("x {a} {b:.1f}") == [("a", ""), ("b", ".1f")]


def test_check_output_names_every_problem() -> None:
    catalogue = {"requests_24h": pl.Int64, "cot_share_24h": pl.Float64, "tier": pl.String}
    assert check_output("{requests_24h:,} and {cot_share_24h:.0%}", catalogue) == []
    problems = check_output("{request_24h} {tier:.0%} {cot_share_24h!r} {a.b}", catalogue)
    assert len(problems) == 1 and "conversions are not supported" in problems[0]
    problems = check_output("{request_24h} {tier:.0%} {a.b}", catalogue)
    assert any("unknown feature 'request_24h' (did you mean 'requests_24h'?)" in p for p in problems)
    assert any("'{tier:.0%}' does not fit" in p for p in problems)
    assert any("'{a.b}' must name one feature" in p for p in problems)
    assert check_output("{unclosed", catalogue) != []


def test_every_shipped_rule_explains_itself() -> None:
    """Each rule in rules/ has an output sentence over its catalogue, a status and its false positives;
    rendering it from its own 'fire' test gives a sentence with every placeholder filled."""
    rules = load_rules(ROOT / "rules", CATALOGUES)
    assert len(rules) >= 13
    for rule in rules:
        assert rule.output, f"{rule.id}: no output sentence"
        assert rule.status in {"stable", "test", "experimental"}, rule.id
        assert rule.falsepositives and rule.references, rule.id
        assert placeholders(rule.output), f"{rule.id}: the sentence names no feature"
        fire = next(t for t in rule.tests if t.expect == "fire")
        text = render_output(rule.output, {k: fire.features.get(k) for k, _ in placeholders(rule.output)})
        assert "{" not in text and "}" not in text, text


def _reasons(*names: str, severity: str = "high") -> list[Reason]:
    return [Reason(source="rule", name=n, score=0.8, severity=severity) for n in names]  # type: ignore[arg-type]


def _verdict(accounts: list[str], severity: str, campaign: str | None, reasons: list[Reason]) -> Verdict:
    return Verdict(
        "cluster",
        "c1",
        accounts,
        Severity(severity),
        0.5,
        campaign,
        Given(reasons),
        Given({"accounts": 1}),
        T0,
    )


def test_revisions_keep_the_episodes_reasons_and_campaign() -> None:
    """A revision raised by growth with only a model score still shows the rule that accused and its
    campaign type; severity and score never fall within an episode."""
    book = AlertBook()
    first = book.update(
        [_verdict(["a", "b"], "high", "chain_of_thought", _reasons("cluster_cot_hydra"))], T0, T0
    )
    model = [Reason(source="model", name="cluster-gbm-v2", score=0.3, severity="low")]
    grown = book.update(
        [_verdict(["a", "b", "c"], "low", None, model)], T0 + timedelta(hours=1), T0 + timedelta(hours=1)
    )
    (a1,), (a2,) = first, grown
    assert (a1.alert_id, a2.revision) == (a2.alert_id, 2)
    assert a2.severity == "high" and a2.campaign_type == "chain_of_thought"
    assert [r.name for r in a2.reasons] == ["cluster_cot_hydra", "cluster-gbm-v2"]
    assert a2.score == a1.score == 0.5
    # a later rule that fires again replaces its own earlier reason instead of repeating it
    again = book.update(
        [_verdict(["a", "b", "c", "d"], "high", "chain_of_thought", _reasons("cluster_cot_hydra"))],
        T0 + timedelta(hours=2),
        T0 + timedelta(hours=2),
    )
    assert [r.name for r in again[0].reasons] == ["cluster_cot_hydra", "cluster-gbm-v2"]


def test_describe_gives_titles_and_sentences() -> None:
    rules = load_rules(ROOT / "rules", CATALOGUES)
    row = {"accounts": 120, "link_families": 4, "new_account_share": 0.9, "active_hours_24h": 24}
    row |= {"cot_share_24h": 0.7, "requests_per_account_24h": 41.2}
    structs = [
        {"rule_id": "cluster_cot_hydra", "severity": "high", "score": 0.75, "detail": "accounts=120"},
        {"rule_id": "model:cluster-gbm-v2", "severity": "low", "score": 0.9, "detail": "top: accounts"},
    ]
    rule_reason, model_reason = describe(structs, rules, row)
    assert rule_reason.title == "Hydra cluster extracting chain-of-thought"
    assert rule_reason.output is not None and rule_reason.output.startswith("120 linked accounts")
    assert "70% of their requests" in rule_reason.output and "41 requests per account" in rule_reason.output
    assert model_reason.source == "model" and model_reason.name == "cluster-gbm-v2"
    assert model_reason.title is None and model_reason.severity == "low"


@pytest.mark.parametrize("bad", ["{accounts", "{accounts!s}", "{nope}"])
def test_a_rule_with_a_bad_output_does_not_load(tmp_path: Path, bad: str) -> None:
    text = (ROOT / "rules" / "cluster_cot_hydra.yaml").read_text()
    start = text.index("output: >-")
    end = text.index("status:")
    (tmp_path / "cluster_cot_hydra.yaml").write_text(text[:start] + f'output: "{bad}"\n' + text[end:])
    from detector.detect.rules import RuleLoadError

    with pytest.raises(RuleLoadError, match="output"):
        load_rules(tmp_path, CATALOGUES)
