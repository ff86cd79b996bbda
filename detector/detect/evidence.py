"""The evidence model: three axes an analyst reasons along, as polars expressions over feature frames.

- **Coordination** (clusters): how many independent accounts share artefacts that are rare across the
  whole population (a private system prompt, a template skeleton, a client build + TLS fingerprint),
  signed up together, send in scheduler waves; and whether one paying customer explains the sharing
  (one card, one org, one verified tenant).
- **Extraction** (accounts and clusters): reasoning elicited in the prompt (any language or wording,
  as the prompt features detect it) or coerced, rubric grading, reasoning asked for only through
  parameters (thinking budgets) with extraction-sized outputs, logprob harvesting, agentic
  transcripts, a pivot to a newly launched model.
- **Trust** (mitigation): a verified customer with tenure, within the volume its tier explains.

``add_axes`` appends the axes as features (``coordination_signals``, ``extraction_signals``,
``one_customer_explains``, ``colocated``, ``tenant_explains``, ``no_customer_explains``: the three
together, the farm rules' provenance gate, ``farm_accounts``: their freshness gate, both written in
``detect/provenance.py``, ``trusted_customer``, ``volume_outside_tier``) that rules
read: the rule YAML holds the verdict thresholds, ``EvidenceSettings`` only what counts as a signal.
``apply_trust`` is the fusion's mitigation step (an established verified customer within its tier is
a low lead whatever fired), ``require_both_axes`` keeps high for clusters on which coordination no
customer or room explains and extraction agree, and ``axis_reasons`` gives every alert one reason per
axis saying what put it where.
"""

from __future__ import annotations

import polars as pl

from detector.detect.adoption import adoption_explains
from detector.detect.coordination import (
    cards_across_orgs,
    colocated,
    coordination_checks,
    scheduler_waves,
    signup_batch,
    signup_cohort,
    stands_out_from_client,
)
from detector.detect.openers import opener_explains, opener_note, opener_yield, yield_note
from detector.detect.provenance import farm_accounts, in_tenant, no_customer_explains
from detector.detect.sheets import SHEET_EXPLAINS, low_yield, sheet_explains, sheet_note
from detector.evidence_settings import EvidenceSettings
from detector.window.dilution import BEYOND_ROUTER_TRUST
from detector.window.openers import opener_defaults
from detector.window.sheets import CLUSTER_SHEET_FEATURES, sheet_defaults

#: Reason names of the axes (``Reason.name``; source ``rule``: the evidence model is declarative).
AXIS_PREFIX = "evidence:"


def agentic_transcripts(s: EvidenceSettings, target: str = "account") -> pl.Expr:
    """Agentic transcripts: tool-heavy requests dominate the traffic, or (a cluster) its members each
    ran at least a session's worth of tool-heavy turns in 24 h, whatever else they sent. Padding the
    seats with ordinary chat (a blend) dilutes the share, not the transcripts harvested: a farm at 80%
    blend still sends every tool-heavy turn it would have sent unblended (issue 17, round 8)."""
    c = pl.col
    share = c("tools_heavy_share_24h")
    dominant = share >= s.tools_heavy_share
    if target != "cluster":
        return dominant
    per_member = c("requests_per_account_24h").fill_null(0.0) * share.fill_null(0.0)
    return dominant | (per_member >= s.agentic_turns_per_account)


def extraction_checks(s: EvidenceSettings, target: str = "account") -> dict[str, pl.Expr]:
    """Extraction signal name -> whether the subject's 24 h traffic carries it (``target``: account or
    cluster; a cluster also counts its members' agentic turns, ``agentic_transcripts``)."""
    c = pl.col
    # a cluster's reasoning that is mostly a shared exercise sheet is a course's, not a harvest (round 10)
    own = ~sheet_explains(s) if target == "cluster" else pl.lit(True)
    # ... and its agentic sessions opened with a shared sheet's few tasks, a course's (round 12)
    own_agents = ~opener_explains(s) if target == "cluster" else pl.lit(True)
    return {
        "reasoning elicited": (c("cot_share_24h") >= s.cot_share) & own,
        "reasoning trace coerced": c("coercion_share_24h") >= s.coercion_share,
        "rubric grading": c("rubric_share_24h") >= s.rubric_share,
        "logprob harvest": c("logprob_share_24h") >= s.logprob_share,
        "reasoning via parameters": (c("thinking_share_24h") >= s.thinking_share)
        & (c("max_tokens_high_share_24h") >= s.max_tokens_high_share)
        & own,
        "agentic transcripts": agentic_transcripts(s, target) & own_agents,
        "new-model pivot": c("new_model_share_24h") >= s.new_model_share,
    }


