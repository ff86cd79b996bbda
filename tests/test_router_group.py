"""Issue 17, round 20: a router's aged seats read as a group (``detect/aged.py``).

A blended logprob farm on aged seats of the router sends logprobs with several samples on a quarter of
each seat's few requests: under the extraction bar, so each seat is an established verified customer the
trust cap holds at low. Its seats were opened in a few sign-up bursts; the router's honest uncertainty
apps (aged, logprobs on 5-60%) each opened their own, and its customers who share a half hour send no
logprobs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from router_days import ROOT, accused, named, opened_at, router_params

import detector.engine
import detector.runtime.replay as replay_module
from detector.app import build_engine
from detector.detect.aged import AgedSeats
from detector.detect.context import population_sheets
from detector.engine import Observers
from detector.lab.simulate import SimParams, simulate
from detector.runtime.replay import replay
from detector.settings import EngineSettings
from detector.window.context import PopulationContext

SCALE = 0.1
SEED = 4


def _day(out: Path, **update: Any) -> tuple[Path, dict[str, Any]]:
    """Seed 4's router day (``router_days.router_params``: chat and 600 router customers, 12 of them
    uncertainty apps) with ``update`` applied to its parameters."""
    simulate(out, 1.0, SEED, scale=SCALE, params=router_params().model_copy(update=update))
    return out / "events.parquet", orjson.loads((out / "labels.json").read_bytes())["accounts"]


def _as_of_main(monkeypatch: pytest.MonkeyPatch) -> None:
    """No group release: the trust cap as round 19 left it."""
    monkeypatch.setattr(AgedSeats, "of", classmethod(lambda cls, *a, **k: None))


def _blended_farm() -> Any:
    """A logprob farm of 20 aged seats through the router opened in two sign-up bursts, 75% of its
    requests ordinary chat, no waves."""
    return SimParams().logprob_harvest.model_copy(
        update={
            "campaigns": 1,
            "cluster_size": 200,  # 20 seats at scale 0.1
            "requests_per_account_day": 10.0,
            "account_age_days": 300.0,
            "via_router": True,
            "blend_ratio": 0.75,
            "wave_interval_s": 0.0,
            "signup_bursts": 2,
            "churn_fraction": 0.0,
            "start_offsets": [0.1],
        }
    )


def test_a_blended_aged_logprob_farm_through_the_router_is_accused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A logprob farm of 20 aged seats through the router opened in two sign-up bursts, 75% of its
    requests ordinary chat, no waves: more of its seats accused than with the trust cap alone."""
    events, labels = _day(tmp_path, logprob_harvest=_blended_farm())
    seats = {a for a, i in labels.items() if i["attacker"]}
    assert len(seats) >= 15
    now = named(events, tmp_path / "now.jsonl")
    with monkeypatch.context() as m:
        _as_of_main(m)
        before = accused(named(events, tmp_path / "before.jsonl")) & seats
    assert len(accused(now) & seats) > len(before) + 3, (len(before), len(accused(now) & seats))
    honest = {a for a, i in labels.items() if i["persona"].startswith("router_")}
    assert not accused(now) & honest


def test_the_routers_uncertainty_apps_and_customers_in_shared_slots_stay_below_medium(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The router's uncertainty apps (400 customers, 8 apps: aged, logprobs with several samples, each
    its own sign-up half hour) and 24 of its aged customers opened in four half hours (six in each, no
    logprobs): none accused, and no router account's verdict moves (a new judge seat and a new customer
    seat of this day are accused by the account model with or without the release: no trust to release)."""
    many = router_params().router_customers.model_copy(update={"accounts": 4000})
    events, labels = _day(tmp_path, router_customers=many)
    apps = sorted(a for a, i in labels.items() if i["persona"] == "router_uncertainty")
    customers = sorted(a for a, i in labels.items() if i["persona"] == "router_customers")
    assert len(apps) >= 8 and len(customers) >= 200
    path, grouped = events, customers[:24]
    for i in range(4):  # aged: opened months before the day, six in one half hour
        when = pl.lit(f"2025-0{6 + i}-02T09:05:00.000Z")
        group = customers[6 * i : 6 * i + 6]
        path = opened_at(pl.read_parquet(path), group, when, tmp_path / f"c{i}.parquet")
    found = named(path, tmp_path / "shared.jsonl")
    assert not accused(found) & {*apps, *grouped}
    with monkeypatch.context() as m:
        _as_of_main(m)
        before = named(path, tmp_path / "before.jsonl")
    router = {a for a, i in labels.items() if i["persona"].startswith("router_")}
    assert {a: s for a, s in found.items() if a in router} == {a: s for a, s in before.items() if a in router}


def test_the_release_is_the_same_in_any_slices_and_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blended farm's day replayed whole and in slices of 1,500 events with account features in parts
    of 7 points (many engine passes, each point's group read at its own tick): the same alerts, byte for
    byte, released points among them, and at most one ``evidence:aged`` reason on any alert."""
    events, _ = _day(tmp_path, logprob_harvest=_blended_farm())
    replay([events], build_engine(ROOT / "rules"), tmp_path / "whole.jsonl")
    monkeypatch.setattr(replay_module, "SLICE_ROWS", 1500)
    parts = EngineSettings().model_copy(update={"feature_batch_points": 7})
    replay([events], build_engine(ROOT / "rules", settings=parts), tmp_path / "parts.jsonl")
    whole = (tmp_path / "whole.jsonl").read_bytes()
    assert (tmp_path / "parts.jsonl").read_bytes() == whole
    aged = [
        sum(r["name"] == "evidence:aged" for r in orjson.loads(line)["reasons"])
        for line in whole.splitlines()
    ]
    assert max(aged) == 1, "released points, one reason each"


