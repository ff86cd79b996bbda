"""Engine and runtime settings (pydantic-settings: env vars ``DETECTOR_*`` and an optional file)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from detector import defaults
from detector.contracts import LinkFamily

#: Bounds: every window and interval is positive; warm-up and lateness may be zero; shares lie in 0..1.
_ZERO = timedelta(0)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SHORT_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def _duration(value: object) -> object:
    """Durations from variables: ``900`` (seconds) and ``15m`` / ``2h`` / ``7d`` besides ``00:15:00``
    and ISO 8601 ``PT15M`` (which pydantic reads itself)."""
    if isinstance(value, str) and (m := _SHORT_DURATION.match(value)):
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2) or "s"])
    return value


class WindowSettings(BaseModel):
    """Event-time windows and the tick at which the engine evaluates."""

    #: The engine evaluates features, links and rules each time event time crosses a tick boundary.
    tick: timedelta = Field(default=timedelta(minutes=15), gt=_ZERO)
    #: Clusters are rebuilt and scored at tick boundaries that are multiples of this (linkage moves slowly).
    cluster_every: timedelta = Field(default=timedelta(hours=1), gt=_ZERO)
    short: timedelta = Field(default=timedelta(hours=1), gt=_ZERO)
    long: timedelta = Field(default=timedelta(hours=24), gt=_ZERO)
    #: Linkage keys (shared cards, IPs, fingerprints...) stay live this long after last use.
    link: timedelta = Field(default=timedelta(days=7), gt=_ZERO)
    #: Request ids are remembered this long (de-duplication: a gateway's retries and Kafka redeliveries
    #: arrive within minutes). A duplicate older than this is counted again: at 24 h (``long``) its
    #: bucket is outside every window still to be evaluated, so it only adds a use to its linkage keys
    #: and one to the events counted. Each day kept costs 8 bytes a request (docs/benchmarks.md).
    dedup: timedelta = Field(default=timedelta(hours=24), gt=_ZERO)
    #: An account with no event for this long is evicted from state.
    account_idle: timedelta = Field(default=timedelta(days=7), gt=_ZERO)
    #: Models seen within this long of the stream's start are "established"; later ones are new.
    model_warmup: timedelta = Field(default=timedelta(hours=6), ge=_ZERO)
    #: A model counts as newly launched for this long after it is first seen.
    new_model: timedelta = Field(default=timedelta(hours=72), gt=_ZERO)
    #: Accounts created within this span of each other share a sign-up burst key.
    signup_burst: timedelta = Field(default=timedelta(minutes=30), gt=_ZERO)
    #: An alert episode with no verdict for this long closes; a later verdict opens a new episode (new id).
    episode_idle: timedelta = Field(default=timedelta(days=7), gt=_ZERO)
    #: Events older than the watermark minus this are late (counted, folded into the current tick).
    allowed_lateness: timedelta = Field(default=timedelta(minutes=5), ge=_ZERO)

    @field_validator("*", mode="before")
    @classmethod
    def _short_durations(cls, value: object) -> object:
        return _duration(value)

    @model_validator(mode="after")
    def _ordered(self) -> WindowSettings:
        if self.cluster_every < self.tick:
            raise ValueError(f"cluster_every ({self.cluster_every}) must be at least tick ({self.tick})")
        if self.short > self.long:
            raise ValueError(f"short ({self.short}) must not exceed long ({self.long})")
        if self.dedup < self.long:  # a copy past the horizon would land in a window still evaluated
            raise ValueError(f"dedup ({self.dedup}) must be at least long ({self.long})")
        return self


class EventTimeSettings(BaseModel):
    """Guards on event time: no single record may move the clock (``detector.window.eventtime``)."""

    #: An event more than this ahead of its partition's recent events (or of the ingest clock, in the
    #: daemon) is dead-lettered as ``future_timestamp``. One hour: gateways stamp events within seconds
    #: of arrival and Kafka partitions interleave by well under a minute, while the engine's windows
    #: (a 15-minute tick, 5 minutes of lateness) would be skipped by anything further ahead.
    future_skew: timedelta = timedelta(hours=1)
    #: The partition's recent events: the last this many event times it delivered, with the batch's.
    recent_events: int = 1000
    #: Sorted, they fall into runs split by gaps over ``future_skew``; the newest run holding at least
    #: this many events is where the partition's time is. A later, smaller run is in the future. Five:
    #: one forged copy (or four) cannot move the clock, while the first events after a real jump in
    #: time (a gap in the logs, a quiet hour) are dead-lettered only until five have arrived.
    min_support: int = 5
    #: Events outside [plausible_from, plausible_until) are rejected as ``implausible_timestamp``
    #: (years 0001 and 9999 are valid RFC 3339 but no gateway log holds them).
    plausible_from: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    plausible_until: datetime = datetime(2200, 1, 1, tzinfo=UTC)
    #: Late events (older than the last closed tick) wait for the next tick to close; more than this
    #: waiting means the clock is stuck, so they are folded into the last closed tick at once (counted)
    #: and readiness fails until a tick closes. 200,000 is ~10 minutes of the densest measured stream.
    max_late_events: int = 200_000


class StateCaps(BaseModel):
    """Row caps per state table, on top of eviction by event time (``WindowState.evict``).

    Eviction by event time bounds the tables for a steady population; the caps bound them against a
    flood of new ids (a sign-up storm, forged request ids). Over a cap a table keeps its newest rows by
    event time: dropped accounts (least recently seen first) take their buckets, templates, sheet rows
    and keys; dropped ``seen`` ids shorten the de-duplication horizon (a replayed duplicate older than
    it counts twice); a dropped model counts as new if it comes back. Every dropped row is counted
    (``detector_state_evicted_rows_total{table, cause}``). ``benchmarks/state_memory.py`` measured
    580 bytes of state per account for 1M accounts in one hour (554 MB; docs/robustness.md).
    """

    accounts: int = 4_000_000
    #: ~24 one-hour-active buckets for each of 4M accounts, or 96 (a full day) for 1M
    buckets: int = 100_000_000
    templates: int = 100_000_000
    #: at most one row per (account, bucket) holding a reasoning request (``window/sheets.py``)
    sheets: int = 100_000_000
    #: ... and one holding a tool-heavy request (``window/openers.py``)
    openers: int = 100_000_000
    keys: int = 40_000_000
    #: request ids inside the de-duplication horizon (7 days of ~26 requests per account per day for
    #: 1M accounts is 182M: the horizon shortens first under the densest traffic)
    seen: int = 100_000_000
    models: int = 10_000


class RuleGuardSettings(BaseModel):
    """Run-time guard rail for enforce rules (``detector.detect.runaway``)."""

    #: An enforce rule firing on more than this share of one tick's evaluated subjects is demoted to
    #: shadow. Half: attackers are a small minority of any real population; a rule accusing most of
    #: it is broken (the issue's ``requests_24h >= 0`` fired on all 1,633 honest accounts).
    max_fire_share: float = 0.5
    #: ...only in ticks that evaluated at least this many subjects (a quiet tick of three accounts,
    #: two of them attackers, is no evidence of a broken rule).
    min_subjects: int = 200


class LinkSettings(BaseModel):
    """How linkage keys become cluster edges."""

    #: Keys per account and family kept for composite linking (most used first).
    keys_per_family: int = Field(default=3, ge=1)
    #: A key used by more than this share of active accounts (and more than ``common_min_accounts``)
    #: is common (a popular SDK, a big NAT) and links nobody.
    common_share: float = Field(default=0.2, gt=0, le=1)
    common_min_accounts: int = Field(default=50, ge=1)
    #: A composite key (two families' keys held together) links its holders only when they are at least
    #: this share of the holders of each key (a popular browser plus a popular prompt is a coincidence;
    #: a client build plus a template skeleton held by the same 60 accounts is not).
    min_overlap: float = Field(default=0.5, gt=0, le=1)
    #: ...or when they are most holders of the rarer key and the other key is held by at most this share
    #: of all accounts (a prefix nested in a reseller that only one network uses).
    nested_max_share: float = Field(default=0.05, ge=0, le=1)
    #: Families whose key may hold a nested one that way: relationships an operator sets up on purpose.
    #: Not templates (a popular prompt) or address prefixes (a neighbourhood).
    nest_families: tuple[LinkFamily, ...] = ("payment", "reseller", "client", "sysprompt")
    #: ... but a key of these families is software that a public tool makes common among strangers
    #: (curl, an SDK release: a hundred holders with no relationship), so a group nested in it links
    #: only when it holds at least ``nested_min_accounts``: two of curl's holders who also share a
    #: casual template or a sign-up half hour are a coincidence. Such a pair joined a hackathon and a
    #: company's card group into one "farm" of 179 accounts (issue 17, round 10). Five: the smallest
    #: group a cluster rule accuses (``cohort_min_accounts``). A farm's private build still links a
    #: pair that is most holders of each key (``min_overlap``) and its sign-up cohorts
    #: (``window.cohorts``), but no longer a pair nested in it: on dev draws 270-285 two campaign
    #: accounts (of 1,616) joined their campaign's cluster only that way (docs/detection.md, round 10).
    #: Cards, resellers and system prompts name a relationship or a private artefact: a campaign's
    #: early pairs nest in them.
    public_nest_families: tuple[LinkFamily, ...] = ("client",)
    nested_min_accounts: int = Field(default=5, ge=2)
    #: Families that link on their own, without a second family agreeing.
    strong_families: tuple[LinkFamily, ...] = ("payment",)
    #: Families a reseller tenant (a router: its sub-accounts under its one org) sets for all its
    #: sub-accounts: its own infrastructure, which links none of them (``window.link``).
    tenant_families: tuple[LinkFamily, ...] = ("reseller", "payment", "ip", "client")
    #: ... but a key of these families held mostly by some of a tenant's sub-accounts links them through
    #: the tenant's reseller id, whatever the tenant's size: a private system prompt that the router's
    #: other customers do not hold is a group inside it (issue 17, round 7). Not templates or sign-up
    #: windows: among a router's many customers those are popular prompts and coincidences.
    tenant_nested_families: tuple[LinkFamily, ...] = ("sysprompt",)
    #: A sign-up cohort (``window.cohorts``): most (``min_overlap``) of a client build's holders, and at
    #: least ``cohort_min_accounts`` of them, opened their accounts within this span of each other: they
    #: link as one group. An honest build's users arrive over months and years; an operator opens its
    #: farm's accounts over days (the link window: what linkage remembers of them). At least five: the
    #: smallest group a cluster rule accuses; three holders of a niche SDK in one week are a coincidence
    #: a hackathon makes (a small world's casual users and 60 participants: tests/test_hackathon.py).
    signup_cohort: timedelta = Field(default=timedelta(days=7), gt=_ZERO)
    cohort_min_accounts: int = Field(default=5, ge=2)
    #: ... unless most of the cohort opened within this span (one sitting: a hackathon's registration
    #: desk, a startup's engineers in one afternoon): the sitting explains the shared window (round 9).
    signup_sitting: timedelta = Field(default=timedelta(hours=8), gt=_ZERO)


class EvidenceSettings(BaseModel):
    """What counts as one piece of evidence on each axis (``detect/evidence.py``). The verdict
    thresholds (how much evidence accuses, at which severity) live in the rule YAML; these only say
    when a share is a signal. Set from the threat (PRODUCT.md), not fitted to a seed or a draw."""

    #: Extraction: a subject's traffic carries a signal when at least this share of its requests does.
    #: Reasoning elicited in the prompt in any language (a third of the traffic is far above honest
    #: chat's few per cent), or coerced (demanding the hidden trace is rare even once).
    cot_share: float = 0.3
    coercion_share: float = 0.2
    rubric_share: float = 0.3
    #: Logprob harvesting: most requests ask for the distribution.
    logprob_share: float = 0.5
    #: Reasoning asked for through parameters only (thinking budgets), with extraction-sized outputs.
    thinking_share: float = 0.5
    max_tokens_high_share: float = 0.5
    #: Agentic transcripts: tool-heavy requests dominate ...
    tools_heavy_share: float = 0.4
    #: ... or, in a cluster, its active members each sent at least this many tool-heavy turns in 24 h,
    #: whatever else they sent: more than an agent tutorial's worked examples (1-8 per participant),
    #: less than one agent session (25-30 turns). A farm padding its seats with ordinary chat dilutes
    #: the share, not the transcripts it harvests (issue 17, round 8).
    agentic_turns_per_account: float = Field(default=10.0, gt=0)
    #: A pivot: a quarter of the traffic moved to a model launched days ago (the disclosed operator
    #: moved half within 24 h).
    new_model_share: float = 0.25
    #: Coordination: scheduler waves, members active in the same 15-minute buckets (1.0: all together).
    scheduler_synchrony: float = 0.5
    #: Coordination: a sign-up burst holds at least this share of the cluster's members in one sign-up
    #: window. A farm opened in a few bursts puts an eighth or more of its accounts in each (the
    #: disclosures: batches of accounts created together); a hundred honest accounts opened over
    #: years give a few coincidental pairs (2 of 117 is 0.017).
    signup_burst_share: float = Field(default=0.1, gt=0, le=1)
    #: Bulk provisioning (which lets established, verified accounts count as a farm's) needs a batch: a
    #: burst of at least this many accounts. An operator opens accounts in batches; two in one half hour
    #: are what independent sign-ups give by chance (two colleagues, a tool's launch day), and in a
    #: small cluster (the few members active in one night hour) one such pair is a tenth of it.
    signup_burst_min_accounts: int = Field(default=3, ge=2)
    #: A sign-up cohort (``window.cohorts``) is a coordination signal when it holds at least this share of
    #: the cluster's members: a farm's fragments are its cohort; a few participants of a hackathon who
    #: share a niche SDK are a sliver of their cluster (issue 17, round 9).
    signup_cohort_member_share: float = Field(default=0.5, gt=0, le=1)
    #: Cards across orgs (a coordination signal, and bulk provisioning) need most members (at least this
    #: share) paying with a card that pays for another of the cluster's orgs too: a farm's card per ten
    #: accounts holds all of them; a startup's engineers on the company card are a few of a popular
    #: tool's users (issue 17, round 8). The same "most members" as ``colocated_member_share``.
    cross_org_card_member_share: float = Field(default=0.5, gt=0, le=1)
    #: Co-location: a cohort behind one venue or campus NAT (a hackathon, a class) shares its artefacts
    #: because its people sit in one room following one tutorial: at least this share of its members
    #: were seen behind one residential, campus or office prefix (some also from a phone or from home;
    #: the venue key need not link them: a campus NAT is held by many others) ...
    colocated_member_share: float = Field(default=0.5, gt=0, le=1)
    #: ... and no second prefix holds more than this share of them (a proxy pool or a router's egress
    #: spreads its accounts over several shared addresses; two participants on one carrier's prefix
    #: are a sliver). A farm spreads over many addresses to look independent. A room never explains a
    #: private client build (``private_client_inside_share``). Caveat: without IP intelligence a
    #: proxy pool inside one /24 looks the same as a venue.
    colocated_second_share: float = Field(default=0.2, ge=0, le=1)
    #: A private client build: at least this share of all the accounts holding the cluster's main client
    #: build (TLS fingerprint + SDK string) are its members (most of its users: an operator's software;
    #: a popular SDK is held by many others). A room never explains one.
    private_client_inside_share: float = Field(default=0.5, gt=0, le=1)
    #: A template is a room's (its requests, on the account axis, the tutorial's and not the account's
    #: own harvest: ``detect/room.py``) only when at least this many accounts hold it and they pass the
    #: venue test above: a tutorial is handed to a class or an event; below five accounts the cluster
    #: rules do not accuse a group at all (``cluster_coordinated_harvest``), so the account axis keeps
    #: two or three accounts behind one home NAT sharing a step-by-step template (a small operator).
    room_min_accounts: int = Field(default=5, ge=2)
    #: A router sub-account's reasoning is its team's tool's (``detect/seat.py``) only when at least this
    #: many accounts hold the tool's system prompt or template: below it the cluster rules accuse no
    #: group, so the account axis keeps the verdict on a pair or a trio (the room's bar, same reason).
    team_min_seats: int = Field(default=5, ge=2)
    #: ... and only when fewer than this share of those holders were opened within the month: a group of
    #: new seats is no established customer of the router, and the farm rules accuse it even when
    #: ``tenant_explains`` holds (their ``new_account_share >= 0.8``; ``tests/test_team_seat.py`` keeps
    #: the two equal), so the account axis keeps its verdict on such seats too.
    team_new_seat_share: float = Field(default=0.8, gt=0, le=1)
    #: A course's exercise sheet (``window/sheets.py``, issue 17, round 10): a text is a sheet's when at
    #: least this many accounts send it as an extraction request in 24 h (the room's bar: a sheet is
    #: handed to a class; a farm drawing from a problem bank repeats a text across five seats' samples
    #: only by chance) ...
    sheet_min_accounts: int = Field(default=5, ge=2)
    #: ... and held by a real share of the group it is shared in (round 12): on the cluster axis this
    #: share of its members who send reasoning (the population does not count), on the account axis of
    #: the account's co-holders (``window/sheets.py``). A course's exercises are each sent by most of
    #: the class; a farm sending each problem once from k of its N seats (best-of-k split across seats)
    #: holds each text by k of N: a third (the bar) is more than best-of-5 of 16 seats.
    sheet_member_share: float = Field(default=1 / 3, gt=0, le=1)
    #: ... at least this many of the cluster's members (the cluster axis; a pair is no class).
    sheet_min_holders: int = Field(default=3, ge=2)
    #: ... and a cluster's reasoning counts only from this many reasoning requests a member on (round
    #: 12): below it each member sent an exercise or two, and one sampled text a bucket cannot tell a
    #: course's first hour from a sweep's (round 11's courses went high at 1.25-1.7 a member). The cost:
    #: a slow farm's cluster reaches high later (medium meanwhile; docs/detection.md, round 12).
    sheet_read_min_requests: float = Field(default=2.0, ge=0)
    #: ... a subject's extraction is a sheet's when at least this share of its extraction requests are
    #: (most of them: a participant's own variants are a minority; a sweep's are nearly all its own) ...
    sheet_share: float = Field(default=0.5, gt=0, le=1)
    #: ... and its extraction requests stay within a sheet's volume per account in 24 h: a course sheet
    #: is a few dozen exercises a seat (4-15 and their retries); a harvest at scale is hundreds a seat a
    #: day, so a farm that sends a sheet to look like one yields a sheet's few problems.
    sheet_max_requests_per_account: float = Field(default=60.0, gt=0)
    #: ... and it sends each shared text about once: fewer than this many sends per text on average
    #: (``sheet_sends_per_text_24h``: sampled sends per distinct account and sheet text). A course's
    #: participant wants one working answer per exercise: one send, a re-run after an error or a changed
    #: parameter now and then, so its mean is 1 to 1.5 (the simulator's courses: 5-30% of exercises
    #: retried, 2-3 sends each); every exercise sent twice is no longer "once, a few retried". Best-of-n
    #: and rejection sampling, what distillation does with a problem, need several reasoning traces of
    #: each (four or more, to keep one). The figure is a lower bound (one sampled text a bucket), lowest
    #: for a dense sender: two, the bar, sits between a course and the least a harvest of samples sends
    #: (issue 17, round 10).
    sheet_max_sends_per_text: float = Field(default=2.0, gt=1)
    #: ... read only from this many sheet requests per account on (reasoning requests in buckets whose
    #: sample is a sheet's): best-of-n's smallest n. Fewer cannot be n samples of even one problem; a
    #: participant who sent one exercise twice reads 2.0 sends per text and is a retry, not a harvest.
    sheet_repeat_min_requests: float = Field(default=4.0, gt=0)
    #: An agent course's openers (``window/openers.py``, issue 17, round 12): a sampled tool-heavy session
    #: opener is shared when at least this share of the cluster's agents (members with a tool-heavy
    #: request in 24 h) hold it, and at least ``opener_min_holders`` (a sheet's task is the whole class's;
    #: a farm's bank repeats a task across a fifth of its seats' samples only by chance) ...
    opener_holder_share: float = Field(default=0.2, gt=0, le=1)
    opener_min_holders: int = Field(default=3, ge=2)
    #: ... and its agentic transcripts are a course's when ``sheet_share`` of its sampled openers are
    #: shared, each sent fewer than ``sheet_max_sends_per_text`` times per agent, its loops are short (at
    #: most this many tool-heavy turns per opener: a tutorial's agent calls a tool or a few, a harvest's
    #: session runs as long as the farm likes) and each agent's tool-heavy turns stay within
    #: ``sheet_max_requests_per_account``: what a farm opening a course's few tasks would harvest.
    opener_max_turns: float = Field(default=8.0, gt=1)
    #: A cluster that only the coordination axis accuses (no extraction signal) is a low lead when at
    #: least this share of its members' sampled requests (reasoning or plain, tool-heavy turns aside)
    #: are texts a share of its members hold (``window/sheets.py``: the sheet bar): a course's
    #: participants send a sheet's few texts, a farm sweeps a bank whose texts nearly nobody else sends
    #: (issue 17, round 12: dev draws' courses 0.6-0.9, coordination-only farms 0.0). Most, as for a
    #: reasoning sheet (``sheet_share``): a participant's own experiments after the session are a minority.
    yield_shared_share: float = Field(default=0.5, gt=0, le=1)
    #: A cluster stands out from its client build's population (``window.population``) when the build
    #: has at least this many holders outside the cluster (a population to compare with: a tool, a
    #: router's customers; not a colleague or two) ...
    client_population_min_accounts: int = Field(default=20, ge=1)
    #: ... and the cluster's share of requests eliciting, coercing or grading reasoning, harvesting
    #: logprobs or asking a thinking budget exceeds theirs by at least this much (the same bar as
    #: ``cot_share``: a third of the traffic is a harvest; a tool's users vary around its own mix by a
    #: few per cent).
    client_extraction_lift: float = Field(default=0.3, gt=0, le=1)
    #: Trust: a verified account with at least this tenure (a month of paid history) is an established
    #: customer: a farm's accounts are provisioned days before use, and the aged accounts of the
    #: disclosures were personal accounts, not verified organisations ...
    trust_tenure_days: float = 30.0
    #: ... as is a verified account on a contract tier, whatever its age (a contract is a known customer).
    trusted_tiers: tuple[str, ...] = ("enterprise",)
    #: A cluster is one such customer (and so explains its own sharing) when most of its members are
    #: verified and its median member has that tenure or a contract tier.
    trusted_member_share: float = 0.5
    #: ... and its members sit under one org, or at most one org per this many members (a stray account
    #: linked into a company's cluster by its office address adds an org). A farm holds about one org
    #: per account, however aged or verified its accounts are: it earns no trust as a cluster.
    tenant_orgs_per_account: float = 0.1
    #: A cluster is a group inside a reseller tenant (a router) when at least this share of its members
    #: are the tenant's sub-accounts. The tenant hides who pays for them: one of its customers (a
    #: company's team on its internal tool: one system prompt, one template, seats opened in a batch)
    #: shares exactly what a farm shares, so such a group's sharing alone accuses nobody
    #: (``tenant_explains`` in ``detect/evidence.py``; issue 17, round 7).
    tenant_group_share: float = Field(default=0.5, gt=0, le=1)
    #: A cluster's harvest in excess of the typical account's mix (``window.dilution``) counts as harvest
    #: when it is at least this share of the cluster's 24 h requests and at least this many requests:
    #: about what a campaign blending 90% ordinary requests into every account still sends, and five a
    #: day, under which the excess is chance. The bars of ``rules/cluster_diluted_harvest.yaml`` (a test
    #: keeps the two equal); ``tenant_explains`` reads them over the kinds no tool needs (coercion,
    #: rubric grading, logprobs), so a router group whose such harvest a blend divides under the shares
    #: is not explained as a team's tool (issue 17, round 9).
    harvest_excess_share: float = Field(default=0.1, gt=0, le=1)
    harvest_excess_requests: float = Field(default=5.0, gt=0)
    #: Requests a day one account of each tier is expected to send at most (the gateway's own quotas
    #: are the better source; these are conservative defaults). Unknown tiers use ``standard``.
    tier_daily_requests: dict[str, float] = Field(
        default_factory=lambda: {
            "free": 300.0,
            "standard": 3000.0,
            "education": 1000.0,
            "research": 5000.0,
            "startup": 5000.0,
            "enterprise": 50000.0,
            "reseller": 100000.0,
        }
    )
    #: Volume "far outside its tier": this many times the tier's expected day.
    outside_tier_factor: float = 5.0
    #: A cluster is a popular tool's independent established customers (``detect/adoption.py``) when at
    #: least this share of its members are verified, at least this share are not new (the farm gate's
    #: "nearly all new" mirrored: ``new_account_share`` 0.8 in the farm rules), and it has at least this
    #: many orgs and payers per member. Its sign-up cohorts and batches of a minority are then its
    #: tool's adoption (a launch brings many in one half hour by chance), not bulk provisioning, unless
    #: its traffic carries extraction beyond a tool's own use. The campaigns' accounts are verified at 0.3-0.8
    #: (``lab/simulate/campaigns.py``) and a router's sub-accounts count as unverified (issue 17, round 11).
    public_tool_member_share: float = Field(default=0.8, gt=0.5, le=1)
    #: ... but a batch holding at least this share of them (most: as ``signup_cohort_member_share`` and
    #: ``cross_org_card_member_share``) opened in one half hour is bought in bulk whoever they are. A
    #: launch brings its users in numbers that grow with the tool (a regional launch event gave 13 of a
    #: night cluster of 76 in one half hour in the simulator, issue 17 round 11), never most of them.
    adoption_batch_share: float = Field(default=0.5, gt=0, le=1)


class EngineSettings(BaseSettings):
    """Everything the engine needs; the same object drives replay and the daemon."""

    model_config = SettingsConfigDict(env_prefix="DETECTOR_", env_nested_delimiter="__", extra="ignore")

    #: Default: the rules that ship in the package (``detector/defaults/rules``).
    rules_dir: Path = Field(default_factory=defaults.rules_dir)
    allowlist: Path | None = None
    #: None: no IP intelligence; ``default``: the snapshot that ships in the package; else a folder.
    ip_intel_dir: Path | None = None
    #: ONNX models with manifests (``<name>-v<N>.onnx``; default: the packaged ones); None: rules only.
    models_dir: Path | None = Field(default_factory=defaults.models_dir)
    #: A model raises a subject to medium on its own (no rule beside it) only where its manifest's
    #: precision, measured on the calibration block of draws at its medium threshold, is at least this:
    #: one honest subject accused per hundred accusations is the most a verdict that no rule, and so no
    #: readable reason, stands behind may cost (issue 17). Below it the model's lone hit stays a low lead.
    model_vote_precision: float = Field(default=0.99, ge=0.5, le=1.0)
    #: Account features are computed over the (account, tick) points of a pass in parts of about this
    #: many points (an account's points are never split; features are per account, so the rows are the
    #: same). Each point joins its account's 24 hours of buckets (2.6 KB a point measured: 45 MB for the
    #: 17,520 points of one pass on a 964,000-event tile) and templates: 10,000 keeps that join under
    #: ~30 MB however many accounts a pass has active (docs/benchmarks.md, Scale).
    feature_batch_points: int = Field(default=10_000, ge=2)

    @field_validator("models_dir", "allowlist", "ip_intel_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """``DETECTOR_MODELS_DIR=`` (empty) means none: rules only, no allow-list, no IP intelligence."""
        return None if value == "" else value

    @field_validator("ip_intel_dir", mode="after")
    @classmethod
    def _default_intel(cls, value: Path | None) -> Path | None:
        return defaults.resolve_ip_intel(value)

    windows: WindowSettings = WindowSettings()
    link: LinkSettings = LinkSettings()
    evidence: EvidenceSettings = EvidenceSettings()
    event_time: EventTimeSettings = EventTimeSettings()
    rule_guard: RuleGuardSettings = RuleGuardSettings()
    state_caps: StateCaps = StateCaps()
