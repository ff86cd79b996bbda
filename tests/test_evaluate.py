"""The evaluator's arithmetic on a small hand-made labels + alerts pair, and on a simulated run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table

from detector.lab.evaluate import NO_REASON, EvalResult, evaluate, render_table, top_reasons


def _acct(
    persona: str, campaign: str | None = None, ctype: str | None = None, first: str | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "attacker": campaign is not None,
        "persona": persona,
        "campaign_id": campaign,
        "campaign_type": ctype,
    }
    if first:
        row["first_ts"] = first
    return row


LABELS: dict[str, Any] = {
    "seed": 1,
    "days": 1.0,
    "scale": 1.0,
    "start": "2026-03-02T00:00:00.000Z",
    "end": "2026-03-03T00:00:00.000Z",
    "new_model": {"id": "m-new", "launch_ts": "2026-03-02T12:00:00.000Z"},
    "accounts": {
        "a1": _acct("cot_hydra", "c1", "chain_of_thought", "2026-03-02T06:30:00.000Z"),
        "a2": _acct("cot_hydra", "c1", "chain_of_thought", "2026-03-02T07:00:00.000Z"),
        "a3": _acct("cot_hydra", "c1", "chain_of_thought", "2026-03-02T08:00:00.000Z"),
        "a4": _acct("cot_hydra", "c1", "chain_of_thought", "2026-03-02T06:10:00.000Z"),
        "b1": _acct("logprob_harvest", "c2", "logprob_harvest"),
        "b2": _acct("logprob_harvest", "c2", "logprob_harvest"),
        "u1": _acct("casual"),
        "u2": _acct("casual"),
        "u3": _acct("casual"),
        "u4": _acct("casual"),
        "e1": _acct("eval_harness"),
        "e2": _acct("eval_harness"),
        "k1": _acct("company_card"),
    },
    "campaigns": {
        "c1": {
            "family": "cot_hydra",
            "campaign_type": "chain_of_thought",
            "start_ts": "2026-03-02T06:00:00.000Z",
            "n_accounts": 4,
        },
        "c2": {
            "family": "logprob_harvest",
            "campaign_type": "logprob_harvest",
            "start_ts": "2026-03-02T12:00:00.000Z",
            "n_accounts": 2,
        },
    },
}


def _alert(alert_id: str, revision: int, severity: str, accounts: list[str], detected: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "alert_id": alert_id,
        "revision": revision,
        "kind": "cluster",
        "subject": alert_id,
        "account_ids": accounts,
        "severity": severity,
        "score": 0.5,
        "campaign_type": None,
        "first_event_ts": "2026-03-02T06:00:00.000Z",
        "detected_event_ts": detected,
        "reasons": [{"source": "rule", "name": "test"}],
    }


ALERTS = [
    _alert("X", 1, "low", ["a1", "a2"], "2026-03-02T07:00:00.000Z"),
    _alert("X", 2, "medium", ["a1", "a2", "a3"], "2026-03-02T09:00:00.000Z"),
    _alert("Y", 1, "high", ["a1"], "2026-03-02T08:00:00.000Z"),
    _alert("Z", 1, "medium", ["e1"], "2026-03-02T10:00:00.000Z"),
    _alert("W", 1, "critical", ["e2", "ghost"], "2026-03-02T11:00:00+00:00"),
    _alert("V", 1, "low", ["u1", "b1"], "2026-03-02T12:30:00.000Z"),
]


def _write(tmp: Path, labels: dict[str, Any], alerts: list[dict[str, Any]]) -> tuple[Path, Path]:
    lp, ap = tmp / "labels.json", tmp / "alerts.jsonl"
    lp.write_text(json.dumps(labels))
    ap.write_text("".join(json.dumps(a) + "\n" for a in alerts) + "\n")
    return lp, ap


@pytest.fixture
def result(tmp_path: Path) -> EvalResult:
    return evaluate(*_write(tmp_path, LABELS, ALERTS))


def test_campaign_recall_and_time_to_detect(result: EvalResult) -> None:
    c1, c2 = result.campaigns
    assert (c1.campaign_id, c1.n_accounts, c1.n_detected, c1.recall) == ("c1", 4, 3, 0.75)
    assert c1.n_detected_high == 1  # only Y (high) names a1; X stays medium
    assert c1.ttd_hours == 2.0  # Y (high) at 08:00 names a1; campaign started 06:00
    assert c1.first_detected_ts == "2026-03-02T08:00:00Z"
    assert c1.median_account_ttd_hours == 1.5  # a1 08:00-06:30, a2 09:00-07:00, a3 09:00-08:00
    assert (c2.n_detected, c2.recall, c2.ttd_hours, c2.median_account_ttd_hours) == (0, 0.0, None, None)


def test_false_positives_per_persona_and_severity_threshold(result: EvalResult) -> None:
    by = {p.persona: p for p in result.personas}
    assert (by["casual"].n_accounts, by["casual"].flagged_medium, by["casual"].fp_rate) == (4, 0, 0.0)
    e = by["eval_harness"]
    assert (e.flagged_medium, e.flagged_high, e.fp_rate, e.fp_rate_high) == (2, 1, 1.0, 0.5)
    assert by["company_card"].flagged_medium == 0


def test_overall_counts_and_alert_tallies(result: EvalResult) -> None:
    o = result.overall
    assert (o.n_attackers, o.n_benign, o.true_positives, o.false_positives) == (6, 7, 3, 2)
    assert (o.false_negatives, o.true_negatives) == (3, 5)
    assert o.precision == pytest.approx(0.6) and o.recall == pytest.approx(0.5)
    assert o.false_positive_rate == pytest.approx(2 / 7)
    assert result.episodes_by_severity == {"low": 1, "medium": 2, "high": 1, "critical": 1}
    assert (result.n_revisions, result.n_episodes) == (6, 5)
    assert (result.unlabelled_flagged, result.unlabelled_flagged_ids) == (1, ["ghost"])


def test_no_alerts_means_zero_recall_and_no_false_positives(tmp_path: Path) -> None:
    r = evaluate(*_write(tmp_path, LABELS, []))
    assert r.overall.recall == 0.0 and r.overall.false_positive_rate == 0.0 and r.overall.precision is None
    assert r.n_episodes == 0 and all(v == 0 for v in r.episodes_by_severity.values())


def test_bad_alert_lines_are_reported_with_their_position(tmp_path: Path) -> None:
    lp, ap = _write(tmp_path, LABELS, ALERTS)
    with ap.open("a") as fh:
        fh.write('{"alert_id": "Q", "severity": "urgent", "account_ids": ["a1"], "detected_event_ts": "x"}\n')
        fh.write("not json\n")
    with pytest.raises(ValueError, match=r"alerts\.jsonl:8: .*urgent(.|\n)*alerts\.jsonl:9:"):
        evaluate(lp, ap)


def test_what_first_named_each_account_is_counted_per_persona_and_campaign(tmp_path: Path) -> None:
    def named(
        alert_id: str, sev: str, accounts: list[str], at: str, reasons: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return {**_alert(alert_id, 1, sev, accounts, at), "reasons": reasons}

    rule = {"source": "rule", "name": "cluster_coordinated_farm", "severity": "medium"}
    model = {"source": "model", "name": "account_gb-v2", "severity": "medium"}
    lead = {"source": "rule", "name": "account_reasoning_harvest", "severity": "low"}
    axis = {"source": "rule", "name": "evidence:coordination", "severity": "medium"}
    alerts = [
        named("P", "medium", ["e1", "e2"], "2026-03-02T10:00:00.000Z", [rule, lead, axis]),
        # later: does not replace what named e1 first; earlier: replaces it for e2
        named("Q", "high", ["e1"], "2026-03-02T11:00:00.000Z", [model]),
        named("R", "medium", ["e2", "a1"], "2026-03-02T09:00:00.000Z", [model, rule]),
        # a medium revision none of whose reasons reaches medium, and a low one that names nobody
        named("S", "medium", ["k1"], "2026-03-02T09:00:00.000Z", [lead, axis]),
        named("T", "low", ["u1"], "2026-03-02T09:00:00.000Z", [lead]),
        # an old file's reason without a severity counts at the alert's
        named("U", "medium", ["a2"], "2026-03-02T09:30:00.000Z", [{"source": "rule", "name": "old_rule"}]),
    ]
    r = evaluate(*_write(tmp_path, LABELS, alerts))
    by = {p.persona: p for p in r.personas}
    assert by["eval_harness"].reasons == {"cluster_coordinated_farm": 2, "account_gb-v2": 1}
    assert by["company_card"].reasons == {NO_REASON: 1}
    assert by["casual"].reasons == {} and by["casual"].flagged_medium == 0
    assert r.campaigns[0].reasons == {"account_gb-v2": 1, "cluster_coordinated_farm": 1, "old_rule": 1}
    console = Console(record=True, width=300)
    console.print(render_table(r))
    assert "cluster_coordinated_farm 2, account_gb-v2 1" in console.export_text()
    assert top_reasons({"a": 3, "b": 2, "c": 1, "d": 1}, 2) == "a 3, b 2, +2 more"


def test_render_table_and_json(result: EvalResult) -> None:
    table = render_table(result)
    assert isinstance(table, Table) and table.row_count == 2 + 3 + 1
    console = Console(record=True, width=200)
    console.print(table)
    assert "cot_hydra" in console.export_text()
    assert json.loads(result.model_dump_json())["overall"]["true_positives"] == 3


def test_oracle_alerts_on_a_simulated_run_score_perfectly(tmp_path: Path) -> None:
    from detector.lab.simulate import simulate

    simulate(tmp_path, days=0.5, seed=2, scale=0.05)
    labels = json.loads((tmp_path / "labels.json").read_text())
    alerts = [
        _alert(
            f"al-{cid}",
            1,
            "high",
            [a for a, i in labels["accounts"].items() if i["campaign_id"] == cid],
            labels["end"],
        )
        for cid in labels["campaigns"]
    ]
    r = evaluate(*_write(tmp_path, labels, alerts))
    assert r.overall.recall == 1.0 and r.overall.precision == 1.0 and r.overall.false_positive_rate == 0.0
    assert all(c.recall == 1.0 and c.ttd_hours is not None and c.ttd_hours > 0 for c in r.campaigns)


def test_detection_is_never_earlier_than_the_accounts_first_request(tmp_path: Path) -> None:
    # A grown cluster alert keeps its first revision's detected_event_ts; a4 joined it later.
    grown = [*ALERTS, _alert("Y", 2, "high", ["a1", "a4"], "2026-03-02T05:00:00.000Z")]
    r = evaluate(*_write(tmp_path, LABELS, grown))
    c1 = r.campaigns[0]
    assert (c1.n_detected, c1.n_alerted_before_first_request) == (4, 2)  # a1 (first 06:30) and a4 (06:10)
    assert c1.ttd_hours == pytest.approx(
        10 / 60, abs=1e-4
    )  # a4 at its first request, 06:10, minus start 06:00
    assert c1.median_account_ttd_hours == pytest.approx(0.5)  # a1 0, a2 2.0, a3 1.0, a4 0
