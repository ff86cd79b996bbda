"""A cluster's text samples as the cluster axis reads them (issue 17, rounds 10-12).

Its shared exercise sheet (``window.sheets``: reasoning texts held by a share of its members) and its
agents' shared session openers (``window.openers``). The engine's cluster verdicts and the team-seat
test (``detect/seat.py``) read a group the same way, so both join them here.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from detector.evidence_settings import EvidenceSettings
from detector.window.openers import OPENER_FEATURES, cluster_openers, with_openers
from detector.window.sheets import CLUSTER_SHEET_FEATURES, cluster_sheets, with_sheets
from detector.window.state import WindowState

#: The features the samples add to a cluster's row (kept out of the models: ``detect/models/spec.py``).
SAMPLE_FEATURES: dict[str, pl.DataType] = {**CLUSTER_SHEET_FEATURES, **OPENER_FEATURES}


def with_cluster_samples(
    feats: pl.DataFrame,
    state: WindowState,
    members: pl.DataFrame,
    now: datetime,
    long: timedelta,
    s: EvidenceSettings,
) -> pl.DataFrame:
    """``feats`` (one row per cluster_id) with ``OPENER_FEATURES`` and ``SHEET_FEATURES`` of the
    clusters in ``members`` (account_id, cluster_id) over [now - long, now)."""
    texts = state.sheet_rows(now - long, now)
    sheets = cluster_sheets(
        texts, members, now, long, s.sheet_min_holders, s.sheet_member_share, s.yield_session_member_share
    )
    opened = cluster_openers(state.opener_rows(now - long, now), members, s)
    return with_sheets(with_openers(feats, opened, ["cluster_id"]), sheets, ["cluster_id"])
