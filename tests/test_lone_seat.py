"""Issue 17, round 17: a lone router seat is one customer of the router's many (``detect/lone.py``).

The router's customers include developers comparing models on benchmarks that ask for steps, one run on
the new model on its launch day. A customer who opened its seat within the month has no tenure, so no
trust, and the account axis accused it at medium (reasoning elicited, the new model's launch): on the
round-16 held-out block most of the 59 router customers at medium. Seed 2's router customers below, the
model-comparison developers, two of whose seats were opened ten days before the day: accused with the
lone-seat test off, neither with it on. The same two seats sharing one private system prompt (a group of
new seats holding the farm's own tool, as a farm through the router does) stay accused; round 19: so do
the same two seats opened in one half hour (the fixture opens them on different days).

Round 18: each case with ``context_lag`` on too (the split deployment's account stage reads its groups
of new seats a tick late, through the contexts' ``new_seats``); and the contexts and the lag's walk of
the key table a tick before name the same alerts on the day, byte for byte.
Round 18: the cap is the router's, read from its tenant: the same two seats under a tenant of their own
(their own reseller id and one org, both opened ten days ago: a farm's own fresh tenant, as half a
cot_hydra farm's seats are under a reseller tier of its own) or under a reseller whose customers keep
their own orgs (no tenant) stay accused.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from router_days import accused, named, opened_at, router_params

import detector.engine
from detector.app import build_engine
from detector.contracts import SEVERITY_RANK
from detector.detect.context import population_sheets
from detector.detect.lone import LoneWalk, customer_kinds_only, new_seat_tools, on_router, router_tenants
from detector.detect.room import EXTRACTION_SHARES
from detector.engine import Observers
from detector.evidence_settings import EvidenceSettings
from detector.lab.simulate import simulate
from detector.runtime.replay import replay
from detector.settings import EngineSettings
from detector.window.context import PopulationContext
from detector.window.link import tenant_subaccounts

ROOT = Path(__file__).resolve().parents[1]
SCALE = 0.1
SEED = 2
#: Seats opened ten and twelve days before the simulated day (2026-03-02): two of the router's customers
#: who opened their seats on different days (round 19: seats of one router opened in one half hour are
#: a group of new seats).
FRESH = pl.lit("2026-02-20T10:00:00.000Z")
FRESH_OTHER = pl.lit("2026-02-18T15:00:00.000Z")


def _settings(lag: bool) -> EngineSettings:
    return EngineSettings().model_copy(update={"context_lag": lag})


def _accused(events: Path, out: Path, lag: bool = False) -> set[str]:
    """Accounts named at medium or above by an account alert (``lag``: under ``context_lag``)."""
    return accused(named(events, out, _settings(lag)))


@pytest.fixture(scope="module")
def bench_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The day's events with the router's model-comparison developers' seats opened ten days before it."""
    out = tmp_path_factory.mktemp("lone")
    simulate(out, 1.0, SEED, scale=SCALE, params=router_params())
    labels = orjson.loads((out / "labels.json").read_bytes())["accounts"]
    events = pl.read_parquet(out / "events.parquet")
    new_model = orjson.loads((out / "labels.json").read_bytes())["new_model"]["id"]
    launch = events.filter(pl.col("model") == new_model)
    bench = sorted(
        a
        for a in set(launch["account_id"])
        if labels[a]["persona"] == "router_customers"
        and (events.filter(pl.col("account_id") == a)["params"].struct.field("temperature") == 0.0).all()
    )
    assert len(bench) >= 5, "the router's model-comparison developers"
    # two of them new, the rest established (a few of the router's many seats are new on any day)
    fresh = bench[:2]
    opened_at(events, fresh[:1], FRESH, out / "first.parquet")
    path = opened_at(pl.read_parquet(out / "first.parquet"), fresh[1:], FRESH_OTHER, out / "fresh.parquet")
    return path, fresh


LAG = pytest.mark.parametrize("lag", [False, True], ids=["now", "lag"])


@LAG
def test_a_new_customer_benchmarking_the_launch_is_one_customer(
    bench_day: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lag: bool
) -> None:
    events, bench = bench_day
    on = _accused(events, tmp_path / "on.jsonl", lag) & set(bench)
    with monkeypatch.context() as m:
        m.setattr(LoneWalk, "spare", lambda self, hits: hits)
        off = _accused(events, tmp_path / "off.jsonl", lag) & set(bench)
    assert off, "without the test the new seats are accused on the account axis"
    assert not on, on
    reasons = [
        r["detail"]
        for line in (tmp_path / "on.jsonl").read_bytes().splitlines()
        for r in orjson.loads(line)["reasons"]
        if r["name"] == "evidence:lone"
    ]
    assert reasons and all("capped at low" in d for d in reasons)


