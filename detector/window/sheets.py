"""Exercise sheets: which reasoning texts many accounts send (issue 17, round 10).

A farm harvesting reasoning sweeps a problem bank: many distinct problems, almost none repeated, since
the yield is what distillation buys. A course's participants send the same few exercises, each text
sent by most of them. The template-skeleton fingerprint cannot tell them apart (a farm's template is
one skeleton too), so enrichment gives every request the whole text's 64-bit hash (``text_fp``).

The state keeps narrow: per (account, bucket) only the **smallest** ``text_fp`` among the bucket's
reasoning requests (``EXTRACTION``), how many reasoning requests the bucket held, and how many of them
carried that smallest text (``sends``: a retry, or best-of-n's many samples of one problem). A minimum is
the same in any order and per bucket, so what a reader sees at tick T is what closing one tick at a
time would give (``tests/test_slicing.py``), and it expires with the buckets. It is a sample of the
account's distinct texts that repetition cannot steer: a sweep's sample is its bank's, a course's is
its sheet's. An account with no reasoning request holds no row; a busy one at most one a bucket.

A text is **held** by the accounts whose sample holds it in the window; a sheet's texts are held by at
least ``EvidenceSettings.sheet_min_accounts`` accounts and by a share of the group it is shared in
(round 12, ``sheet_member_share``): on the cluster axis of the cluster's members who send reasoning
(the population aside), on the account axis of the account's co-holders. A course's exercises are
each held by most of the class; a farm splitting best-of-k across k of its N seats holds each problem
by k of N. Features (never prompt text, only counts):
``sheet_share_24h``, the share of the subject's reasoning requests in buckets whose sample is a
sheet's text, ``reasoning_requests_24h``, those requests (a cluster: per active member), and
``sheet_sends_per_text_24h``: over the buckets whose sample is a sheet's text, the sampled text's sends
summed, per distinct (account, text). A course's participant sends an exercise once, a retry or two
at most; a farm that re-sends each of a few texts to sample many reasoning traces of it (best-of-n,
rejection sampling: a peer's labelled farm sent each of eight texts ~4 times a seat) holds a "sheet" by
the text test but sends it many times. A bucket counts only its sampled text's sends, so the figure is
a lower bound of an account's sends of that text (a text sent in a bucket whose sample is another is
not counted), the same in any order and slicing (a sum of per-bucket counts of a per-bucket minimum).

**A second sample, every text (round 12, "yield").** Beside it each (account, bucket) keeps the same
three figures over the requests that are neither reasoning nor tool-heavy (``plain``): an app course's
exercises, a farm's prompts whose content markers are off. A cluster's ``shared_text_share_24h`` pools
both samples: the share of its members' sampled requests (tool-heavy turns aside) in buckets whose
sample is a text held by a share of its members (the cluster's sheet bar). A coordination-only verdict
says "one actor"; what it harvests is its distinct texts: a course sends a sheet's few texts, each held
by most of the class; a farm sweeps a bank, nearly none shared (``detect/sheets.py: low_yield``).
A cluster's two shares and its bar are read within its one hash space (round 22,
``window/hashspace.py``; each row's ``SIMHASH``); the account axis's are not.

Limits: without a deployment key (``DETECTOR_TEXT_KEY``, round 13) the order is the public
``stable_hash64``: an operator who reads this could pick decoy texts with tiny hashes to fill its
samples (then sending a sheet's volume per seat to look like one, which
``sheet_max_requests_per_account`` bounds), and a checkpoint holder could confirm a guessed prompt by
hashing it. With a key ``text_fp`` is SipHash-2-4 of that hash under the secret: the decoy wins a
bucket only by its draw under a key the farm cannot know (1 in n texts on average over keys;
``tests/test_text_key.py``), and the samples hold no public hash. What stays public: template
fingerprints (allow-lists name them), equal to the text hash for a one-sentence prompt without digits.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from detector.schema import UTC_US, make_schema
from detector.window.hashspace import (
    COMPARABLE,
    SIMHASH,
    held_in_space,
    sampled_space,
    simhash_request,
    spaced,
)

#: The per-request kinds whose texts the sheet table samples: reasoning asked for, in the prompt or
#: through a thinking budget (what a sheet may explain; coercion is a kind of ``cot_elicit``). Never a
#: tool-heavy turn: an agent's follow-ups repeat across every agent's sessions ("continue", the same
#: test output), and agentic transcripts are evidence a sheet does not explain.
EXTRACTION = ("cot_elicit", "is_thinking")
#: ``plain``: the row samples the bucket's requests that are neither reasoning nor tool-heavy (round 12).
_ROW = {
    "bucket": UTC_US,
    "plain": pl.Boolean,
    "text_fp": pl.UInt64,
    "requests": pl.UInt32,
    "sends": pl.UInt32,
    SIMHASH: pl.Boolean,
}
SHEET_SCHEMA = make_schema({"account_id": pl.String, **_ROW})
SHEET_STORE = make_schema({"account_code": pl.UInt32, **_ROW})
#: A text many accounts hold and one of its holders (``wide_texts``: the population context's sheets).
HOLDER_SCHEMA = make_schema({"text_fp": pl.UInt64, "account_id": pl.String})
#: The features this module adds, by target (kept out of the models: ``detect/models/spec.py``).
SHEET_FEATURES: dict[str, pl.DataType] = {
    "sheet_share_24h": pl.Float64(),
    "reasoning_requests_24h": pl.Int64(),
    "sheet_sends_per_text_24h": pl.Float64(),
}
#: The cluster axis's own (round 12): the share of its members' sampled requests, reasoning or plain,
#: whose sample is a text a share of its members hold, and the sampled requests a member.
YIELD_FEATURES: dict[str, pl.DataType] = {
    "shared_text_share_24h": pl.Float64(),
    "sampled_requests_per_account_24h": pl.Float64(),
    # round 24: the same share in the clock hour with the class together (``_session_peak``)
    "shared_text_peak_share_24h": pl.Float64(),
}
CLUSTER_SHEET_FEATURES = {**SHEET_FEATURES, **YIELD_FEATURES}


def sheet_rows(ev: pl.DataFrame, codes: pl.DataFrame) -> pl.DataFrame:
    """Per (account, bucket, kind) of ``ev`` (enriched events with ``bucket``): the smallest ``text_fp``
    among its reasoning requests (``plain`` false) or among its other requests (``plain`` true; neither
    takes a tool-heavy turn), their number, and how many carried that text (``SHEET_STORE``; ``codes``:
    account_id -> account_code)."""
    if "text_fp" not in ev.columns:
        return pl.DataFrame(schema=SHEET_STORE)
    flagged = pl.any_horizontal([pl.col(c).fill_null(False) for c in EXTRACTION if c in ev.columns])
    tools = pl.col("is_tools_heavy").fill_null(False) if "is_tools_heavy" in ev.columns else pl.lit(False)
    least = pl.col("text_fp") == pl.col("text_fp").min()
    return (
        ev.filter(~tools & pl.col("text_fp").is_not_null())  # an agent's turn, with or without a budget
        .with_columns((~flagged).alias("plain"), simhash_request(ev.columns).alias(SIMHASH))
        .group_by("account_id", "bucket", "plain")
        .agg(
            pl.col("text_fp").min(),
            pl.len().cast(pl.UInt32).alias("requests"),
            least.sum().cast(pl.UInt32).alias("sends"),
            sampled_space(least, pl.col(SIMHASH)).alias(SIMHASH),
        )
        .join(codes, on="account_id")
        .select(SHEET_STORE.keys())
        .cast(SHEET_STORE)
    )


def reasoning_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """The reasoning sample's rows (a frame without ``plain``, built before round 12: all of them)."""
    return rows.filter(~pl.col("plain")) if "plain" in rows.columns else rows