def tenant_explains(s: EvidenceSettings) -> pl.Expr:
    """A group inside a reseller tenant (most members its sub-accounts) whose sharing one of the
    tenant's customers explains. The tenant's org, card, egress and client build are on all its
    customers and link none of them (``window.link``); what its group shares beyond them (a private
    system prompt, a template, a sign-up batch) is what one company's team shares on its internal tool,
    and the tenant hides whether one customer pays for those seats. Scheduler waves (one dispatcher
    load-balancing over the seats) are not a team's, so a group in waves is not explained; nor is
    extraction a tool does not do (a team's SQL helper says "think it through step by step" and gets
    a query back: reasoning elicited, outputs of ordinary size). The coordination rules accuse an
    explained group only when its seats are new (no established customer of the tenant: opened within
    the month, as a farm's are days before use), and ``require_both_axes`` keeps it below high. The same
    kinds diluted under the shares by a blend of ordinary requests count too (``harvest_in_excess``):
    a tool's traffic is its own mix, a blend only divides a farm's (issue 17, round 9): the kinds no
    tool needs (``dilution.BEYOND_A_TOOL``: coercion, rubric grading, logprobs). A tool on a reasoning
    model asks for the reasoning on every use (a thinking budget, which needs near-maximum outputs, and
    perhaps "step by step"), so a thinking budget, and outputs no larger than it needs, are the team's
    tool's, as the router's trust covers them on the account axis (``_reseller_vouches_not``): a
    group harvesting only through thinking budgets inside a router is a team's reasoning tool on every
    key the gateway sees (docs/detection.md, "Cells not met", round 9)."""
    waves = scheduler_waves(s)
    harvest = beyond_a_tool(s, "cluster") | harvest_in_excess(s, "harvest_beyond_tool_excess_share_24h")
    return in_tenant(s) & ~waves & ~harvest


def beyond_a_tool(s: EvidenceSettings, target: str) -> pl.Expr:
    """Extraction a team's tool does not explain in the subject's shares: any signal beyond a template's
    step-by-step ask and a reasoning model's thinking budget (logprobs, coercion, rubric grading,
    agentic transcripts, a pivot), or that ask with outputs sized beyond what the thinking budget needs
    (thinking requires near-maximum ``max_tokens``). ``tenant_explains`` (a group) and the team-seat
    test on the account axis (``detect/seat.py``) read it."""
    c = pl.col
    ext = extraction_checks(s, target)
    elicited = ext.pop("reasoning elicited")
    ext.pop("reasoning via parameters")  # a tool on a reasoning model: a thinking budget on every use
    thinking = c("thinking_share_24h").fill_null(0.0)
    sized = c("max_tokens_high_share_24h").fill_null(0.0) - thinking >= s.max_tokens_high_share
    return (_count(ext) >= 1) | (elicited.fill_null(False) & sized)


def harvest_in_excess(s: EvidenceSettings, share: str) -> pl.Expr:
    """The cluster's harvest beyond the typical account's mix (``window.dilution``; ``share``: the excess
    feature, e.g. over the kinds no tool needs) is a real share of its traffic and more than chance,
    whatever ordinary traffic it is blended with: the bars of ``cluster_diluted_harvest``."""
    c = pl.col
    excess = c(share).fill_null(0.0)
    requests = excess * c("requests_24h").fill_null(0).cast(pl.Float64)
    return (excess >= s.harvest_excess_share) & (requests >= s.harvest_excess_requests)


#: The tier of an account a reseller provisions for one of its customers (a router's sub-account).
RESELLER_TIER = "reseller"


#: What a router's verification does not vouch for on one of its sub-accounts: ``BEYOND_ROUTER_TRUST`` and
#: agentic transcripts (round 19: the router's customers do not harvest agent trajectories at volume; the
#: honest coding agent's users draw no account-axis hit with or without trust, dev draws 2010-2017).
ROUTER_UNVOUCHED = (*BEYOND_ROUTER_TRUST, "agentic transcripts")