@LAG
def test_seats_sharing_their_own_tool_are_no_lone_customers(
    bench_day: tuple[Path, list[str]], tmp_path: Path, lag: bool
) -> None:
    """The same new seats holding one private system prompt: a group of new seats (a farm's own tool,
    all its holders opened within the month) keeps its account-axis verdicts."""
    events, bench = bench_day
    shared = pl.col("params").struct.with_fields(pl.lit("sp_farm_tool").alias("system_prompt_hash"))
    path = tmp_path / "farm.parquet"
    pl.read_parquet(events).with_columns(
        pl.when(pl.col("account_id").is_in(bench)).then(shared).otherwise(pl.col("params")).alias("params")
    ).write_parquet(path)
    assert _accused(path, tmp_path / "farm.jsonl", lag) & set(bench)


@LAG
def test_seats_opened_together_through_the_router_are_no_lone_customers(
    bench_day: tuple[Path, list[str]], tmp_path: Path, lag: bool
) -> None:
    """Round 19: the same new seats opened in one half hour (one ``signup`` key) through the router, and
    nothing else shared: a group of new seats of one router (a farm's sign-up batch, before a second
    seat sends its tool) keeps its account-axis verdicts. Opened on different days they are lone."""
    events, bench = bench_day
    path = opened_at(pl.read_parquet(events), bench, FRESH, tmp_path / "batch.parquet")
    assert _accused(path, tmp_path / "batch.jsonl", lag) & set(bench)


def _without_contexts(*args: Any, **kwargs: Any) -> tuple[Any, None]:
    """The sheet features as the engine reads them, but no contexts: the lone-seat test reads its groups
    of new seats from the key table a tick before (``lone.group_reader``)."""
    sheets, _ = population_sheets(*args, **kwargs)
    return sheets, None


def _lag_replay(events: Path, out: Path, relay: Any = None) -> bytes:
    observers = Observers(on_context=relay, on_models=relay)
    replay([events], build_engine(ROOT / "rules", settings=_settings(True), observers=observers), out)
    return out.read_bytes()


def _as_version_2(ctx: PopulationContext) -> PopulationContext:
    """The context as a cluster stage from before round 18 publishes it: no ``new_seats`` or ``routers``
    (nor round 21's ``aged_slots``)."""
    old = replace(ctx, new_seats=None, routers=None, aged_slots=None)
    return PopulationContext.from_bytes(old.to_bytes())


