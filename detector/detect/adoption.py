"""A popular tool's adoption: independent established customers whose shared artefacts are the tool's.

A coding agent's developers share its client build, its system prompt and its templates, and some of
them opened their accounts in its adoption waves (its launch, a regional launch event), where three in
one half hour happen by chance. In the first hours of a replay, or of a daemon started cold, the
cluster holds only the few active then (one time zone's working day), so such a coincidental trio is a
tenth of it: a "batch", which made 30 verified, aged developers of 30 orgs and 30 cards look
provisioned in bulk and put them at high (held-out draw 1158, issue 17, round 11). The population test
(``window.population``) cannot tell: every holder of the build seen so far is in the cluster.

What an analyst reads instead is who the members are: nearly all verified customers with tenure, each
its own org, paying with its own card. Such a cluster's sign-up coincidences are its tool's adoption,
not an operator's provisioning, as long as its traffic is what an agentic tool does (tool-heavy
transcripts, a thinking budget, a move to a new model). Extraction beyond a tool (reasoning elicited or
coerced, rubric grading, logprobs, a harvest in excess of the typical mix) keeps the batch a batch.
Fresh, unverified or card-sharing clusters are untouched: the farm rules' other gates still hold.
"""

from __future__ import annotations

import polars as pl

from detector.evidence_settings import EvidenceSettings

#: Extraction signals (``evidence.extraction_checks`` names) that an agentic tool's own use gives: its
#: transcripts, the reasoning model's thinking budget, and its users moving to a new model together.
TOOL_OWN_SIGNALS = ("agentic transcripts", "reasoning via parameters", "new-model pivot")
#: The one a cluster must carry to be read as the agent's adoption: its users run its sessions.
TOOL_SIGNAL = TOOL_OWN_SIGNALS[0]


def independent_established(s: EvidenceSettings) -> pl.Expr:
    """Nearly all members (``public_tool_member_share``) verified and not new, under their own orgs and
    paying with their own cards: independent established customers, not one operator's accounts."""
    c = pl.col
    share = s.public_tool_member_share
    n = c("accounts").fill_null(0).cast(pl.Float64)
    return (
        (c("verified_share").fill_null(0.0) >= share)
        & (c("new_account_share").fill_null(1.0) <= 1.0 - share)
        & (c("orgs").fill_null(0).cast(pl.Float64) >= share * n)
        & (c("payers").fill_null(0).cast(pl.Float64) >= share * n)
    ).fill_null(False)


def adoption_explains(s: EvidenceSettings, extraction: dict[str, pl.Expr], excess: pl.Expr) -> pl.Expr:
    """Independent established customers whose traffic is a tool's own use: the agent's transcripts
    (``TOOL_SIGNAL``), no extraction signal (``extraction``: ``evidence.extraction_checks``) outside
    ``TOOL_OWN_SIGNALS`` and no harvest in excess of the typical mix over the kinds no tool needs
    (``excess``). A cluster with no transcripts is no agent's adoption, whatever it lacks besides (issue
    17, round 12: verified, aged farms of plain chat with nothing else were read as one)."""
    beyond = [e.fill_null(False) for k, e in extraction.items() if k not in TOOL_OWN_SIGNALS]
    tool = extraction[TOOL_SIGNAL].fill_null(False)
    return independent_established(s) & tool & ~pl.any_horizontal([*beyond, excess.fill_null(False)])
