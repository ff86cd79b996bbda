"""A shared opener sheet on the cluster axis (issue 17, round 12): predicates over the opener features.

``window.openers`` gives each cluster the share of its sampled tool-heavy session openers that its
agents share, its tool-heavy turns per opener and per agent, and the sends per shared opener. An agent
course's participants open short agent loops with the sheet's few tasks, each about once; a farm opens
each session with another task of its bank, in loops as long as it likes. ``evidence.extraction_checks``
does not count "agentic transcripts" on a cluster that ``opener_explains``; every other extraction
signal still counts, and the coordination rules still see the cluster's traffic as it is.
"""

from __future__ import annotations

import polars as pl

from detector.evidence_settings import EvidenceSettings

#: The extraction check (``evidence.extraction_checks``) a shared opener sheet explains.
OPENER_EXPLAINS = "agentic transcripts"


def opener_explains(s: EvidenceSettings) -> pl.Expr:
    """Most of the cluster's sampled openers are shared by a real share of its agents, each opened about
    once per agent, in short loops, within a sheet's volume per agent: a course's agent exercises, not
    a harvest of trajectories (a farm doing the same harvests a course's few)."""
    c = pl.col
    shared = c("opener_shared_share_24h").fill_null(0.0) >= s.sheet_share
    once = c("opener_sends_per_text_24h").fill_null(0.0) < s.sheet_max_sends_per_text
    short = c("tools_heavy_turns_per_open_24h").fill_null(0.0) <= s.opener_max_turns
    volume = c("tools_heavy_per_agent_24h").fill_null(0.0) <= s.sheet_max_requests_per_account
    return (shared & once & short & volume).fill_null(False)


def opener_note(s: EvidenceSettings, target: str, agentic: pl.Expr) -> pl.Expr:
    """On a cluster whose agentic transcripts (``agentic``: the check holds, the openers aside) a shared
    opener sheet explains: that it does, with the share (counts only)."""
    if target != "cluster":
        return pl.lit("")
    share = (pl.col("opener_shared_share_24h").fill_null(0.0) * 100).round(0).cast(pl.Int64).cast(pl.String)
    rest = pl.lit("% of its agent sessions open with a shared sheet's tasks")
    note = pl.lit("; agentic transcripts not counted: ") + share + rest
    return pl.when(opener_explains(s) & agentic).then(note).otherwise(pl.lit(""))