def test_the_contexts_name_the_lone_seats_the_lags_walk_does(
    bench_day: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the lag the account verdicts read the groups of new seats through each tick's context (its
    ``new_seats``, through bytes as the split stages do) or from the key table a tick before: the same
    alerts. A version 2 context (no ``new_seats``) applies no lone-seat test at all."""
    events, bench = bench_day
    through = _lag_replay(events, tmp_path / "context.jsonl")
    assert b'"evidence:lone"' in through, "the lone-seat test spared nobody: the comparison is vacuous"
    wire = _lag_replay(events, tmp_path / "wire.jsonl", lambda c: PopulationContext.from_bytes(c.to_bytes()))
    assert wire == through
    old = _lag_replay(events, tmp_path / "v2.jsonl", _as_version_2)
    assert b'"evidence:lone"' not in old and accused_in(old) & set(bench)
    with monkeypatch.context() as m:
        m.setattr(detector.engine, "population_sheets", _without_contexts)
        assert _lag_replay(events, tmp_path / "direct.jsonl") == through


def accused_in(alerts: bytes) -> set[str]:
    """Accounts an account alert of ``alerts`` names at medium or above."""
    rows = (orjson.loads(line) for line in alerts.splitlines())
    medium = SEVERITY_RANK["medium"]
    return {
        a
        for r in rows
        if r["kind"] == "account" and SEVERITY_RANK[r["severity"]] >= medium
        for a in r["account_ids"]
    }


@pytest.mark.parametrize(
    ("shares", "ours"),
    [
        ({"cot_share_24h": 1.0, "new_model_share_24h": 1.0}, True),
        ({"cot_share_24h": 1.0}, True),
        ({"thinking_share_24h": 1.0, "max_tokens_high_share_24h": 1.0}, True),
        ({}, False),
        ({"cot_share_24h": 1.0, "coercion_share_24h": 0.5}, False),
        ({"cot_share_24h": 1.0, "logprob_share_24h": 0.5}, False),
        ({"rubric_share_24h": 0.5}, False),
        ({"tools_heavy_share_24h": 0.8, "new_model_share_24h": 1.0}, False),
    ],
    ids=["launch-bench", "ask", "thinking", "none", "coercion", "logprobs", "rubric", "agentic"],
)
def test_only_what_the_routers_customers_do(shares: dict[str, float], ours: bool) -> None:
    """The kinds a lone seat may carry: steps asked, a thinking budget, the launch; nothing else, and
    at least one (a model's verdict on no signal is not read)."""
    frame = pl.DataFrame([{c: shares.get(c, 0.0) for c in EXTRACTION_SHARES}])
    assert frame.select(customer_kinds_only(EvidenceSettings())).item() is ours


@pytest.mark.parametrize("orgs", ["one org", "own orgs"])
def test_a_farms_own_reseller_is_no_router(
    bench_day: tuple[Path, list[str]], tmp_path: Path, orgs: str
) -> None:
    """The same new seats under a reseller of their own (a farm's, not the router's): one org (a fresh
    tenant, all its seats opened within the month) or each its own (a shell reseller, no tenant). Their
    tier still says reseller and nothing they hold is a group's; they stay accused (on round 17's cap,
    capped at low until a second new seat held the farm's tool)."""
    events, bench = bench_day
    mine = pl.col("account_id").is_in(bench)
    org = pl.lit("org_farm") if orgs == "one org" else pl.lit("org_") + pl.col("account_id")
    farm = pl.col("account").struct.with_fields(pl.lit("rs_farm").alias("reseller_id"))
    path = tmp_path / "own.parquet"
    pl.read_parquet(events).with_columns(
        pl.when(mine).then(farm).otherwise(pl.col("account")).alias("account"),
        pl.when(mine).then(org).otherwise(pl.col("org_id")).alias("org_id"),
    ).write_parquet(path)
    assert _accused(path, tmp_path / "own.jsonl") & set(bench)


NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ages", "verified", "router"),
    [
        ([400, 200, 90, 10, 3], True, True),
        ([400, 200, 90, 10, 3], False, False),
        ([400, 10, 9, 8, 3], True, False),
        ([10, 10, 10, 10, 10], True, False),
        ([400, 400, 400, 400, 3], True, True),
    ],
    ids=["router", "unverified", "mostly-new", "fresh-tenant", "aged-farm"],
)
def test_the_router_is_a_verified_tenant_with_tenure(ages: list[int], verified: bool, router: bool) -> None:
    """A tenant whose seats are verified and at least half of them older than the trust tenure carries
    routers' seats, its new seat among them; a tenant of new seats does not. An aged farm under its own
    verified tenant passes (its seats opened long ago): what the condition does not tell apart."""
    ids = [f"a{i}" for i in range(len(ages))]
    sub = pl.DataFrame({"account_id": ids, "reseller": ["rs_t"] * len(ids)})
    accounts = pl.DataFrame(
        {
            "account_id": ids,
            "org_id": ["org_t"] * len(ids),
            "created_at": [NOW - timedelta(days=d) for d in ages],
            "verified": [verified] * len(ids),
        }
    )
    tenants = router_tenants(sub, accounts, NOW, EvidenceSettings())
    assert tenants.rows() == ([("rs_t", "org_t")] if router else [])
    # a point is the router's by its own reseller id and org (``on_router``): not by another org
    own = pl.DataFrame({"account_id": ["a0", "x"], "family": ["reseller"] * 2, "key": ["rs_t"] * 2})
    points = pl.DataFrame({"account_id": ["a0", "x"], "org_id": ["org_t", "org_x"]})
    assert set(on_router(own, points, tenants)["account_id"]) == ({"a0"} if router else set())


def test_a_signup_half_hour_is_read_within_one_tenant_not_one_reseller_id() -> None:
    """Two tenants under one reseller id (each org half its holders: both pass ``min_overlap``): a seat
    of one opened in the same half hour as a seat of the other shares no sign-up burst with it (the
    slot is one router's: its reseller id and org), while two seats of one tenant in that half hour do."""
    ids = ["a0", "a1", "a2", "b0", "b1", "b2"]
    orgs = ["org_a"] * 3 + ["org_b"] * 3
    slot = "11111"
    # a0 and b0 opened in the same half hour (one seat of each tenant), a1 and a2 in another (tenant a)
    signup = [slot, "22222", "22222", slot, "33333", "44444"]
    keys = pl.DataFrame(
        {
            "account_id": ids * 2,
            "family": ["reseller"] * 6 + ["signup"] * 6,
            "key": ["rs_shared"] * 6 + signup,
        }
    )
    accounts = pl.DataFrame(
        {
            "account_id": ids,
            "org_id": orgs,
            "created_at": [NOW - timedelta(days=2)] * 6,
            "verified": [True] * 6,
        }
    )
    sub = tenant_subaccounts(keys.filter(pl.col("family") == "reseller"), accounts, 0.5)
    assert sub.height == 6  # both orgs are tenants of the one reseller id
    tools = set(new_seat_tools(keys, accounts, NOW, EvidenceSettings(), sub)["tool"])
    # tenant a's two seats, not a0 with b0
    assert tools == {'signup|{"reseller":"rs_shared","org_id":"org_a","key":"22222"}'}
