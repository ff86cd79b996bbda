"""The cluster catalogue's evidence-axis features: ``detect/evidence.add_axes`` appends them to a
cluster's row before rules run (the window computes none of them; rules and models read them by name
from the catalogue, ``window.features.CLUSTER_FEATURES``)."""

from __future__ import annotations

import polars as pl

CLUSTER_AXIS_FEATURES: dict[str, pl.DataType] = {
    "extraction_signals": pl.Int64(),
    "coordination_signals": pl.Int64(),
    "one_customer_explains": pl.Boolean(),
    "colocated": pl.Boolean(),
    "tenant_explains": pl.Boolean(),
    "bulk_provisioned": pl.Boolean(),
    "stands_out_from_client": pl.Boolean(),
    "trusted_customer": pl.Boolean(),
    "volume_outside_tier": pl.Boolean(),
    "low_yield": pl.Boolean(),
    #: the farm rules' provenance gate: not ``one_customer_explains``, not ``colocated``, and not
    #: ``tenant_explains`` on an established group (``provenance.no_customer_explains``); a lone model
    #: vote on a cluster reads it too (``detect/fusion.py``)
    "no_customer_explains": pl.Boolean(),
    #: the farm rules' freshness gate: nearly all new, mostly unverified or bulk-provisioned
    #: (``provenance.farm_accounts``); a lone model vote on a cluster reads it too
    "farm_accounts": pl.Boolean(),
}