def established(s: EvidenceSettings, age_days: pl.Expr) -> pl.Expr:
    """The trust cap's bars on the customer, whatever its traffic carries: verified, and
    ``trust_tenure_days`` old (``age_days``) or on a contract tier (``trusted_tiers``)."""
    tenure = age_days.fill_null(0.0) >= s.trust_tenure_days
    tiers = pl.col("tier").is_in(list(s.trusted_tiers)).fill_null(False)
    return pl.col("verified").fill_null(False) & (tenure | tiers)


def router_covered(s: EvidenceSettings, age_days: pl.Expr) -> pl.Expr:
    """A seat the router's trust covers: a reseller's sub-account (tier ``reseller``) that is
    ``established`` (verified, aged), whatever its traffic carries. ``trusted_customer`` on such a seat
    is this less ``ROUTER_UNVOUCHED`` at its bar; the aged seats' group (``detect/aged.py``, round 20)
    counts the seats this holds at or under the bar."""
    return (pl.col("tier") == RESELLER_TIER).fill_null(False) & established(s, age_days)


def _reseller_vouches_not(s: EvidenceSettings) -> pl.Expr:
    """A reseller's sub-account whose traffic carries extraction the router's trust does not cover
    (``ROUTER_UNVOUCHED``: ``dilution.BEYOND_ROUTER_TRUST``, coercion and logprobs, defined beside the
    cluster axis's list, which adds rubric grading, with the reason they differ; and agentic transcripts,
    round 19: an aged agent farm's seats through the router were capped at low as "established verified
    customers" on the router's verification). The sub-account's verification and tenure
    are the reseller's and its customer's relation with it, not a customer we know: they vouch for what
    the router's customers do at volume (chat, apps, comparing models on benchmarks that ask for steps,
    with or without a thinking budget, grading answers with a model as judge), for which the account
    axis keeps the trust (a router's model-comparison developers and judge pipelines stay low), not
    for coercion or logprob harvesting, which the disclosed campaigns do (issue 17, rounds 8 and 10).
    A direct customer's own verification keeps covering both."""
    ext = extraction_checks(s)
    beyond = pl.any_horizontal([ext[k].fill_null(False) for k in ROUTER_UNVOUCHED])
    return (pl.col("tier") == RESELLER_TIER).fill_null(False) & beyond


def _count(checks: dict[str, pl.Expr]) -> pl.Expr:
    return pl.sum_horizontal([e.fill_null(False).cast(pl.Int64) for e in checks.values()])


def _names(checks: dict[str, pl.Expr]) -> pl.Expr:
    """The names of the checks that hold, comma-separated ("" when none)."""
    parts = [pl.when(e.fill_null(False)).then(pl.lit(name)) for name, e in checks.items()]
    return pl.concat_list(parts).list.drop_nulls().list.join(", ")


def _tier_limit(s: EvidenceSettings, tier: pl.Expr) -> pl.Expr:
    default = s.tier_daily_requests.get("standard", 3000.0)
    return tier.replace_strict(s.tier_daily_requests, default=default, return_dtype=pl.Float64)