def merge_sheets(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per (account, bucket, kind): the smallest text, the summed requests, and the sends of the
    smallest text summed over the rows that sampled it (any order: the same)."""
    least = pl.col("text_fp") == pl.col("text_fp").min()
    return (
        spaced(rows)
        .group_by("account_code", "bucket", "plain")
        .agg(
            pl.col("text_fp").min(),
            pl.col("requests").sum().cast(pl.UInt32),
            pl.col("sends").filter(least).sum().cast(pl.UInt32),
            sampled_space(least, pl.col(SIMHASH)),
        )
        .select(SHEET_STORE.keys())
        .sort("account_code", "bucket", "plain")
    )


def _share(comparable: pl.Expr | None = None) -> list[pl.Expr]:
    """The sheet features of a subject's rows with ``_sheet``; the share over its ``comparable`` rows
    (a cluster's: those in its hash space, ``window/hashspace.py``), the requests over every row."""
    req, sheet = pl.col("requests").cast(pl.Int64), pl.col("_sheet")
    total = req.sum()
    read = total if comparable is None else req.filter(comparable).sum()
    # per distinct (account, sheet text): its sampled sends (no sheet text: 0, not a ratio of nothing)
    texts = pl.struct("account_id", "text_fp").filter(sheet).n_unique()
    sends = pl.col("sends").cast(pl.Int64).filter(sheet).sum()
    return [
        (req.filter(sheet).sum() / read).alias("sheet_share_24h"),
        total.alias("reasoning_requests_24h"),
        pl.when(texts > 0).then(sends / texts).otherwise(0.0).alias("sheet_sends_per_text_24h"),
    ]


def account_sheets(
    rows: pl.DataFrame,
    points: pl.DataFrame,
    long: timedelta,
    min_accounts: int,
    member_share: float,
    lag: timedelta = timedelta(0),
    holders: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per point (``points``: account_id, tick_end): ``SHEET_FEATURES`` over its reasoning rows in its
    tick's window [tick_end - long, tick_end) (points without reasoning requests: no row). ``rows``: every
    account's sheet rows (``SHEET_SCHEMA``) from the earliest point's window on (less ``lag``).

    A row is the sheet's when its text is held by at least ``min_accounts`` accounts in that window (any
    account, not only the points') and by at least ``member_share`` of the point's account's co-holders
    (the accounts holding any of its texts that ``min_accounts`` hold, itself included): a course's
    exercises are each held by most of the class, a best-of-k split across k of N seats' problems by k of
    N (round 12). Holders are counted over every account; the co-holder pairs are built only for the
    points, and only the texts the points hold are read (round 13: every account's texts of the window,
    and a popular text's holders squared, were a quarter of the dense day's ticks).

    ``lag`` (``EngineSettings.context_lag``, issue 13): holders and co-holders are those of the window
    ``lag`` earlier, [tick_end - lag - long, tick_end - lag) (the population context a cluster stage
    would have published then); the point's own rows are those of its window. A text nobody held then
    has no holders: the point's own first use of a text counts a tick later. The population is then
    read only through the texts at least ``min_accounts`` held a tick earlier with their holders
    (``holders``: tick_end and ``HOLDER_SCHEMA``, the population context as of ``tick_end - lag``;
    ``window/context.py``), built here from ``rows`` when not given (``rows``: then only the points'
    own accounts' rows are needed)."""
    end, on, text = pl.col("tick_end"), ["account_id", "tick_end"], ["tick_end", "text_fp"]
    rows, points = reasoning_rows(rows), points.select(on)
    own = points.join(rows, on="account_id").filter(
        (pl.col("bucket") >= end - long) & (pl.col("bucket") < end)
    )
    # only the texts the points hold in their windows can be theirs or their co-holders' (every holder kept)
    theirs = own.select(text).unique()
    if lag:  # the population context as of a tick earlier: its texts many hold, and their holders
        if holders is None:
            ticks = points["tick_end"].unique().to_list()
            contexts = [wide_texts(rows, t - lag, long, min_accounts).with_columns(tick_end=t) for t in ticks]
            empty = pl.DataFrame(schema={**HOLDER_SCHEMA, "tick_end": UTC_US})
            holders = pl.concat(contexts) if contexts else empty
        wide = holders.select("tick_end", "account_id", "text_fp").cast({"tick_end": UTC_US})
        wide = wide.join(theirs, on=text, how="semi").unique()
        held = wide.group_by(text).agg(pl.col("account_id").n_unique().alias("_holders"))
    else:  # every account's rows of the points' texts in each point's window
        texts = rows.join(theirs, on="text_fp", how="semi")
        pop = points.select("tick_end").unique().join(texts, how="cross")
        pop = pop.filter((pl.col("bucket") >= end - long) & (pl.col("bucket") < end))
        pop = pop.join(theirs, on=text, how="semi")
        held = pop.group_by(text).agg(pl.col("account_id").n_unique().alias("_holders"))
        wide = pop.join(held.filter(pl.col("_holders") >= min_accounts), on=text, how="semi")
        wide = wide.select("tick_end", "account_id", "text_fp").unique()
    mine = own.select(*on, "text_fp").unique().join(wide.select(text).unique(), on=text, how="semi")
    co = (
        mine.join(wide.rename({"account_id": "_other"}), on=text)
        .group_by(on)
        .agg(pl.col("_other").n_unique().alias("_co"))
    )
    bar = pl.col("_co").fill_null(0).cast(pl.Float64) * member_share
    n_held = pl.col("_holders").fill_null(0)
    return (
        own.join(held, on=text, how="left")
        .join(co, on=on, how="left")
        .with_columns(((n_held >= min_accounts) & (n_held >= bar)).alias("_sheet"))
        .group_by(on)
        .agg(_share())
    )


def wide_texts(rows: pl.DataFrame, as_of: datetime, long: timedelta, min_accounts: int) -> pl.DataFrame:
    """(text_fp, account_id) of the reasoning texts at least ``min_accounts`` accounts hold in the window
    [as_of - long, as_of) of ``rows`` (every account's, ``SHEET_SCHEMA``), sorted (``HOLDER_SCHEMA``)."""
    then = reasoning_rows(rows).filter((pl.col("bucket") >= as_of - long) & (pl.col("bucket") < as_of))
    pairs = then.select("text_fp", "account_id").unique()
    many = pl.col("account_id").count().over("text_fp") >= min_accounts
    return pairs.filter(many).sort("text_fp", "account_id").cast(HOLDER_SCHEMA)


def cluster_sheets(
    rows: pl.DataFrame,
    members: pl.DataFrame,
    now: datetime,
    long: timedelta,
    min_holders: int,
    member_share: float,
    session_share: float,
) -> pl.DataFrame:
    """Per cluster (``members``: account_id, cluster_id): its members' reasoning requests pooled,
    ``SHEET_FEATURES`` at ``now`` (``reasoning_requests_24h``: the pool's total). A text is the
    cluster's sheet when at least ``member_share`` of its members who send reasoning in the window hold
    it, and at least ``min_holders``: a course's exercises are each sent by most of its participants, a
    best-of-k split across k of N seats' problems by k of N (round 12); the population does not count
    (a sheet the cluster's first members share is the cluster's before five accounts hold it).
    ``shared_text_peak_share_24h`` (round 24, ``_session_peak``): the pooled share of one clock hour in
    which at least ``session_share`` of the members sent a sampled request, the largest such hour's."""
    w = (
        spaced(rows)
        .filter((pl.col("bucket") >= now - long) & (pl.col("bucket") < now))
        .join(members, on="account_id")
    )
    reasoning = _cluster_sheet(reasoning_rows(w), min_holders, member_share).group_by("cluster_id")
    held = _cluster_sheet(w, min_holders, member_share)
    peak = _session_peak(held, session_share)
    shared = held.group_by("cluster_id").agg(_yield()).join(peak, on="cluster_id")
    share = reasoning.agg(_share(pl.col(COMPARABLE)))
    return share.join(shared, on="cluster_id", how="full", coalesce=True)


def _cluster_sheet(w: pl.DataFrame, min_holders: int, member_share: float) -> pl.DataFrame:
    """``w`` (sheet rows with ``cluster_id``) with ``_sheet``: the row's text is held by at least
    ``member_share`` of the cluster's members in ``w`` read in its hash space (``PEERS``; round 22),
    and by at least ``min_holders``; ``COMPARABLE``: the row is in that space; ``_senders``: every
    member in ``w`` (the volumes a member)."""
    senders = w.group_by("cluster_id").agg(pl.col("account_id").n_unique().alias("_senders"))
    w = held_in_space(w, "cluster_id", member_share, min_holders, "_sheet")
    return w.join(senders, on="cluster_id")


def _session_peak(w: pl.DataFrame, session_share: float) -> pl.DataFrame:
    """Per cluster of ``w`` (``_cluster_sheet``'s rows): ``shared_text_peak_share_24h``, the largest share
    of one clock hour's sampled requests (in the cluster's hash space) whose sample is a text a share of
    its members hold, over the hours in which at least ``session_share`` of its members (``_senders``)
    sent a sampled request (any row, in its hash space or not: a text-free member at the session is
    there, round 22's lesson); 0 when no hour had them together. The hour is the clock hour of each
    bucket's start. A live course's session is such an hour
    (the class at the sheet's exercises together) and its share stays what it was when the participants'
    own experiments later dilute the day's pool (round 24); a farm sweeping a bank shares little in any
    hour. Per bucket's hour, so the same in any order and slicing as the pooled share."""
    req = pl.col("requests").cast(pl.Float64)
    comparable = pl.col(COMPARABLE)
    hours = (
        w.with_columns(pl.col("bucket").dt.truncate("1h").alias("_hour"))
        .group_by("cluster_id", "_hour")
        .agg(
            # no row in the hash space that hour: 0 / 0, not finite, not read
            (req.filter(pl.col("_sheet") & comparable).sum() / req.filter(comparable).sum()).alias("_share"),
            pl.col("account_id").n_unique().alias("_active"),
            pl.col("_senders").first(),
        )
    )
    together = pl.col("_active").cast(pl.Float64) >= pl.col("_senders").cast(pl.Float64) * session_share
    peak = pl.col("_share").filter(together & pl.col("_share").is_finite()).max().fill_null(0.0)
    return hours.group_by("cluster_id").agg(peak.alias("shared_text_peak_share_24h"))  # every cluster of w


def _yield() -> list[pl.Expr]:
    req = pl.col("requests").cast(pl.Int64)
    read = req.filter(pl.col(COMPARABLE)).sum()  # in the cluster's hash space (round 22)
    return [
        (req.filter(pl.col("_sheet")).sum() / read).alias("shared_text_share_24h"),
        (req.sum() / pl.col("_senders").first()).cast(pl.Float64).alias("sampled_requests_per_account_24h"),
    ]


def with_sheets(frame: pl.DataFrame, sheets: pl.DataFrame, on: list[str]) -> pl.DataFrame:
    """``frame`` with ``SHEET_FEATURES`` (and a cluster's ``YIELD_FEATURES``) joined (no reasoning
    request: share 0, requests 0; no sampled text: no shared text)."""
    return frame.join(sheets, on=on, how="left").with_columns(
        pl.col(c).fill_null(0) for c in CLUSTER_SHEET_FEATURES if c in sheets.columns
    )


def sheet_defaults(frame: pl.DataFrame, features: dict[str, pl.DataType] = SHEET_FEATURES) -> pl.DataFrame:
    """``frame`` with any missing column of ``features`` (a cluster's: ``CLUSTER_SHEET_FEATURES``) as if
    no text was sampled."""
    missing = [c for c in features if c not in frame.columns]
    return frame.with_columns(pl.lit(0, features[c]).alias(c) for c in missing)