def _lagged(events: Path, out: Path, lag: bool, relay: Any = None) -> tuple[set[str], set[str]]:
    """The accounts accused at medium or above by an account alert, and those of the account alerts with
    an ``evidence:aged`` reason (``lag``: under ``context_lag``; ``relay``: each tick's context's
    publication)."""
    settings = EngineSettings().model_copy(update={"context_lag": lag})
    observers = Observers(on_context=relay, on_models=relay)
    replay([events], build_engine(ROOT / "rules", settings=settings, observers=observers), out)
    alerts = [a for a in map(orjson.loads, out.read_bytes().splitlines()) if a["kind"] == "account"]
    medium = {a for alert in alerts if alert["severity"] in ("medium", "high") for a in alert["account_ids"]}
    aged = {a for alert in alerts if _aged(alert) for a in alert["account_ids"]}
    return medium, aged


def _aged(alert: dict[str, Any]) -> bool:
    return any(r["name"] == "evidence:aged" for r in alert["reasons"])


def _through_bytes(ctx: PopulationContext) -> PopulationContext:
    return PopulationContext.from_bytes(ctx.to_bytes())


def _as_version_3(ctx: PopulationContext) -> PopulationContext:
    """The context as a cluster stage from before round 21 publishes it: no ``aged_slots``."""
    return PopulationContext.from_bytes(replace(ctx, aged_slots=None).to_bytes())


def _without_contexts(*args: Any, **kwargs: Any) -> tuple[pl.DataFrame, None]:
    """The sheet features as the engine reads them, but no contexts: under the lag the release reads its
    groups from the key table a tick before (the lag's own walk)."""
    sheets, _ = population_sheets(*args, **kwargs)
    return sheets, None


def test_the_split_deployment_releases_the_seats_the_one_engine_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 21: under ``context_lag`` the release reads the groups a tick late, through each tick's
    context (its ``aged_slots``, through bytes as the split stages do) or from the key table a tick before
    (the same alerts): the blended farm's seats accused are the same as without the lag, released ones
    among them (before round 21 the release was skipped under the lag: 8 seats accused against 13). A
    version 3 context (no ``aged_slots``: a cluster stage from before round 21) releases none."""
    events, labels = _day(tmp_path, logprob_harvest=_blended_farm())
    seats = {a for a, i in labels.items() if i["attacker"]}
    accused_off, released_off = _lagged(events, tmp_path / "off.jsonl", lag=False)
    assert len(released_off & seats) > 3 and released_off <= seats, len(released_off)
    accused_on, released_on = _lagged(events, tmp_path / "wire.jsonl", True, _through_bytes)
    assert accused_on == accused_off
    # a tick late, a seat may reach its bar (accused on its own) before its group releases it
    assert len(released_on & seats) > 3 and released_on <= seats, len(released_on)
    with monkeypatch.context() as m:
        m.setattr(detector.engine, "population_sheets", _without_contexts)
        _lagged(events, tmp_path / "walk.jsonl", lag=True)
    assert (tmp_path / "walk.jsonl").read_bytes() == (tmp_path / "wire.jsonl").read_bytes()
    accused_v3, released_v3 = _lagged(events, tmp_path / "v3.jsonl", True, _as_version_3)
    assert not released_v3 and len(accused_v3 & seats) < len(accused_off & seats)
