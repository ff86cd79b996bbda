"""The coordination axis's checks (``evidence.add_axes`` reads them): how many independent accounts share
rare artefacts, opened together, pay across orgs or send in waves; whether one room explains them; and
whether a cluster's traffic stands out from its client build's population.
"""

from __future__ import annotations

import polars as pl

from detector.evidence_settings import EvidenceSettings
from detector.window.features import ARTEFACT_FAMILIES


def coordination_checks(s: EvidenceSettings) -> dict[str, pl.Expr]:
    """Coordination signal name -> whether the cluster shows it (each rare artefact counts once)."""
    c = pl.col
    out = {f"shared {f}": c(f"shares_{f}").fill_null(False) for f in ARTEFACT_FAMILIES}
    out["sign-up burst"] = signup_burst(s)
    out["sign-up cohort"] = signup_cohort(s)
    out["cards across orgs"] = cards_across_orgs(s)
    out["scheduler waves"] = scheduler_waves(s)
    return out


def scheduler_waves(s: EvidenceSettings) -> pl.Expr:
    """The members send in the same 15-minute buckets again and again (``synchrony_24h``): one
    dispatcher load-balancing over the accounts, not people each working when they work."""
    return pl.col("synchrony_24h").fill_null(0.0) >= s.scheduler_synchrony


def colocated(s: EvidenceSettings) -> pl.Expr:
    """One room: most members behind one venue prefix, and no second shared address (a pool, an
    egress). A room explains what a tutorial hands out (its system prompt, its template) and a sign-up
    desk, not a private client build (a rare TLS fingerprint + SDK string: an operator's own software).
    Reads ``window.features.venues`` and ``client_inside`` (a cluster's, or a template's holders')."""
    c = pl.col
    return (
        (c("top_network_key_share").fill_null(0.0) >= s.colocated_member_share)
        & (c("second_network_key_share").fill_null(1.0) <= s.colocated_second_share)
        & (c("client_key_inside_share").fill_null(0.0) < s.private_client_inside_share)
    )


def signup_burst(s: EvidenceSettings) -> pl.Expr:
    """A sign-up burst: a real share of the members opened within one sign-up window, not two pairs."""
    c = pl.col
    share = c("signup_burst_share").fill_null(0.0)
    return c("shares_signup").fill_null(False) & (share >= s.signup_burst_share)


def signup_batch(s: EvidenceSettings) -> pl.Expr:
    """A batch: a sign-up burst of several accounts, not a pair. A pair in one half
    hour is a coordination hint, never bulk provisioning of established customers: a popular tool's
    users give pairs, and 18 of them in one night hour made a pair a ninth of a cluster (round 6)."""
    c = pl.col
    together = (c("signup_burst_share").fill_null(0.0) * c("accounts").fill_null(0).cast(pl.Float64)).round(0)
    return signup_burst(s) & (together >= s.signup_burst_min_accounts)


def signup_cohort(s: EvidenceSettings) -> pl.Expr:
    """A sign-up cohort: most holders of a client build, a batch's worth and most of the cluster's
    members, opened their accounts within a week (``window.cohorts``). An operator opens its farm over
    days, so its accounts rarely share a half hour (a burst); a build's honest users arrive over years.
    A startup's engineers opening accounts for their in-house build are a cohort too: one card or one
    org explains them, and without extraction no rule accuses a cohort (issue 17, round 9)."""
    n = pl.col("signup_cohort_accounts").fill_null(0)
    size = pl.col("accounts").fill_null(0).cast(pl.Float64)
    return (n >= s.signup_burst_min_accounts) & (n >= s.signup_cohort_member_share * size)


def cards_across_orgs(s: EvidenceSettings) -> pl.Expr:
    """Payment instruments shared across different orgs: "payment signals that linked seemingly
    independent accounts" (PRODUCT.md), when most members pay with them (a card per ten accounts puts
    all of a farm's on one). A customer's own team pays under its one org; a startup's engineers on the
    company card, each on a personal account, are a few of a popular tool's users, not its provisioning
    (issue 17, round 8: one such card put a coding agent's whole user base at high)."""
    c = pl.col
    most = c("cross_org_card_member_share").fill_null(0.0) >= s.cross_org_card_member_share
    return (c("shares_payment").fill_null(False) & (c("payers") < c("orgs")) & most).fill_null(False)


def stands_out_from_client(s: EvidenceSettings) -> pl.Expr:
    """The cluster's traffic is not its client build's: far more reasoning harvest than the build's
    other holders send (``window.population``). A popular tool's users are its population; a farm
    sending through a build others use too (a router's, an SDK) is a slice that harvests."""
    c = pl.col
    return (c("client_outside_holders").fill_null(0) >= s.client_population_min_accounts) & (
        c("extraction_lift_over_client").fill_null(0.0) >= s.client_extraction_lift
    )