def add_axes(frame: pl.DataFrame, target: str, s: EvidenceSettings) -> pl.DataFrame:
    """``frame`` (account or cluster features) plus the evidence-axis features rules read."""
    if frame.height == 0 and "requests_24h" not in frame.columns:
        return frame
    c = pl.col
    tenure = s.trust_tenure_days
    if target == "account":
        trusted = established(s, c("account_age_days")) & ~_reseller_vouches_not(s)
        per_day = c("requests_24h").fill_null(0).cast(pl.Float64)
        outside = per_day > _tier_limit(s, c("tier")) * s.outside_tier_factor
        return frame.with_columns(
            _count(extraction_checks(s)).alias("extraction_signals"),
            trusted.alias("trusted_customer"),
            outside.alias("volume_outside_tier"),
        )
    # a frame built without the sheet or opener table (``window.sheets``, ``window.openers``)
    frame = opener_defaults(sheet_defaults(frame, CLUSTER_SHEET_FEATURES))
    # one card or one org: a customer's own accounts share its artefacts. One card across the members'
    # many orgs is not one customer: it is the cards-across-orgs signal (a card per ten accounts of a farm)
    one_payer = ((c("orgs") <= 1) | ((c("payers") <= 1) & ~cards_across_orgs(s))).fill_null(False)
    # trust is a customer's: one verified tenant (its members under one org, or a few: a stray account
    # linked in by an office address adds one) with tenure (or a contract). Many verified orgs bound
    # by one private artefact and one sign-up burst are not one customer (aged accounts, bought or
    # parked, are the disclosed campaigns' own), so a cluster of many orgs earns no trust as a cluster;
    # each member keeps its own on the account axis
    most_orgs = (c("accounts") * s.tenant_orgs_per_account).clip(lower_bound=1.0)
    few_orgs = (c("orgs") <= most_orgs).fill_null(False)
    trusted = (
        few_orgs
        & (c("verified_share").fill_null(0.0) >= s.trusted_member_share)
        & (
            (c("median_account_age_days").fill_null(0.0) >= tenure)
            | (c("enterprise_share").fill_null(0.0) >= s.trusted_member_share)
        )
    )
    one_customer = one_payer | trusted
    adoption = adoption_explains(
        s, extraction_checks(s, "cluster"), harvest_in_excess(s, "harvest_beyond_tool_excess_share_24h")
    )
    per_account = c("requests_per_account_24h").fill_null(0.0)
    outside = per_account > _tier_limit(s, pl.lit("standard")) * s.outside_tier_factor
    frame = frame.with_columns(
        _count(extraction_checks(s, "cluster")).alias("extraction_signals"),
        _count(coordination_checks(s)).alias("coordination_signals"),
        colocated(s).alias("colocated"),
        tenant_explains(s).alias("tenant_explains"),
        # bulk: a sign-up batch or cohort, or cards across orgs; not a tool's adoption (``detect/adoption``)
        (
            cards_across_orgs(s)
            | (signup_batch(s) & (c("signup_burst_share").fill_null(0.0) >= s.adoption_batch_share))
            | ((signup_batch(s) | signup_cohort(s)) & ~adoption)
        ).alias("bulk_provisioned"),
        stands_out_from_client(s).alias("stands_out_from_client"),
        one_customer.alias("one_customer_explains"),
        trusted.alias("trusted_customer"),
        outside.alias("volume_outside_tier"),
    )
    # ... or its agent sessions open with a shared sheet's tasks (round 16: the same argument on openers)
    return frame.with_columns(
        (low_yield(s) | opener_yield(s)).alias("low_yield"),
        no_customer_explains(s).alias("no_customer_explains"),
        farm_accounts(s).alias("farm_accounts"),
    )


