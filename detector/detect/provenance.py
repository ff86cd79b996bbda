"""The farm rules' two gates on a cluster, each written once here and stored by ``evidence.add_axes``
as a column the rules and a lone model vote (``fusion.fuse``) read: who could explain the group
(``no_customer_explains``) and whether its accounts could be a farm's (``farm_accounts``). Both read
other ``add_axes`` columns; an unknown is not an explanation, nor evidence of a farm."""

from __future__ import annotations

import polars as pl

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
    (``farm_verified_member_share``) or bulk-provisioned (a batch, a cohort, cards across orgs).
    Established verified accounts opened over years are a tool's users, whatever they share. Each
    part unknown is false, as the rules' clause read it (a null never fired)."""
    new = (_share("new_account_share") >= s.farm_new_member_share).fill_null(False)
    unverified = (_share("verified_share") < s.farm_verified_member_share).fill_null(False)
    return new | unverified | pl.col("bulk_provisioned").fill_null(False)
