"""Issue 17: the hackathon cohort, an honest look-alike of a fresh farm, is not accused.

The simulator's cohort is drawn per seed (size, tutorial, starter count, timing, phones and home
addresses beside the venue NAT); replayed through the shipped engine, no seed's cohort reaches high and
no cluster alert names it: the room (one venue prefix) explains its coordination, and high needs
coordination that nothing explains *and* extraction evidence. Before the venue share and the two-axis
cap, seeds 1 and 3 below put most of a 60-person cohort at high (cluster_coordinated_extraction).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import pytest

from detector.app import build_engine
from detector.contracts import SEVERITY_RANK
from detector.detect.evidence import add_axes, require_both_axes
from detector.evidence_settings import EvidenceSettings
from detector.lab.simulate import FAMILIES, SimParams, simulate
from detector.lab.simulate.hackathon import hackathon_cohort
from detector.lab.simulate.params import PersonaParams
from detector.lab.simulate.prompts import PromptBank
from detector.lab.simulate.world import World
from detector.runtime.replay import replay
from detector.window.features import CATALOGUES

ROOT = Path(__file__).resolve().parents[1]
BANK = PromptBank.load(None)
SCALE = 0.1
#: The evidence axes ``add_axes`` adds (not inputs).
AXES = {"extraction_signals", "coordination_signals", "one_customer_explains", "colocated"}
AXES |= {"bulk_provisioned", "trusted_customer", "volume_outside_tier"}


def _prefix(ip: str) -> str:
    return str(ipaddress.ip_network(f"{ip}/24", strict=False))


def test_the_cohort_is_fresh_free_accounts_behind_one_venue_with_a_drawn_tutorial() -> None:
    kinds, sizes_of_tail = set(), []
    for seed in range(12):
        w = World(seed, SimParams(), BANK, 1.0, 1.0)
        block = hackathon_cohort(w, PersonaParams(accounts=40, requests_per_day=40.0, new_model_adoption=0.0))
        people = [a for a in w.accounts if a.persona == "hackathon_cohort"]
        assert len(people) == 40 and len(block) > 40 * 2
        assert all(a.tier == "free" and not a.verified and a.payment is None for a in people)
        assert len({a.org_id for a in people}) == 40  # each participant is their own account
        # the venue: every participant sends through it, and its addresses sit in one /24
        venue = {ip for ip in people[0].ips if people[0].ips.count(ip) > 1}
        assert venue and len({_prefix(ip) for ip in venue}) == 1
        assert all(venue <= set(a.ips) for a in people)
        sizes_of_tail.append(sum(len(set(a.ips) - venue) > 0 for a in people))
        # sign-ups: most participants within 90 minutes of each other (the registration desk)
        created = np.sort(np.array([a.created_ms for a in people]))
        window = created[int(0.8 * len(created)) - 1] - created[0]
        assert window <= 4 * 3600 * 1000
        # the tutorial's system prompt is on every starter request; its kind varies by event
        sys_hashes = {h for h in block.sys_hash if h is not None}
        assert len(sys_hashes) == 1
        kinds.add((int(block.tools.max()) > 0, bool(block.thinking[block.max_tokens >= 16000].any())))
    assert len(kinds) >= 2, "the tutorial is drawn per event"
    assert max(sizes_of_tail) > 0, "some participants also send from a phone or from home"


def _cohort_only(size: int) -> SimParams:
    base = SimParams()
    update: dict[str, Any] = {f: getattr(base, f).model_copy(update={"campaigns": 0}) for f in FAMILIES}
    update["hackathon_cohort"] = base.hackathon_cohort.model_copy(update={"accounts": round(size / SCALE)})
    return base.model_copy(update=update)


@pytest.mark.parametrize("seed", [1, 3])
def test_a_hackathon_cohort_never_reaches_high_nor_a_cluster_accusation(tmp_path: Path, seed: int) -> None:
    simulate(tmp_path, 1.0, seed, scale=SCALE, params=_cohort_only(60))
    replay([tmp_path / "events.parquet"], build_engine(ROOT / "rules"), tmp_path / "alerts.jsonl")
    labels = orjson.loads((tmp_path / "labels.json").read_bytes())["accounts"]
    cohort = {a for a, v in labels.items() if v.get("persona") == "hackathon_cohort"}
    assert len(cohort) == 60
    high, clustered = set(), set()
    for line in (tmp_path / "alerts.jsonl").read_bytes().splitlines():
        alert = orjson.loads(line)
        named = set(alert["account_ids"]) & cohort
        if not named or SEVERITY_RANK[alert["severity"]] < SEVERITY_RANK["medium"]:
            continue
        if alert["severity"] in ("high", "critical"):
            high |= named
        if alert["kind"] == "cluster":
            clustered |= named
    assert not high, f"{len(high)} of the cohort at high"
    assert not clustered, f"{len(clustered)} of the cohort accused as a cluster"


#: Six of a cohort in its first hour: one request each through the tutorial's step-by-step template,
#: a sign-up burst, the tutorial's system prompt and template, all behind the venue's prefix.
FIRST_HOUR: dict[str, Any] = {
    "accounts": 6,
    "active_accounts_24h": 6,
    "payers": 6,
    "orgs": 6,
    "requests_24h": 6,
    "requests_per_account_24h": 1.0,
    "cot_share_24h": 1.0,
    "new_account_share": 1.0,
    "median_account_age_days": 0.2,
    "top_network_key_share": 1.0,
    "second_network_key_share": 0.0,
    "shares_sysprompt": True,
    "shares_template": True,
    "shares_signup": True,
    "signup_burst_share": 1.0,
    "synchrony_24h": 1.0,
}


def _cluster(cluster_id: str = "c1", **features: Any) -> pl.DataFrame:
    """One cluster with every catalogue feature (neutral unless given), before the evidence axes."""
    row: dict[str, Any] = {"cluster_id": cluster_id}
    schema: dict[str, pl.DataType] = {"cluster_id": pl.String()}
    for name, dtype in CATALOGUES["cluster"].items():
        if name in AXES:
            continue
        neutral: Any = False if dtype == pl.Boolean() else "standard" if dtype == pl.String() else 0
        row[name] = (FIRST_HOUR | features).get(name, neutral)
        schema[name] = dtype
    return pl.DataFrame([row], schema=schema)


def test_one_room_is_colocated_at_any_size_and_with_a_phone_and_home_tail() -> None:
    s = EvidenceSettings()
    top, second, inside = "top_network_key_share", "second_network_key_share", "client_key_inside_share"
    cases: dict[str, tuple[dict[str, Any], bool]] = {
        "six of the cohort in its first hour": ({}, True),
        "a phone and home tail beside the venue": ({top: 0.8, second: 0.05}, True),
        "a pool or an egress: several shared addresses": ({second: 0.9}, False),
        "spread over homes": ({top: 0.05, second: 0.05}, False),
        "hosted addresses only (no venue prefix)": ({top: None, second: None}, False),
        "one room, but its own client build (an operator's software)": ({inside: 1.0}, False),
        "one room, laptops on a popular SDK": ({inside: 0.03}, True),
    }
    for name, (features, want) in cases.items():
        got = add_axes(_cluster(**features), "cluster", s)["colocated"][0]
        assert got is want, name


def test_high_on_a_cluster_needs_unexplained_coordination_and_extraction() -> None:
    s = EvidenceSettings()
    frame = add_axes(
        pl.concat(
            [
                _cluster("room"),  # the cohort, reasoning prompts and all
                _cluster("farm", top_network_key_share=0.05),  # coordinated, nothing explains it, extracting
                _cluster(
                    "quiet", top_network_key_share=0.05, cot_share_24h=0.0
                ),  # coordinated, no extraction
            ]
        ),
        "cluster",
        s,
    )
    hits = pl.DataFrame(
        {"cluster_id": ["room", "farm", "quiet"], "rule_id": ["r"] * 3, "severity": ["high", "high", "high"]}
    )
    out = dict(require_both_axes(hits, frame, "cluster_id").select("cluster_id", "severity").iter_rows())
    assert out == {"room": "medium", "farm": "high", "quiet": "medium"}


def test_venue_shares_count_members_behind_a_prefix_not_hosted_addresses_nor_a_tenants_egress() -> None:
    from detector.window.features import venues

    members = pl.DataFrame({"account_id": [f"a{i}" for i in range(10)], "cluster_id": ["c1"] * 10})
    rows = [(f"a{i}", "ip", "128.32.7.0/24") for i in range(8)]  # eight behind the venue
    rows += [("a0", "ip", "73.12.9.0/24"), ("a1", "ip", "73.12.9.0/24")]  # two on one carrier's prefix
    rows += [(f"a{i}", "ip", "34.1.2.3") for i in range(10)]  # a hosted address: no venue
    rows += [("a9", "ip", "10.9.9.0/24"), ("a9", "payment", "pf_1")]
    keys = pl.DataFrame(rows, schema=["account_id", "family", "key"], orient="row")
    none = pl.DataFrame(schema={"account_id": pl.String})
    got = venues(keys, members, none).drop("venue_key").row(0, named=True)
    assert got == {"cluster_id": "c1", "top_network_key_share": 0.8, "second_network_key_share": 0.2}
    # a reseller tenant's sub-accounts send from the tenant's egress: they are not in a room
    got = venues(keys, members, pl.DataFrame({"account_id": ["a0", "a1"]})).row(0, named=True)
    assert got["top_network_key_share"] == 6 / 8 and got["second_network_key_share"] == 1 / 8


def test_client_inside_share_tells_an_operators_build_from_a_popular_sdk() -> None:
    from detector.window.features import client_inside

    ids = [f"f{i}" for i in range(5)] + [f"h{i}" for i in range(4)]
    members = pl.DataFrame({"account_id": ids, "cluster_id": ["farm"] * 5 + ["room"] * 4})
    rows = [(f"f{i}", "client", "t13d_custom|httpx") for i in range(5)]  # the farm's own build
    rows += [(f"h{i}", "client", "t13d_py|vendor-python") for i in range(3)]  # laptops on a popular SDK
    rows += [("h3", "client", "t13d_js|ts")]
    rows += [(f"x{i}", "client", "t13d_py|vendor-python") for i in range(97)]  # the SDK's other users
    keys = pl.DataFrame(rows, schema=["account_id", "family", "key"], orient="row")
    got = dict(client_inside(keys, members).iter_rows())
    assert got == {"farm": 1.0, "room": 0.03}
