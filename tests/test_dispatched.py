"""Issue 17, round 22: with ``evidence.farm_waves`` on (off by default), a group outside a router tenant
in scheduler waves is a farm's, however old and verified its accounts (``provenance.dispatched``, read
by the freshness gate ``farm_accounts``).

An attacker who buys aged, verified accounts one by one leaves no sign-up burst, batch or cohort and no
card across orgs: the freshness gate read such a group as a tool's users whatever they shared. What one
dispatcher cannot hide is that it drives the accounts together (scheduler waves); a team on its tool
through personal accounts (``lab/simulate/personal_team``) sends when each person works. Off by
default: a product dispatching its users' jobs on their own keys is the honest look-alike still missing
(``test_evidence.test_many_verified_orgs_created_together_earn_no_cluster_trust`` spares such users).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_evidence import FARM, _frame, _verdict

from detector.app import build_engine
from detector.detect.evidence import add_axes
from detector.detect.provenance import farm_accounts
from detector.engine import Engine
from detector.evidence_settings import EvidenceSettings
from detector.settings import EngineSettings

ROOT = Path(__file__).resolve().parents[1]

#: A bought aged farm outside any router as round 22's diagnosis found it (forced-bought draw 956's
#: cot_hydra): 24 accounts of 24 orgs and cards, verified, opened over years, sharing a private system
#: prompt, a template and a client build, in scheduler waves, its reasoning diluted under every share.
BOUGHT: dict[str, Any] = FARM | {
    "accounts": 24,
    "active_accounts_24h": 24,
    "payers": 24,
    "orgs": 24,
    "new_account_share": 0.17,
    "verified_share": 1.0,
    "median_account_age_days": 380.0,
    "requests_24h": 2189,
    "synchrony_24h": 0.8,
    "shares_client": True,
    "shares_signup": False,
    "signup_burst_share": 0.0,
    "rare_artefact_families": 3,
}
#: The same group sending when each person works (a team on its tool through personal accounts).
TEAM = BOUGHT | {"synchrony_24h": 0.1, "active_hours_24h": 10}


ON = EvidenceSettings(farm_waves=True)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return build_engine(ROOT / "rules", settings=EngineSettings(evidence=ON))


def test_a_bought_group_in_waves_is_a_farm_and_a_team_is_not(engine: Engine) -> None:
    """With the setting on. Fails on `main`: the gate read 24 verified aged accounts of 24 orgs as a
    tool's users, waves or not, so no farm rule fired and the group stayed a low lead."""
    s = engine.settings.evidence
    farm = add_axes(_frame_of(BOUGHT), "cluster", s)
    team = add_axes(_frame_of(TEAM), "cluster", s)
    assert farm["farm_accounts"].to_list() == [True]
    assert farm["bulk_provisioned"].to_list() == [False]  # nothing else made it a farm's
    assert team["farm_accounts"].to_list() == [False]
    sev, reasons = _verdict(engine, "cluster", **BOUGHT)
    assert sev == "medium" and "cluster_coordinated_farm" in reasons
    assert "scheduler waves" in reasons["evidence:coordination"]
    assert _verdict(engine, "cluster", **TEAM)[0] in ("none", "low")


def test_off_by_default() -> None:
    assert add_axes(_frame_of(BOUGHT), "cluster", EvidenceSettings())["farm_accounts"].to_list() == [False]


def test_inside_a_router_tenant_the_waves_do_not_open_the_gate(engine: Engine) -> None:
    """A tenant's group of seats opened over months (``tenant_customers``) stays its customers' on the
    freshness gate in waves too: ``tenant_explains`` reads its waves already."""
    s = engine.settings.evidence
    seats = BOUGHT | {"tenant_share": 1.0, "verified_share": 0.0, "signup_iqr_hours": 24.0 * 300}
    assert add_axes(_frame_of(seats), "cluster", s)["farm_accounts"].to_list() == [False]
    assert add_axes(_frame_of(seats | {"tenant_share": 0.0}), "cluster", s)["farm_accounts"].to_list() == [
        True
    ]


def _frame_of(features: dict[str, Any]) -> pl.DataFrame:
    return _frame("cluster", **features)


@given(
    synchrony=st.one_of(st.none(), st.floats(0.0, 1.0)),
    verified=st.floats(0.0, 1.0),
    new=st.floats(0.0, 1.0),
    bulk=st.booleans(),
)
def test_waves_only_ever_open_the_gate(
    synchrony: float | None, verified: float, new: float, bulk: bool
) -> None:
    """The gate with waves is the gate without them, or'd with the waves: waves never shut it, and
    under the synchrony bar (or unknown) nothing moves."""
    s, off = ON, EvidenceSettings()
    row = pl.DataFrame(
        {
            "synchrony_24h": [synchrony],
            "verified_share": [verified],
            "new_account_share": [new],
            "bulk_provisioned": [bulk],
            "tenant_share": [0.0],
            "signup_iqr_hours": [None],
        },
        schema_overrides={"synchrony_24h": pl.Float64, "signup_iqr_hours": pl.Float64},
    )
    with_waves = row.select(farm_accounts(s))[0, 0]
    without = row.select(farm_accounts(off))[0, 0]
    waves = synchrony is not None and synchrony >= s.scheduler_synchrony
    assert with_waves == (without or waves)  # outside a tenant (``tenant_share`` 0)
