"""The farm rules' two gates on a cluster, each written once here and stored by ``evidence.add_axes``
as a column the rules and a lone model vote (``fusion.fuse``) read: who could explain the group
(``no_customer_explains``) and whether its accounts could be a farm's (``farm_accounts``). Both read
other ``add_axes`` columns; an unknown is not an explanation, nor evidence of a farm."""

from __future__ import annotations

import polars as pl

from detector.detect.coordination import scheduler_waves
from detector.evidence_settings import EvidenceSettings


def no_customer_explains(s: EvidenceSettings) -> pl.Expr:
    """The farm rules' provenance gate (``add_axes`` stores it as the ``no_customer_explains`` column):
    no paying customer and no room explains the group, nor a router tenant's established customer
    (``tenant_explains`` holds and fewer than ``team_new_seat_share`` of the seats were opened within
    the month)."""
    c = pl.col
    customer_or_room = c("one_customer_explains").fill_null(False) | c("colocated").fill_null(False)
    established = c("new_account_share").fill_null(0.0) < s.team_new_seat_share
    tenant = c("tenant_explains").fill_null(False) & established
    return ~customer_or_room & ~tenant


def _share(name: str) -> pl.Expr:
    """A share as a rule reads it: NaN is unknown (``rules.compiler``)."""
    return pl.col(name).cast(pl.Float64).fill_nan(None)


def farm_accounts(s: EvidenceSettings) -> pl.Expr:
    """The farm rules' freshness gate (``add_axes`` stores it as the ``farm_accounts`` column): the
    accounts could be a farm's, nearly all new (``farm_new_member_share``), mostly unverified
    (``farm_verified_member_share``; not read for a router tenant's seats opened over months,
    ``tenant_customers``), bulk-provisioned (a batch, a cohort, cards across orgs) or driven by one
    dispatcher (``dispatched``, off by default: setting ``evidence.farm_waves``). Established verified
    accounts opened over years are a tool's users, whatever they share. Each part unknown is false, as
    the rules' clause read it (a null never fired)."""
    new = (_share("new_account_share") >= s.farm_new_member_share).fill_null(False)
    unverified = (_share("verified_share") < s.farm_verified_member_share).fill_null(False)
    bulk = pl.col("bulk_provisioned").fill_null(False)
    return new | (unverified & ~tenant_customers(s)) | bulk | dispatched(s)


def dispatched(s: EvidenceSettings) -> pl.Expr:
    """A group outside any router tenant in scheduler waves (``coordination.scheduler_waves``) is a
    farm's whatever its accounts' age and verification, with setting ``evidence.farm_waves`` on (off by
    default: a product dispatching its users' jobs on their own keys is its look-alike, not yet in the
    lab): one operator's dispatcher load-balancing over accounts it bought one by one, aged and
    verified, over months (issue 17, round 22: the bought seats left no sign-up burst or batch to read,
    only the waves). A team on its tool through personal accounts (``lab/simulate/personal_team``)
    sends when each person works. Not read inside a tenant: there ``tenant_explains`` already reads
    waves as no customer's team, and a popular agent's users came within 0.06 of the waves' bar on
    round 22's draws, so ``tenant_customers`` stays their second guard."""
    return scheduler_waves(s) & ~in_tenant(s) & pl.lit(s.farm_waves)


def in_tenant(s: EvidenceSettings) -> pl.Expr:
    """A group most of whose members are a reseller tenant's sub-accounts (``evidence.tenant_explains``'
    first test; the team-seat test reads it before building any feature, ``detect/seat.py``)."""
    return pl.col("tenant_share").fill_null(0.0) >= s.tenant_group_share


def tenant_customers(s: EvidenceSettings) -> pl.Expr:
    """A router tenant's group whose seats were opened over months: the middle half of its members'
    sign-ups (``signup_iqr_hours``) spans more than ``trust_tenure_days``, and most of them have that
    tenure (``new_account_share`` under ``farm_verified_member_share``). A sub-account carries the
    tenant's verification, not its own, so "mostly unverified" says nothing of such a group; seats
    arriving over the router's years are its customers (a popular agent's users on its public prompt,
    issue 17, round 20), while a farm opens its seats together, in days, however long ago (round 19:
    one burst, or eight over four days). Read by ``farm_accounts`` in place of the verification; new
    seats and bulk provisioning still make a farm's group."""
    spread = (_share("signup_iqr_hours") >= s.trust_tenure_days * 24.0).fill_null(False)
    # most of them with tenure: "mostly" is the verification bar's, read on the seats' age (round 20's
    # review: a few old seats beside many new ones put the quartiles months apart all the same)
    aged = (_share("new_account_share") < s.farm_verified_member_share).fill_null(False)
    return in_tenant(s) & spread & aged
