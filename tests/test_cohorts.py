"""Sign-up cohorts (issue 17, round 9): a private client build most of whose holders opened their
accounts within a week links them, though their sign-ups share no half hour; a build's holders who
arrived over years, or a minority of them opened together, link nobody; the evidence model reads a
cohort as coordination and bulk provisioning, and one card or one org still explains it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from test_evidence import FARM, _frame, _verdict

from detector.app import build_engine
from detector.detect.evidence import add_axes
from detector.engine import Engine
from detector.evidence_settings import EvidenceSettings
from detector.settings import LinkSettings
from detector.window.cohorts import COHORT_LINK
from detector.window.link import build_clusters
from detector.window.state import ACCOUNT_SCHEMA, KEY_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 2, 10, tzinfo=UTC)
BUILD = "t13d2712h2_3fa9c0d1e2b4_77a1b2c3d4e5|vendor-python/0.37.1"


def _world(created: dict[str, datetime], background: int = 300) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keys and accounts: ``created`` hold one build and each their own sign-up window and card; a
    background of accounts on their own builds."""
    rows = []
    for a, t in created.items():
        window = str(int(t.timestamp()) // 1800)
        rows += [(a, "client", BUILD), (a, "signup", window), (a, "payment", f"pf-{a}")]
    rows += [(f"bg{i}", "client", f"tls{i}") for i in range(background)]
    keys = pl.DataFrame([(a, f, k, T0, 1) for a, f, k in rows], schema=KEY_SCHEMA, orient="row")
    names = sorted({r[0] for r in rows})
    accounts = pl.DataFrame(
        [(a, T0, T0, created.get(a, T0 - timedelta(days=400)), None, f"org-{a}", False) for a in names],
        schema=ACCOUNT_SCHEMA,
        orient="row",
    )
    return keys, accounts


def _spread(
    n: int, every: timedelta, prefix: str = "f", last: timedelta = timedelta(0)
) -> dict[str, datetime]:
    """``n`` sign-ups ``every`` apart, the last ``last`` before five days ago."""
    start = T0 - timedelta(days=5) - last - (n - 1) * every
    return {f"{prefix}{i}": start + i * every for i in range(n)}


def test_a_private_build_opened_over_four_days_is_one_cohort() -> None:
    """Eight accounts, each in its own half hour over four days: no composite key links any two."""
    keys, accounts = _world(_spread(8, timedelta(hours=13)))
    cl = build_clusters(keys, accounts, LinkSettings())
    assert sorted(cl.members["account_id"]) == [f"f{i}" for i in range(8)]
    assert cl.links.select("link", "accounts", "weight").rows() == [(COHORT_LINK, 8, 1.0)]
    ev = cl.evidence.row(0, named=True)
    assert ev["signup_cohort_accounts"] == 8 and ev["shares_client"]
    # the window is the link, not a sign-up key the members share (that stays a half hour's burst)
    assert not ev["shares_signup"] and ev["link_families"] == 1


_DAYS, _HOURS = timedelta(days=1), timedelta(hours=1)
#: (why, sign-ups, settings): groups that are no cohort.
NO_COHORT = [
    # the window is what links them: shorter than their spread and they stay apart
    ("window shorter than the spread", _spread(8, 13 * _HOURS), LinkSettings(signup_cohort=12 * _HOURS)),
    ("a build's users who came over years", _spread(8, 90 * _DAYS), LinkSettings()),
    # six of sixteen holders in one week (a tool's adoption wave)
    (
        "a minority of the holders",
        _spread(6, 20 * _HOURS) | _spread(10, 60 * _DAYS, "u", 30 * _DAYS),
        LinkSettings(),
    ),
    # eight engineers opening accounts in one afternoon (or a hackathon's desk): the sitting explains it
    ("one sitting", _spread(8, timedelta(minutes=35)), LinkSettings()),
    ("fewer than five", _spread(4, 13 * _HOURS), LinkSettings()),
]


@pytest.mark.parametrize(("why", "created", "cfg"), NO_COHORT, ids=[c[0] for c in NO_COHORT])
def test_no_cohort(why: str, created: dict[str, Any], cfg: LinkSettings) -> None:
    keys, accounts = _world(created)
    assert build_clusters(keys, accounts, cfg).members.height == 0, why


def test_the_sitting_guard_is_what_holds_one_sitting_apart() -> None:
    """The same sitting with a shorter sitting span is a cohort: the guard, not the data, held it."""
    keys, accounts = _world(_spread(8, timedelta(minutes=35)))
    cl = build_clusters(keys, accounts, LinkSettings(signup_sitting=timedelta(minutes=30)))
    assert cl.members.height == 8


def test_the_cohort_is_coordination_and_bulk_provisioning() -> None:
    frame = _frame("cluster", **(FARM | {"accounts": 8, "signup_cohort_accounts": 8, "shares_client": True}))
    row = add_axes(frame, "cluster", EvidenceSettings()).row(0, named=True)
    base = add_axes(
        _frame("cluster", **(FARM | {"accounts": 8, "shares_client": True})), "cluster", EvidenceSettings()
    )
    assert row["coordination_signals"] == base.row(0, named=True)["coordination_signals"] + 1
    assert row["bulk_provisioned"]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return build_engine(ROOT / "rules")


#: Fragments of a logprob farm made one (round 9): fresh accounts, each its own card, org and address,
#: sign-ups spread over four days, only a private client build in common; its ordinary requests dilute
#: the logprob share under the bar, not the harvest beyond a typical account's mix.
FRAGMENTS: dict[str, Any] = FARM | {
    "accounts": 20,
    "active_accounts_24h": 20,
    "payers": 20,
    "orgs": 20,
    "shares_sysprompt": False,
    "shares_template": False,
    "shares_signup": False,
    "shares_client": True,
    "signup_burst_share": 0.05,
    "rare_artefact_families": 1,
    "client_key_inside_share": 1.0,
    "signup_cohort_accounts": 20,
    "link_families": 1,
}


def test_fragments_harvesting_are_accused(engine: Engine) -> None:
    sev, reasons = _verdict(engine, "cluster", **(FRAGMENTS | {"logprob_share_24h": 0.7}))
    assert sev in ("medium", "high")
    assert "sign-up cohort" in reasons["evidence:coordination"]
    diluted = {
        "logprob_share_24h": 0.15,
        "harvest_excess_share_24h": 0.15,
        "harvest_excess_requests_24h": 60.0,
    }
    sev, reasons = _verdict(engine, "cluster", **(FRAGMENTS | diluted))
    assert sev == "medium" and "cluster_diluted_harvest" in reasons
    # without the cohort: one rare artefact and nothing else, the diluted harvest is not accused
    sev, _ = _verdict(engine, "cluster", **(FRAGMENTS | diluted | {"signup_cohort_accounts": 0}))
    assert sev in ("none", "low")


def test_a_startups_engineers_on_their_in_house_build_are_not_accused(engine: Engine) -> None:
    """The same cohort with everyday traffic (no extraction): coordination alone is not enough with one
    artefact, whether each pays on their own or all under the company's org and card."""
    team = FRAGMENTS | {"accounts": 8, "active_accounts_24h": 8, "payers": 8, "orgs": 8}
    team |= {"signup_cohort_accounts": 8, "new_account_share": 1.0}
    sev, _ = _verdict(engine, "cluster", **team)
    assert sev in ("none", "low")
    one_card = team | {"payers": 1, "orgs": 1}
    sev, _ = _verdict(engine, "cluster", **one_card)
    assert sev in ("none", "low")
