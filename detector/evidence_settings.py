"""Evidence settings: what counts as one piece of evidence on each axis (``detect/evidence.py``).

Part of ``EngineSettings`` (``evidence``; env ``DETECTOR_EVIDENCE__*``), kept in its own module because
every round of issue 17 adds a bar with its reason, and each bar's comment is its record.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


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
    #: new seats is no established customer of the router. The one bar of "a router tenant's established
    #: customer explains the group": the farm rules' provenance gate (``provenance.no_customer_explains``,
    #: the column the rules and a lone model vote read) spares a group ``tenant_explains`` explains only
    #: below it, so the account axis keeps its verdict on new seats too.
    team_new_seat_share: float = Field(default=0.8, gt=0, le=1)
    #: The farm rules' freshness gate (``provenance.farm_accounts``, the ``farm_accounts`` column the
    #: rules and a lone model vote read): a group's accounts could be a farm's when at least this share
    #: of them were opened within the month (nearly all new: a farm's are provisioned days before use) ...
    #: Equal to ``team_new_seat_share`` today but a different question (any group's freshness, not
    #: whether a tenant's group is an established customer), so each keeps its own bar.
    farm_new_member_share: float = Field(default=0.8, gt=0, le=1)
    #: ... or fewer than this share of them are verified (mostly unverified; a router's sub-accounts
    #: count as unverified), or they were provisioned in bulk (``bulk_provisioned``). Equal to
    #: ``trusted_member_share`` today but the farm's bar, not the trust a customer earns.
    farm_verified_member_share: float = Field(default=0.5, gt=0, le=1)
    #: ... or, with this on, they send in scheduler waves outside a router tenant
    #: (``provenance.dispatched``): accounts one dispatcher drives are a farm's however old and verified
    #: (issue 17, round 22: bought aged seats; docs/detection.md, "Round 22"). Off by default: a product
    #: that dispatches its users' jobs on their own keys from one scheduler is its honest look-alike, not
    #: yet in the lab, and "established users of one product in waves" is spared today on purpose.
    farm_waves: bool = False
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
    #: session runs as long as the farm likes) and the sessions each agent opened (its exercises: one
    #: session each, however many turns) stay within ``sheet_max_requests_per_account``: what a farm
    #: opening a course's few tasks would harvest. Round 13 counted the sheet's volume in sessions, not
    #: turns: a bar on turns multiplied the loop (already bounded here) into the exercise count, and a
    #: course of 14 exercises a participant in loops of 4.5 turns (64 turns) read as a harvest.
    opener_max_turns: float = Field(default=8.0, gt=1)
    #: ... and a cluster's openers are read only from this many sampled openers an agent on (round 12,
    #: as ``sheet_read_min_requests``): below it each agent opened a session or two, and one sampled
    #: opener a bucket cannot tell a course's first hour (its members at different tasks of the sheet)
    #: from a bank's (draw 620's course: 44% shared when first scored, 66% an hour later). Only while
    #: some opener is shared already and its loops are short and its volume a sheet's: a bank's own
    #: tasks, a long loop or a harvest's volume count at once.
    #: The cost: an agentic farm of short loops reaches high later (medium meanwhile).
    opener_read_min_openers: float = Field(default=2.0, ge=0)
    #: A cluster that only the coordination axis accuses (no extraction signal) is a low lead when at
    #: least this share of its members' sampled requests (reasoning or plain, tool-heavy turns aside)
    #: are texts a share of its members hold (``window/sheets.py``: the sheet bar): a course's
    #: participants send a sheet's few texts, a farm sweeps a bank whose texts nearly nobody else sends
    #: (issue 17, round 12: dev draws' courses 0.6-0.9, coordination-only farms 0.0). Most, as for a
    #: reasoning sheet (``sheet_share``): a participant's own experiments after the session are a minority.
    yield_shared_share: float = Field(default=0.5, gt=0, le=1)
    #: ... or that share of one clock hour's, in an hour when at least this share of its members sent
    #: (``window.sheets._session_peak``, round 24): a live course's session, the class at the sheet
    #: together. Its participants' own experiments after the session (2-12 exercises each, then their
    #: own traffic for hours) dilute the day's pool under the bar by the evening (dev draw 930: 0.92 at
    #: the session, 0.496 at 19:00, accused); the session's hour keeps what the class did. A farm must
    #: run such an hour (half its sending seats together, most of that hour's sampled requests shared
    #: texts) and keep shared texts ``yield_session_day_share`` of its day to pass: the cover's price.
    yield_session_member_share: float = Field(default=0.5, gt=0, le=1)
    #: ... and only while the shared texts are still at least this share of the day's sampled requests:
    #: a session's hour of a token sheet (a request a seat) is no cover. The course's extreme as drawn
    #: (2 exercises each, then 30 requests a day for 16 hours) is ~0.09 of its day; half of that.
    yield_session_day_share: float = Field(default=0.05, ge=0, le=1)
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
    #: least this share of its members are verified, at least this share are not new (at most 0.2 new:
    #: a bar of its own, not the farm gate's ``farm_new_member_share`` mirrored), and it has at least
    #: this many orgs and payers per member. Its sign-up cohorts and batches of a minority are then its
    #: tool's adoption (a launch brings many in one half hour by chance), not bulk provisioning, unless
    #: its traffic carries extraction beyond a tool's own use. The campaigns' accounts are verified at 0.3-0.8
    #: (``lab/simulate/campaigns.py``) and a router's sub-accounts count as unverified (issue 17, round 11).
    public_tool_member_share: float = Field(default=0.8, gt=0.5, le=1)
    #: ... but a batch holding at least this share of them (most: as ``signup_cohort_member_share`` and
    #: ``cross_org_card_member_share``) opened in one half hour is bought in bulk whoever they are. A
    #: launch brings its users in numbers that grow with the tool (a regional launch event gave 13 of a
    #: night cluster of 76 in one half hour in the simulator, issue 17 round 11), never most of them.
    adoption_batch_share: float = Field(default=0.5, gt=0, le=1)
