"""A shared opener sheet on the cluster axis (issue 17, round 12): predicates over the opener features.

``window.openers`` gives each cluster the share of its sampled tool-heavy session openers that its
agents share, its tool-heavy turns per opener and per agent, and the sends per shared opener. An agent
course's participants open short agent loops with the sheet's few tasks, each about once; a farm opens
each session with another task of its bank, in loops as long as it likes. ``evidence.extraction_checks``
does not count "agentic transcripts" on a cluster that ``opener_explains``; every other extraction
signal still counts, and the coordination rules still see the cluster's traffic as it is.
``opener_yield`` (round 16): a cluster the coordination axis alone accuses, whose traffic is mostly agent
sessions read as a shared sheet's tasks, is the agent course's form of ``sheets.low_yield``.
"""

from __future__ import annotations

import polars as pl

from detector.detect.sheets import not_counted_note, percent
from detector.evidence_settings import EvidenceSettings

#: The extraction check (``evidence.extraction_checks``) a shared opener sheet explains.
OPENER_EXPLAINS = "agentic transcripts"


def opener_explains(s: EvidenceSettings) -> pl.Expr:
    """Most of the cluster's sampled openers are shared by a real share of its agents, each opened about
    once per agent, in short loops, within a sheet's volume per agent: a course's agent exercises, not
    a harvest of trajectories (a farm doing the same harvests a course's few); or its openers cannot be
    read yet (``opener_unread``)."""
    shared = pl.col("opener_shared_share_24h").fill_null(0.0) >= s.sheet_share
    return ((shared & _once(s) & _short_loops(s)) | opener_unread(s)).fill_null(False)


def _once(s: EvidenceSettings) -> pl.Expr:
    """Each shared opener opened about once per agent (a course's exercise; not many trajectories of it)."""
    return pl.col("opener_sends_per_text_24h").fill_null(0.0) < s.sheet_max_sends_per_text


def _short_loops(s: EvidenceSettings) -> pl.Expr:
    """Short loops (tool-heavy turns per opener) within a sheet's volume per agent, counted in sessions:
    an agent exercise is one session however many turns its loop takes (the loop has its own bar), so
    the sheet's bar on exercises a seat (``sheet_max_requests_per_account``) reads the sessions an agent
    opened, not its turns (round 13: draw 771's course, 14 sessions of 4.5 turns an agent, 64 turns,
    went high on turns)."""
    c = pl.col
    turns = c("tools_heavy_turns_per_open_24h").fill_null(0.0)
    # turns an agent / turns an opener = the sessions (openers with a text) an agent opened
    sessions = c("tools_heavy_per_agent_24h").fill_null(0.0) / turns.clip(lower_bound=1.0)
    return (turns <= s.opener_max_turns) & (sessions <= s.sheet_max_requests_per_account)


def opener_yield(s: EvidenceSettings) -> pl.Expr:
    """A cluster with no extraction signal whose traffic is mostly agent sessions (at least
    ``yield_shared_share`` of its requests tool-heavy) and whose sampled openers read as a shared sheet's
    tasks (``sheet_share`` of them shared, each opened about once an agent, short loops, a sheet's
    sessions an agent): one actor harvesting a course's few trajectories, the agent course's form of
    ``sheets.low_yield`` (round 16; that one reads the samples that leave tool-heavy turns out, so an
    agent course's yield was never read). Read as it is: not while merely unread (``opener_unread``)."""
    c = pl.col
    none = c("extraction_signals").fill_null(0) == 0
    agents = c("tools_heavy_share_24h").fill_null(0.0) >= s.yield_shared_share
    shared = c("opener_shared_share_24h").fill_null(0.0) >= s.sheet_share
    return (none & agents & shared & _once(s) & _short_loops(s)).fill_null(False)


def opener_unread(s: EvidenceSettings) -> pl.Expr:
    """A cluster's openers cannot be read yet (round 12, as ``sheets.unread``): fewer than
    ``opener_read_min_openers`` sampled an agent, some of them a shared task already, in short loops
    within a sheet's volume (a course's first hour: its agents at different tasks of the sheet, so the
    share is not yet most). Nothing sampled (no turns known): nothing to wait for; no shared opener at
    all (a bank's own tasks), a long loop, a harvest's volume or a shared task re-opened (many
    trajectories of one task, ``_once``): read as it is, at once."""
    c = pl.col
    per = c("openers_per_agent_24h").fill_null(0.0)
    begun = c("opener_shared_share_24h").fill_null(0.0) > 0
    return (per > 0) & (per < s.opener_read_min_openers) & begun & _once(s) & _short_loops(s)


def opener_note(s: EvidenceSettings, target: str, agentic: pl.Expr) -> pl.Expr:
    """On a cluster whose agentic transcripts (``agentic``: the check holds, the openers aside) a shared
    opener sheet explains, or whose openers cannot be read yet: that it does, with the figure (counts
    only)."""
    if target != "cluster":
        return pl.lit("")
    rest = pl.lit("% of its agent sessions open with a shared sheet's tasks")
    note = pl.lit("; agentic transcripts not counted: ") + percent("opener_shared_share_24h") + rest
    per = pl.col("openers_per_agent_24h").fill_null(0.0).round(1).cast(pl.String)
    early = pl.lit("; agentic transcripts not counted yet: ") + per
    early += pl.lit(" sampled session openers an agent, too few to tell a course's tasks from a bank's")
    return not_counted_note(agentic, opener_unread(s), opener_explains(s), early, note)


def yield_note(s: EvidenceSettings) -> pl.Expr:
    """Why a coordinated cluster stays low (``sheets.low_yield``, ``opener_yield``), with the shares
    (counts only): ``evidence.axis_reasons`` adds it to the coordination reason."""
    note = pl.lit("; coordinated, but its traffic is a shared sheet (") + percent("shared_text_share_24h")
    session = pl.lit("% of its requests, ") + percent("shared_text_peak_share_24h")
    session += pl.lit(
        f"% in its busiest hour with at least {s.yield_session_member_share:.0%} of its members sending, "
    )
    no_session = pl.col("shared_text_peak_share_24h").fill_null(0.0) <= 0
    note += pl.when(no_session).then(pl.lit("% of its requests, ")).otherwise(session) + percent(
        "sheet_share_24h"
    )
    note += pl.lit("% of its reasoning requests, are texts its members share): low yield")
    agents = pl.lit("; coordinated, but its agent sessions open with a shared sheet's tasks (")
    agents += percent("opener_shared_share_24h") + pl.lit("% of its sampled openers, each about once")
    agents += pl.lit(" an agent, in short loops): low yield")
    low = pl.col("low_yield").fill_null(False)
    return pl.when(low & opener_yield(s)).then(agents).when(low).then(note).otherwise(pl.lit(""))
