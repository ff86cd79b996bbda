"""The response policy and its decisions: the policy file is checked at load, decisions follow their
committed contract, ids are idempotent, lifts fall due by event time or on withdrawal, and on a
simulated run the default policy gives no honest account more than ``monitor``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from detector.app import build_engine
from detector.cli import app
from detector.contracts import Alert, Reason
from detector.decide import ACTION_RANK, DecisionBook, PolicyError, load_policy
from detector.decide.policy import DEFAULT_POLICY
from detector.decide.schema import decision_schema
from detector.lab.policy_cost import policy_cost
from detector.runtime.replay import replay

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "contracts" / "decision.schema.json"
T0 = datetime(2026, 3, 2, tzinfo=UTC)
runner = CliRunner()


def _alert(
    severity: str = "high",
    kind: str = "cluster",
    campaign: str | None = "chain_of_thought",
    accounts: tuple[str, ...] = ("a1", "a2"),
    revision: int = 1,
    at: datetime = T0,
    alert_id: str = "al-1",
    **evidence: float | bool,
) -> Alert:
    ev: dict[str, object] = {
        "link_families": 3,
        "new_account_share": 0.9,
        "one_customer_explains": False,
        "trusted_customer": False,
        **evidence,
        "revision_event_ts": at,
    }
    return Alert(
        alert_id=alert_id,
        revision=revision,
        kind=kind,  # type: ignore[arg-type]
        subject="cl-x" if kind == "cluster" else accounts[0],
        account_ids=list(accounts),
        severity=severity,  # type: ignore[arg-type]
        score=0.9,
        campaign_type=campaign,
        first_event_ts=at - timedelta(hours=1),
        detected_event_ts=at,
        reasons=[Reason(source="rule", name="cluster_cot_hydra", score=0.8)],
        evidence=ev,
    )


# ---------------------------------------------------------------------------------------------- policy
def test_default_policy_loads_and_maps_severity_kind_campaign_and_evidence() -> None:
    p = load_policy()
    assert p.action_for(_alert(severity="low"))[1] == "monitor"
    assert p.action_for(_alert())[1] == "fallback_model"
    assert p.action_for(_alert(severity="critical"))[1] == "suspend"
    assert p.action_for(_alert(campaign="logprob_harvest"))[1] == "rate_limit"
    # the evidence axis: an established (not new) cluster is only asked to verify
    assert p.action_for(_alert(new_account_share=0.1))[1] == "step_up_verification"
    # ... and so is a cluster one paying customer explains (a company card), or a trusted customer
    assert p.action_for(_alert(one_customer_explains=True))[1] == "step_up_verification"
    assert p.action_for(_alert(trusted_customer=True))[1] == "step_up_verification"
    assert p.action_for(_alert(kind="account", accounts=("a1",)))[1] == "step_up_verification"
    assert p.action_for(_alert(kind="account", severity="medium", accounts=("a1",)))[1] == "monitor"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colour: red\n", ": colour: unknown key"),
        ("actions:\n  monitor:\n    duration: 7 days\n", "actions.monitor.duration"),
        ("rules:\n  - id: x\n    when: {severity: [low], colour: [red]}\n    action: monitor\n", "colour"),
        ("rules:\n  - id: x\n    when: {}\n    action: block\n", "rules.0.action"),
    ],
)
def test_a_bad_policy_fails_with_one_line_naming_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    base = DEFAULT_POLICY.read_text()
    top = text.split(":", 1)[0]
    # replace the top-level section the case is about (or add the unknown key)
    lines = base.splitlines(keepends=True)
    start = next((i for i, x in enumerate(lines) if x.startswith(f"{top}:")), None)
    if start is not None:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i][:1] not in (" ", "\n", "#")), len(lines)
        )
        lines[start:end] = [text]
    else:
        lines.append(text)
    bad = tmp_path / "p.yaml"
    bad.write_text("".join(lines))
    with pytest.raises(PolicyError) as err:
        load_policy(bad)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(bad)) and expected in msg
    result = runner.invoke(app, ["policy", "check", str(bad)])
    assert result.exit_code == 1 and str(bad) in result.output


# ------------------------------------------------------------------------------------------ contract
def test_committed_decision_contract_matches_the_model() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == decision_schema(), "regenerate: detector policy schema"


# --------------------------------------------------------------------------------------- decisions
def test_decision_ids_are_idempotent_and_lifts_fall_due_by_event_time() -> None:
    alerts = [_alert(), _alert(revision=2, accounts=("a1", "a2", "a3"), at=T0 + timedelta(hours=1))]
    one, two = DecisionBook(load_policy()), DecisionBook(load_policy())
    first = one.on_alerts(alerts)
    assert [d.decision_id for d in first] == [d.decision_id for d in two.on_alerts(alerts)]
    # a1 and a2 are already under fallback_model: the revision only adds a3
    assert [(d.op, d.account_id) for d in first] == [("apply", "a1"), ("apply", "a2"), ("apply", "a3")]
    assert first[0].expires_event_ts == T0 + timedelta(hours=72)
    assert one.advance(T0 + timedelta(hours=71)) == []
    lifts = one.advance(T0 + timedelta(hours=72, minutes=30))
    assert [(d.op, d.account_id, d.lift_reason) for d in lifts] == [
        ("lift", "a1", "expired"),
        ("lift", "a2", "expired"),
    ]
    assert lifts[0].lifts == first[0].decision_id and lifts[0].event_ts == first[0].expires_event_ts
    assert set(one.active) == {"a3"}


def test_a_stronger_action_replaces_a_weaker_one_and_withdrawal_lifts_at_once() -> None:
    book = DecisionBook(load_policy())
    low = book.on_alerts([_alert(severity="low", alert_id="al-low")])
    assert {d.action for d in low} == {"monitor"}
    high = book.on_alerts([_alert(alert_id="al-high", at=T0 + timedelta(hours=2))])
    assert {d.action for d in high} == {"fallback_model"}
    assert book.on_alerts([_alert(severity="low", alert_id="al-low2", at=T0 + timedelta(hours=3))]) == []
    lifts = book.withdraw("al-high", T0 + timedelta(hours=4))
    assert [(d.account_id, d.lift_reason, d.action) for d in lifts] == [
        ("a1", "withdrawn", "fallback_model"),
        ("a2", "withdrawn", "fallback_model"),
    ]
    assert book.active == {} and book.withdraw("al-high", T0 + timedelta(hours=5)) == []


def test_dry_run_marks_and_counts_what_would_have_been_enforced() -> None:
    book = DecisionBook(load_policy(), dry_run=True)
    out = book.on_alerts([_alert(), _alert(severity="low", alert_id="al-2", accounts=("b1",))])
    assert all(d.dry_run for d in out)
    assert dict(book.would_enforce) == {"fallback_model": 2}


def test_state_round_trip_keeps_decisions_in_force() -> None:
    book = DecisionBook(load_policy())
    book.on_alerts([_alert()])
    again = DecisionBook(load_policy())
    again.restore(json.loads(json.dumps(book.state())))
    assert again.active == book.active
    assert [d.decision_id for d in again.advance(T0 + timedelta(days=4))] == [
        d.decision_id for d in book.advance(T0 + timedelta(days=4))
    ]


# ----------------------------------------------------------------------------------- simulated run
@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from detector.lab.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    simulate(out, days=1.5, seed=3, scale=0.3)
    return out


@pytest.mark.slow
def test_simulated_run_decisions_validate_repeat_and_spare_honest_personas(
    sim_dir: Path, tmp_path: Path
) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    s = replay(
        [sim_dir / "events.parquet"],
        build_engine(ROOT / "rules"),
        None,
        decider=DecisionBook(load_policy()),
        decisions_out=a,
    )
    # the other input path (JSON Lines: global sort, other slices) gives byte-identical decisions
    replay(
        [sim_dir / "events.jsonl"],
        build_engine(ROOT / "rules"),
        None,
        decider=DecisionBook(load_policy()),
        decisions_out=b,
    )
    assert a.read_bytes() == b.read_bytes()
    validator = jsonschema.Draft202012Validator(
        json.loads(SCHEMA_FILE.read_text()), format_checker=jsonschema.FormatChecker()
    )
    rows = [json.loads(x) for x in a.read_text().splitlines()]
    for r in rows:
        validator.validate(r)
    assert len({r["decision_id"] for r in rows}) == len(rows)
    assert s.decisions["apply:fallback_model"] > 0 and s.decisions["apply:monitor"] > 0

    cost = policy_cost(a, [sim_dir / "events.parquet"], sim_dir / "labels.json")
    by = {c.action: c for c in cost.actions}
    # no honest account gets more than monitor; attackers do get stronger actions
    assert all(ACTION_RANK[act] <= ACTION_RANK["monitor"] for act in cost.honest_max_action.values())
    assert all(
        c.honest_accounts == 0 and c.honest_requests == 0 for c in cost.actions if c.action != "monitor"
    )
    assert by["fallback_model"].attacker_accounts > 0 and by["fallback_model"].attacker_requests > 0
    # an honest look-alike is at most watched, never touched: the university NAT cluster was a lead of
    # cluster_gb-v2 here; cluster_gb-v3 (round 10) leaves every honest account of this run unflagged
    assert set(cost.honest_max_action) <= {"university_nat"}