def apply_trust(hits: pl.DataFrame, frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """Trust mitigates: a subject that is an established verified customer within its tier's volume is
    a low lead whatever fired (re-running benchmarks is evaluation, not harvesting); far outside its
    tier it keeps the rules' severity."""
    if hits.height == 0 or "trusted_customer" not in frame.columns:
        return hits
    capped = frame.filter(c_trusted_within()).select(key)
    if capped.height == 0:
        return hits
    return hits.with_columns(
        pl.when(pl.col(key).is_in(capped[key].implode()))
        .then(pl.lit("low"))
        .otherwise(pl.col("severity"))
        .alias("severity")
    )


def require_both_axes(hits: pl.DataFrame, frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """High on a cluster needs both axes: coordination that no paying customer and no room explains,
    and extraction evidence in its traffic. Otherwise a cluster hit is capped at medium, whichever rule
    or model raised it (a model beside a coordination-only rule, a high rule that does not look at the
    coordination axis). A hackathon cohort is coordinated (a sign-up burst, a tutorial's system prompt
    and template) but one room explains that; a farm's coordination is unexplained and it harvests.
    A cluster with no extraction signal whose traffic is a shared sheet (``sheets.low_yield``) is a low
    lead: a remote course's class, coordinated by its course, harvesting nothing new (round 12)."""
    if hits.height == 0 or "colocated" not in frame.columns:
        return hits  # account subjects have no coordination axis
    c = pl.col
    explained = c("one_customer_explains").fill_null(False) | c("colocated").fill_null(False)
    if "tenant_explains" in frame.columns:  # a tenant's customer may explain it: at most medium
        explained = explained | c("tenant_explains").fill_null(False)
    both = frame.filter(~explained & (c("extraction_signals").fill_null(0) >= 1)).select(key)
    # coordination alone over a shared sheet's traffic: one actor, little yield (round 12)
    sheet = frame.filter(c("low_yield").fill_null(False)) if "low_yield" in frame.columns else frame.clear()
    return hits.with_columns(
        pl.when(c(key).is_in(sheet.select(key).to_series().implode()))
        .then(pl.lit("low"))
        .when((c("severity") == "high") & ~c(key).is_in(both[key].implode()))
        .then(pl.lit("medium"))
        .otherwise(c("severity"))
        .alias("severity")
    )


def c_trusted_within() -> pl.Expr:
    """A trusted customer whose volume its tier explains."""
    trusted = pl.col("trusted_customer").cast(pl.Boolean, strict=False).fill_null(False)
    return trusted & ~pl.col("volume_outside_tier").cast(pl.Boolean, strict=False).fill_null(False)


def axis_reasons(
    hits: pl.DataFrame, frame: pl.DataFrame, target: str, key: str, s: EvidenceSettings
) -> pl.DataFrame:
    """One reason row per axis for every subject with a hit (score 0: a reason, not a vote).

    Columns follow the rule hits (key, rule_id, severity, score, campaign_type, detail, mode), so the
    reasons travel with the alert; the detail says which axis put the subject where, with counts only.
    """
    if hits.height == 0 or "extraction_signals" not in frame.columns:
        return hits
    subjects = frame.join(hits.select(key).unique(), on=key, how="semi")
    c = pl.col
    ext, raw = extraction_checks(s, target), extraction_checks(s)  # raw: no sheet discount (account form)
    reasoning = pl.any_horizontal([raw[n].fill_null(False) for n in SHEET_EXPLAINS])
    rows = [
        subjects.select(
            key,
            pl.lit(f"{AXIS_PREFIX}extraction").alias("rule_id"),
            pl.concat_str(
                pl.lit("extraction: "),
                c("extraction_signals").cast(pl.String),
                pl.lit(" signal(s)"),
                pl.when(c("extraction_signals") > 0).then(pl.lit(": ") + _names(ext)).otherwise(pl.lit("")),
                sheet_note(s, target, reasoning),
                opener_note(s, target, agentic_transcripts(s, target).fill_null(False)),
            ).alias("detail"),
        ),
        subjects.select(
            key,
            pl.lit(f"{AXIS_PREFIX}trust").alias("rule_id"),
            pl.when(c_trusted_within())
            .then(pl.lit("trust: established verified customer within its tier's volume: capped at low"))
            .when(c("trusted_customer").fill_null(False))
            .then(pl.lit("trust: established verified customer, but volume far outside its tier"))
            .otherwise(pl.lit("trust: none (not an established verified customer)"))
            .alias("detail"),
        ),
    ]
    if target == "cluster":
        coord = coordination_checks(s)
        rows.append(
            subjects.select(
                key,
                pl.lit(f"{AXIS_PREFIX}coordination").alias("rule_id"),
                pl.concat_str(
                    pl.lit("coordination: "),
                    c("coordination_signals").cast(pl.String),
                    pl.lit(" signal(s)"),
                    pl.when(c("coordination_signals") > 0)
                    .then(pl.lit(" (") + _names(coord) + pl.lit(")"))
                    .otherwise(pl.lit("")),
                    pl.lit(" across "),
                    c("accounts").cast(pl.String),
                    pl.lit(" accounts, "),
                    c("payers").cast(pl.String),
                    pl.lit(" payment instruments, "),
                    c("orgs").cast(pl.String),
                    pl.lit(" orgs"),
                    pl.when(c("one_customer_explains").fill_null(False))
                    .then(pl.lit("; one paying customer explains the sharing"))
                    .when(c("colocated").fill_null(False))
                    .then(pl.lit("; one venue network explains it (a co-located cohort)"))
                    .when(c("tenant_explains").fill_null(False))
                    .then(pl.lit("; inside a reseller tenant: one of its customers may explain it"))
                    .otherwise(pl.lit("; no single customer explains it")),
                    yield_note(s),
                ).alias("detail"),
            )
        )
    axes = pl.concat(rows, how="vertical_relaxed").with_columns(
        pl.lit("low").alias("severity"),
        pl.lit(0.0).alias("score"),
        pl.lit(None, pl.String).alias("campaign_type"),
        pl.lit("live").alias("mode"),
    )
    return pl.concat([hits, axes.select(hits.columns).cast(hits.schema)], how="vertical_relaxed")
