"""The labelled traffic simulator: determinism, labels, contract validity, model launch, SimHash."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl
import pytest

from detector.lab.simulate import SimParams, simhash64, simhash64_hex, simulate
from detector.lab.simulate.params import FAMILIES, PERSONAS
from detector.lab.simulate.prompts import PromptBank

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")
DAYS, SCALE, SEED = 2.0, 0.1, 11


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    simulate(out, days=DAYS, seed=SEED, scale=SCALE)
    return out


@pytest.fixture(scope="module")
def events(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def labels(run: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run / "labels.json").read_text())
    return data


def test_same_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    simulate(a, days=0.5, seed=5, scale=0.05)
    simulate(b, days=0.5, seed=5, scale=0.05)
    simulate(c, days=0.5, seed=6, scale=0.05)
    for name in ("events.jsonl", "events.parquet", "labels.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "events.jsonl").read_bytes() != (c / "events.jsonl").read_bytes()


def test_events_sorted_unique_and_timestamps_in_contract_form(events: list[dict[str, Any]]) -> None:
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    assert all(TS_RE.match(t) for t in ts)
    assert len({e["request_id"] for e in events}) == len(events)


def test_parquet_holds_the_same_rows_as_jsonl(run: Path) -> None:
    pq = pl.read_parquet(run / "events.parquet")
    js = pl.read_ndjson(run / "events.jsonl", schema=pq.schema)
    assert pq.equals(js)
    assert isinstance(pq.schema["client"], pl.Struct) and isinstance(pq.schema["prompt"], pl.Struct)


def test_labels_and_events_agree(events: list[dict[str, Any]], labels: dict[str, Any]) -> None:
    accounts = labels["accounts"]
    seen = {e["account_id"] for e in events}
    assert seen == set(accounts)
    members: dict[str, int] = Counter(a["campaign_id"] for a in accounts.values() if a["attacker"])
    assert set(members) == set(labels["campaigns"])
    for cid, spec in labels["campaigns"].items():
        assert spec["n_accounts"] == members[cid] > 0
        assert spec["family"] in FAMILIES
    for a in accounts.values():
        assert a["attacker"] == (a["campaign_id"] is not None) == (a["campaign_type"] is not None)
    assert {spec["family"] for spec in labels["campaigns"].values()} == set(FAMILIES)
    assert labels["seed"] == SEED and labels["days"] == DAYS and labels["scale"] == SCALE


def test_persona_counts_follow_params_times_scale(labels: dict[str, Any]) -> None:
    params = SimParams()
    counts = Counter(a["persona"] for a in labels["accounts"].values() if not a["attacker"])
    for persona in PERSONAS:
        want = max(1, round(getattr(params, persona).accounts * SCALE))
        assert counts[persona] == want, persona


def test_campaigns_start_at_different_times_and_keep_signing_up(labels: dict[str, Any]) -> None:
    starts = {spec["start_ts"] for spec in labels["campaigns"].values()}
    assert len(starts) > 1 and min(starts) > labels["start"]
    late = [
        a
        for a in labels["accounts"].values()
        if a["attacker"] and a["created_at"] > labels["campaigns"][a["campaign_id"]]["start_ts"]
    ]
    assert late, "banned accounts should be replaced by fresh sign-ups during the run"


def _format_checker() -> jsonschema.FormatChecker:
    """Default checks (ipv4/ipv6 via ipaddress) plus a strict RFC 3339 date-time check that does not
    depend on optional packages."""
    checker = jsonschema.FormatChecker()

    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not RFC3339.match(value):
            raise ValueError(f"not RFC 3339: {value}")
        datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
        return True

    checker.checks("date-time", raises=ValueError)(_date_time)
    return checker


@pytest.mark.shared
def test_events_follow_the_gateway_event_contract(
    events: list[dict[str, Any]], labels: dict[str, Any]
) -> None:
    schema = json.loads((SHARED / "contracts" / "gateway-event.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=_format_checker())
    bad = json.loads((SHARED / "contracts" / "examples" / "bad" / "naive_timestamp.json").read_text())
    assert not validator.is_valid(bad), "format checking must be active"
    assert not validator.is_valid(
        json.loads((SHARED / "contracts" / "examples" / "bad" / "bad_ip.json").read_text())
    )
    by_persona: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_persona[labels["accounts"][e["account_id"]]["persona"]].append(e)
    sample = events[::50] + [e for rows in by_persona.values() for e in rows[:40]]
    sample += [e for e in events if e["status"] != 200][:50] + [
        e for e in events if e["prompt"]["text"] is None
    ][:50]
    for e in sample:
        errors = sorted(validator.iter_errors(e), key=str)
        assert not errors, (e["request_id"], [err.message for err in errors])


def test_every_contract_field_is_filled(events: list[dict[str, Any]]) -> None:
    assert len({e["model"] for e in events}) >= 4
    assert {e["status"] for e in events} >= {200, 429}
    assert all(e["account"]["created_at"] and e["client"]["tls_fingerprint"] for e in events)
    thinking = [e for e in events if e["params"]["thinking"] and e["status"] == 200]
    assert thinking and all(e["usage"]["reasoning_tokens"] is not None for e in thinking)
    ipv6 = sum(":" in e["client"]["ip"] for e in events) / len(events)
    assert 0.01 < ipv6 < 0.15
    langs = {e["prompt"]["lang"] for e in events}
    assert {"en", "zh", "es", "de", "fr", "ru", "ja", "pt", "ar", "ko"} <= langs
    size = sum(len(json.dumps(e, ensure_ascii=False).encode()) for e in events[:3000]) / 3000
    assert 700 < size < 2000


def test_new_model_appears_only_after_launch_and_the_agentic_campaign_pivots(
    events: list[dict[str, Any]], labels: dict[str, Any]
) -> None:
    new, launch = labels["new_model"]["id"], _ts(labels["new_model"]["launch_ts"])
    on_new = [e for e in events if e["model"] == new]
    assert on_new and min(_ts(e["ts"]) for e in on_new) >= launch
    agentic = [e for e in events if labels["accounts"][e["account_id"]]["persona"] == "agentic_pivot"]

    def share(lo_h: float, hi_h: float) -> float:
        rows = [e for e in agentic if lo_h <= (_ts(e["ts"]) - launch).total_seconds() / 3600 < hi_h]
        assert rows
        return float(sum(e["model"] == new for e in rows) / len(rows))

    assert share(-12, 0) == 0.0
    early, late = share(0, 4), share(16, 24)
    assert early < late and late >= 0.3


def test_simhash_only_accounts_are_about_the_configured_fraction(
    events: list[dict[str, Any]], labels: dict[str, Any]
) -> None:
    free: dict[str, set[bool]] = defaultdict(set)
    for e in events:
        p = e["prompt"]
        assert (p["text"] is None) != (p["simhash"] is None)
        assert p["chars"] is not None and p["chars"] >= 0
        free[e["account_id"]].add(p["text"] is None)
    assert all(len(v) == 1 for v in free.values()), "an account ships text always or never"
    n_free = sum(True in v for v in free.values())
    assert n_free == round(SimParams().text_free_fraction * len(labels["accounts"]))


def test_simhash64_is_stable_and_locality_sensitive() -> None:
    a = "Solve the following problem step by step and write out every intermediate step of your reasoning"
    b = a + " before answering"
    c = "What is a good recipe for banana bread without eggs that my kids will like?"
    assert simhash64("") == 0
    assert simhash64(a) == simhash64(a.upper()) and 0 <= simhash64(a) < 2**64
    assert re.fullmatch(r"[0-9a-f]{16}", simhash64_hex(a))

    def dist(x: str, y: str) -> int:
        return (simhash64(x) ^ simhash64(y)).bit_count()

    assert dist(a, b) < dist(a, c)
    assert simhash64_hex("你好世界今天") != simhash64_hex("你好世界明天")


def test_builtin_prompt_bank_fills_every_template() -> None:
    import numpy as np

    bank = PromptBank.load(None)
    rng = np.random.default_rng(0)
    texts = bank.benign(rng, ["en", "zh", "es", "de", "fr", "ru", "ja", "pt", "ar", "ko"] * 20)
    texts += bank.code(rng, 50) + bank.problems(rng, 50) + bank.cot(rng, 50, 0.3)[0] + bank.rubric(rng, 20)
    texts += (
        bank.coercion(rng, bank.coercion_langs * 5) + bank.agent_first(rng, 30) + bank.agent_next(rng, 30)
    )
    texts += bank.synthetic(rng, 30) + bank.instructions(rng, 30) + bank.skeleton(rng, 5, "T")
    texts += [t for i in range(bank.n_apps) for t in bank.app(rng, i, 10)]
    slots = re.compile(
        r"\{(n|id|[abcdps]|big|pct|name|plang|city|topic|food|thing|problem|question|answer\w*|tag)\}"
    )
    assert all(t and not slots.search(t) for t in texts)
    assert (ROOT / "detector" / "data" / "sim_prompts.json").stat().st_size < 300_000


@pytest.mark.shared
def test_real_prompt_sets_are_used_when_given(tmp_path: Path) -> None:
    bank = PromptBank.load(SHARED / "data" / "prompts")
    assert len(bank.extra.problems) > 1000 and len(bank.extra.benign.get("en", [])) > 500
    s = simulate(tmp_path, days=0.25, seed=1, scale=0.05, prompts_dir=SHARED / "data" / "prompts")
    assert s.n_events > 0
