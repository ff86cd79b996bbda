"""Analyst dispositions: the append-only store, the false-positive round trip on a simulated run (the
episode's decisions are lifted, the proposed allow-list entries load and suppress the accounts on the
next replay), scoring against dispositions, and the token-guarded HTTP endpoint on the ops port."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from detector.app import build_engine
from detector.cli import app
from detector.decide import DecisionBook, load_policy
from detector.decide.dispositions import Disposition, DispositionStore, http_handler, read_token
from detector.detect.allowlist import AllowList
from detector.runtime.replay import replay
from detector.runtime.stream.http import OpsServer

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_store_is_append_only_and_latest_wins(tmp_path: Path) -> None:
    store = DispositionStore(tmp_path / "d" / "dispositions.sqlite")
    now = datetime(2026, 3, 4, tzinfo=UTC)
    store.add(Disposition(alert_id="al-01", verdict="confirm", at=now))
    store.add(Disposition(alert_id="al-01", verdict="false_positive", note="eval team", at=now))
    assert [d.verdict for d in store.all()] == ["confirm", "false_positive"]
    assert store.latest()["al-01"].verdict == "false_positive"
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store._db.execute("DELETE FROM dispositions")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store._db.execute("UPDATE dispositions SET verdict = 'confirm'")
    store.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from detector.lab.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    simulate(out, days=1, seed=3, scale=0.15)
    replay(
        [out / "events.parquet"],
        build_engine(ROOT / "rules"),
        out / "alerts.jsonl",
        decider=DecisionBook(load_policy()),
        decisions_out=out / "decisions.jsonl",
    )
    return out


@pytest.mark.slow
def test_false_positive_withdraws_decisions_and_proposes_an_allowlist_that_works(
    run: Path, tmp_path: Path
) -> None:
    alerts = [json.loads(x) for x in (run / "alerts.jsonl").read_text().splitlines()]
    target = next(a for a in alerts if a["kind"] == "cluster" and a["severity"] == "high")
    decisions = tmp_path / "decisions.jsonl"
    decisions.write_bytes((run / "decisions.jsonl").read_bytes())
    before = [json.loads(x) for x in decisions.read_text().splitlines()]
    in_force = DecisionBook(load_policy())
    in_force.load_records(before)
    expected = sorted(a for a, d in in_force.active.items() if d.alert_id == target["alert_id"])
    assert expected, "the chosen alert should have decisions in force"
    allow = tmp_path / "allow.yaml"
    store = tmp_path / "d.sqlite"
    result = runner.invoke(
        app,
        [
            "disposition",
            target["alert_id"],
            "false_positive",
            "--note",
            "known eval customer",
            "--store",
            str(store),
            "--alerts",
            str(run / "alerts.jsonl"),
            "--allowlist",
            str(allow),
            "--write-allowlist",
            "--decisions",
            str(decisions),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"withdrew {len(expected)} decisions" in result.output and "+- type: account" in result.output
    after = [json.loads(x) for x in decisions.read_text().splitlines()]
    lifts = after[len(before) :]
    assert sorted(x["account_id"] for x in lifts) == expected
    assert all(x["op"] == "lift" and x["lift_reason"] == "withdrawn" for x in lifts)
    schema = json.loads((ROOT / "contracts" / "decision.schema.json").read_text())
    for x in lifts:
        jsonschema.validate(x, schema)
    # the proposed allow-list loads and keeps every one of those accounts out of the next replay
    entries = AllowList.load(allow).entries
    assert set(target["account_ids"]) <= {e.value for e in entries if e.type == "account"}
    again = tmp_path / "again.jsonl"
    replay([run / "events.parquet"], build_engine(ROOT / "rules", allowlist=allow), again)
    named = {a for x in again.read_text().splitlines() for a in json.loads(x)["account_ids"]}
    assert not named & set(target["account_ids"])
    # scoring against the disposition: that alert is a false positive under each of its rules
    scored = runner.invoke(
        app, ["evaluate", "--alerts", str(run / "alerts.jsonl"), "--dispositions", str(store), "--json"]
    )
    assert scored.exit_code == 0, scored.output
    body = json.loads(scored.stdout)
    assert body["labelled"] == 1 and body["overall"]["false_positive"] == 1
    assert body["overall"]["precision"] == 0.0


def test_http_endpoint_needs_the_token_and_appends(tmp_path: Path) -> None:
    store = DispositionStore(tmp_path / "d.sqlite")
    withdrawn: list[str] = []
    token = read_token(None, _write(tmp_path / "token", "s3cret\n"))
    assert token == "s3cret"
    server = OpsServer(
        CollectorRegistry(),
        lambda: True,
        lambda: True,
        dispositions=http_handler(store, lambda aid: withdrawn.append(aid) or 3),
        token=token,
    ).start()
    url = f"http://127.0.0.1:{server.port}/dispositions"
    body = {"alert_id": "al-0a", "verdict": "false_positive", "note": "hackathon"}
    try:
        assert _post(url, body, None)[0] == 401
        assert _post(url, body, "wrong")[0] == 401
        assert _post(url, {"alert_id": "al-0a", "verdict": "maybe"}, "s3cret")[0] == 400
        code, answer = _post(url, body, "s3cret")
        assert code == 201 and answer["withdrawn"] == 3 and withdrawn == ["al-0a"]
    finally:
        server.stop()
    assert [(d.alert_id, d.verdict, d.note) for d in store.all()] == [
        ("al-0a", "false_positive", "hackathon")
    ]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _post(url: str, body: dict[str, object], token: str | None) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
