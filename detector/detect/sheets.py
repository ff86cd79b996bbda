"""A shared exercise sheet on the cluster axis (issue 17, round 10): predicates over the sheet features.

``window.sheets`` gives each subject ``sheet_share_24h`` (the share of its reasoning requests whose
texts a share of its group sends: round 12) and ``reasoning_requests_24h``. A course's
participants send the same few exercises; a farm sweeping a problem bank sends texts nobody else does.
``evidence.extraction_checks`` does not count "reasoning elicited" or "reasoning via parameters" on a
cluster that ``sheet_explains``; coercion, logprobs, rubric grading, agentic transcripts and a pivot
still count. The account axis caps a point whose extraction is all a sheet (``room.spare_sheets``).
``low_yield`` (round 12): a cluster accused by coordination alone whose traffic is a shared sheet
(``shared_text_share_24h``: any text, not only reasoning) is one actor that harvests nothing new: a
course, not a farm sweeping a problem bank (``evidence.require_both_axes`` keeps it a low lead).
"""

from __future__ import annotations

import polars as pl

from detector.evidence_settings import EvidenceSettings

#: The extraction checks (``evidence.extraction_checks``) a shared sheet explains: reasoning asked for.
SHEET_EXPLAINS = frozenset({"reasoning elicited", "reasoning via parameters"})


def read_sheet(s: EvidenceSettings, per_account: str = "active_accounts_24h") -> tuple[pl.Expr, pl.Expr]:
    """Whether the subject's reasoning requests are mostly texts many accounts send (``window.sheets``), each
    sent about once per account, within a sheet's volume per account: a course's exercise sheet, not a
    sweep through a problem bank nor many samples of a few problems (issue 17, round 10); and whether
    a cluster's cannot be read yet (``unread``)."""
    c = pl.col
    n = c(per_account).fill_null(1).cast(pl.Float64).clip(lower_bound=1.0) if per_account else pl.lit(1.0)
    volume = c("reasoning_requests_24h").fill_null(0).cast(pl.Float64) / n
    share = c("sheet_share_24h").fill_null(0.0) >= s.sheet_share
    # each shared text sent about once: a course's answers, not best-of-n's samples of a few problems
    # (read from best-of-n's smallest volume on: below it a repeat is a retry)
    few = volume * c("sheet_share_24h").fill_null(0.0) < s.sheet_repeat_min_requests
    once = (c("sheet_sends_per_text_24h").fill_null(0.0) < s.sheet_max_sends_per_text) | few
    explained = share & once & (volume <= s.sheet_max_requests_per_account)
    return explained, unread(s, per_account)


def sheet_explains(s: EvidenceSettings, per_account: str = "active_accounts_24h") -> pl.Expr:
    """The subject's reasoning is a sheet's (``read_sheet``), or a cluster's cannot be read yet."""
    explained, early = read_sheet(s, per_account)
    return (explained | early).fill_null(False)


def unread(s: EvidenceSettings, per_account: str = "active_accounts_24h") -> pl.Expr:
    """A cluster's sheet cannot be read yet (round 12): fewer than ``sheet_read_min_requests`` reasoning
    requests a member, one or two exercises each, whose samples cannot tell a sheet from a sweep (a
    course's first hour). Never on the account axis (``per_account`` empty): it reads its own volume;
    nor where no reasoning text was sampled (a gateway that sends no prompt text): nothing to wait for."""
    if not per_account:
        return pl.lit(False)
    n = pl.col(per_account).fill_null(1).cast(pl.Float64).clip(lower_bound=1.0)
    sampled = pl.col("reasoning_requests_24h").fill_null(0).cast(pl.Float64)
    return (sampled > 0) & (sampled / n < s.sheet_read_min_requests)


def sheet_note(s: EvidenceSettings, target: str, reasoning: pl.Expr) -> pl.Expr:
    """On a cluster whose reasoning signal (``reasoning``: a check of ``SHEET_EXPLAINS`` holds, the
    texts aside) a shared sheet explains: that it does, with the share (counts only)."""
    if target != "cluster":
        return pl.lit("")
    note = (
        pl.lit("; reasoning not counted: ")
        + percent("sheet_share_24h")
        + pl.lit("% of its reasoning requests are a shared sheet")
    )
    per = pl.col("reasoning_requests_24h").fill_null(0) / pl.col("active_accounts_24h").fill_null(1).clip(1)
    early = pl.lit("; reasoning not counted yet: ") + per.round(1).cast(pl.String)
    early += pl.lit(" reasoning requests a member, too few to tell an exercise sheet from a sweep")
    return not_counted_note(reasoning, unread(s), sheet_explains(s), early, note)


def percent(column: str) -> pl.Expr:
    """A share column as whole per cent, as text (a reason's figure; null: 0)."""
    return (pl.col(column).fill_null(0.0) * 100).round(0).cast(pl.Int64).cast(pl.String)


def not_counted_note(
    signal: pl.Expr, unread: pl.Expr, explained: pl.Expr, early_note: pl.Expr, note: pl.Expr
) -> pl.Expr:
    """A sample's note on a signal (``signal`` holds) it does not count: ``early_note`` while the sample
    cannot be read yet (``unread``), ``note`` where it explains the signal (``explained``), else nothing
    (the sheet's and the openers' notes)."""
    return pl.when(unread & signal).then(early_note).when(explained & signal).then(note).otherwise(pl.lit(""))


def low_yield(s: EvidenceSettings) -> pl.Expr:
    """A cluster with no extraction signal whose traffic is a shared sheet, within a sheet's volume a
    member: most of its sampled requests are texts a share of its members hold, or its reasoning is a
    sheet's (``read_sheet``, read: not merely unread). What a coordinated farm buys is distinct texts'
    answers; a course's class sends the same few (round 12). The reasoning sheet counts alone because a
    course's own experiments after the session (distinct casual texts) dilute the pooled share by the
    evening; a sweep's reasoning is no sheet's, whatever else it sends. For the same reason (round 24)
    the pooled share counts in the hour the class was together (``shared_text_peak_share_24h``: at
    least ``yield_session_member_share`` of its members sending) as well as over the day.
    """
    c = pl.col
    volume = c("sampled_requests_per_account_24h").fill_null(0.0) <= s.sheet_max_requests_per_account
    # the day's pool, or its session's hour while the sheet is still a real part of the day (round 24:
    # the evening's own experiments dilute the pool; a token sheet is no session)
    day = c("shared_text_share_24h").fill_null(0.0)
    session = (c("shared_text_peak_share_24h").fill_null(0.0) >= s.yield_shared_share) & (
        day >= s.yield_session_day_share
    )
    shared = (day >= s.yield_shared_share) | session
    explained, _ = read_sheet(s)
    reasoning = (c("reasoning_requests_24h").fill_null(0) > 0) & explained
    return ((c("extraction_signals").fill_null(0) == 0) & (shared | reasoning) & volume).fill_null(False)
