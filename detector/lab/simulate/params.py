"""Every knob of the traffic simulator, with defaults scaled from the public disclosures to a laptop.

Rates are per account per day; ``scale`` (an argument of ``simulate``) multiplies account counts and
cluster sizes, never rates. Offsets and launch time are fractions of the simulated run, so a short
run keeps the same shape as a long one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PersonaParams(_Frozen):
    """An honest persona: how many accounts and how much traffic each sends."""

    accounts: int = Field(ge=0)
    requests_per_day: float = Field(gt=0)
    #: Lognormal sigma of the per-account rate around ``requests_per_day``.
    rate_sigma: float = Field(default=0.6, ge=0)
    #: Share of this persona's traffic on the newly launched model once adoption is complete.
    new_model_adoption: float = Field(default=0.1, ge=0, le=1)
    #: Hours after launch for adoption to complete.
    adoption_hours: float = Field(default=48.0, gt=0)
    #: Share of requests answered 429.
    throttle_rate: float = Field(default=0.01, ge=0, le=1)


class EvalHarnessParams(PersonaParams):
    """Benchmark runs: bursts of step-by-step math at temperature 0."""

    burst_size: int = Field(default=150, ge=1)
    #: Extra bursts per account on the new model's launch day, all on the new model.
    launch_day_bursts: int = Field(default=2, ge=0)


class ProductUsersParams(PersonaParams):
    """The independent users of one popular product (its client build and system prompt on every account)."""

    #: At most this share of them opened their accounts in the product's adoption waves (its launch, a
    #: viral week), drawn per run (``lab/simulate/signups.py``); 0: every one on their own, over years.
    adoption_wave_share: float = Field(default=0.0, ge=0, le=1)
    #: Up to this many of them (at least 3, drawn per run) are one startup's engineers: personal accounts
    #: (each its own org) paid with the company card (``signups.card_team``); 0: none.
    card_team_max: int = Field(default=0, ge=0)
    #: At most this share of them (drawn per run) sit in one regional hub, a time zone whose working
    #: hours are the first hours of the UTC day, some having come in its regional launch
    #: (``signups.regional_hub``); 0: spread by language as before.
    regional_hub_max_share: float = Field(default=0.0, ge=0, le=1)


class SharedAccountsParams(PersonaParams):
    """Personas whose accounts share one thing on purpose (NAT IP, company card, reseller)."""

    #: Share of accounts created in one sign-up burst (a class session, an admin provisioning a team).
    signup_burst_share: float = Field(default=0.4, ge=0, le=1)
    signup_burst_minutes: float = Field(default=60.0, gt=0)


#: What a campaign's prompts say to elicit reasoning (issue 17's content-marker knob, ``asks.py``):
#: stock English phrases; English paraphrases with no stock phrase; the ask in another language; the ask
#: only in the campaign's private system prompt; no ask anywhere (reasoning only through parameters).
ContentMode = Literal["explicit", "paraphrased", "multilingual", "system_prompt_only", "none"]
CONTENT_MODES: tuple[ContentMode, ...] = (
    "explicit",
    "paraphrased",
    "multilingual",
    "system_prompt_only",
    "none",
)


class FamilyParams(_Frozen):
    """One campaign family: how each of its campaigns is sized, provisioned and paced."""

    campaigns: int = Field(default=1, ge=0)
    #: Accounts active at once (churned accounts are replaced, so more appear over the run).
    cluster_size: int = Field(ge=1)
    requests_per_account_day: float = Field(gt=0)
    #: Share of ordinary-looking requests mixed into the extraction traffic.
    blend_ratio: float = Field(default=0.1, ge=0, le=1)
    #: Payment fingerprints shared by the cluster; ``None``: a unique card per account.
    cards_per_cluster: int | None = Field(default=4, ge=1)
    #: Shared proxy/datacenter IPs; 0: each account uses its own residential IPs.
    ip_pool_size: int = Field(default=60, ge=0)
    #: Initial accounts are created in bursts this many minutes wide.
    signup_spread_minutes: float = Field(default=30.0, gt=0)
    #: Number of sign-up bursts the initial accounts are created in.
    signup_bursts: int = Field(default=3, ge=1)
    #: Campaign starts, as fractions of the run, cycled over the family's campaigns.
    start_offsets: list[float] = Field(default_factory=lambda: [0.1])
    #: Share of members banned during the run and replaced by freshly created accounts.
    churn_fraction: float = Field(default=0.15, ge=0, le=1)
    #: Initial members' accounts were created this many days before their sign-up burst would put them
    #: (aged accounts, bought or parked); 0: fresh. Churn replacements are always fresh.
    account_age_days: float = Field(default=0.0, ge=0)
    #: Bought aged seats (issue 17, round 21): each initial member's age drawn on its own, uniform in
    #: this range of days before the campaign starts (seats bought one by one, opened months apart),
    #: instead of the sign-up bursts shifted by ``account_age_days``; ``None``: the bursts.
    bought_age_days: tuple[float, float] | None = None
    #: The seed of the bought seats' ages (their own stream: the run's other draws stay as they were).
    bought_seed: int = Field(default=0, ge=0)
    #: Waves of synchronised requests every this many seconds (0: independent Poisson per account).
    wave_interval_s: float = Field(default=0.0, ge=0)
    #: Share of this family's traffic moved to the new model ``pivot_ramp_hours`` after launch.
    pivot_share: float = Field(default=0.0, ge=0, le=1)
    pivot_ramp_hours: float = Field(default=18.0, gt=0)
    #: The reasoning ask (``ContentMode``); ``None``: the family's own content mix (the default run).
    content: ContentMode | None = None
    #: Requests exit through the world's rotating residential proxy network, whose exit addresses honest
    #: users send from too (``World.proxy_exits``); overrides ``ip_pool_size``.
    rotating_proxy: bool = False
    #: The accounts are sub-accounts of the world's legitimate router (``World.router``), which also serves
    #: honest customers: the gateway sees the router's org, card, egress addresses and client build.
    via_router: bool = False
    #: Best-of-k split across seats (issue 17, round 12): each reasoning problem (``agentic_pivot``, round
    #: 13: each session's opening task) is sent once from each of this many of the cluster's accounts (a
    #: round's seats shuffled into groups of k), so every seat sends each text once and no text is held
    #: by the whole cluster; 0: each problem sent once.
    split_seats: int = Field(default=0, ge=0)
    #: Mean requests a session for a family that works in sessions (``agentic_pivot``): a farm chooses
    #: its loop's length (a 3-turn harvest of short tasks or a 30-turn agent run); geometric per session.
    session_turns: float = Field(default=30.0, ge=1.0)
    #: Share of members verified (issue 17, round 12: bought aged, verified accounts); ``None``: the
    #: family's own share. Under ``via_router`` the router's verification wins.
    verified_share: float | None = Field(default=None, ge=0, le=1)


def _default_start() -> datetime:
    return datetime(2026, 3, 2, tzinfo=UTC)


class SimParams(_Frozen):
    """All simulator settings. ``SimParams()`` is the default run."""

    start: AwareDatetime = Field(default_factory=_default_start)
    models: list[str] = Field(
        default_factory=lambda: [
            "frontier-small-2025-10",
            "frontier-medium-2025-11",
            "frontier-large-2026-01",
        ]
    )
    new_model_id: str = "frontier-large-2026-03"
    #: When the new model launches, as a fraction of the run.
    launch_fraction: float = Field(default=0.5, ge=0, le=1)
    #: Share of accounts whose gateway ships only ``prompt.simhash``, no text.
    text_free_fraction: float = Field(default=0.10, ge=0, le=1)
    #: Share of accounts (and proxy-pool addresses) on IPv6.
    ipv6_fraction: float = Field(default=0.05, ge=0, le=1)
    server_error_rate: float = Field(default=0.003, ge=0, le=1)

    casual: PersonaParams = PersonaParams(accounts=1200, requests_per_day=12.0, new_model_adoption=0.15)
    app_backend: PersonaParams = PersonaParams(
        accounts=25, requests_per_day=500.0, rate_sigma=0.5, new_model_adoption=0.0, throttle_rate=0.02
    )
    eval_harness: EvalHarnessParams = EvalHarnessParams(
        accounts=10, requests_per_day=240.0, rate_sigma=0.3, new_model_adoption=0.0
    )
    bulk_synthetic: PersonaParams = PersonaParams(
        accounts=8, requests_per_day=900.0, rate_sigma=0.4, new_model_adoption=0.05, throttle_rate=0.03
    )
    university_nat: SharedAccountsParams = SharedAccountsParams(accounts=150, requests_per_day=10.0)
    company_card: SharedAccountsParams = SharedAccountsParams(
        accounts=40, requests_per_day=25.0, signup_burst_minutes=20.0
    )
    legit_reseller: SharedAccountsParams = SharedAccountsParams(
        accounts=120, requests_per_day=15.0, signup_burst_share=0.0
    )
    agentic_coder: ProductUsersParams = ProductUsersParams(
        accounts=80, requests_per_day=120.0, rate_sigma=0.7, new_model_adoption=0.3, adoption_hours=36.0
    )

    #: Look-alikes of issue 17, off by default (the evasion matrix switches them on).
    hackathon_cohort: PersonaParams = PersonaParams(accounts=0, requests_per_day=40.0, new_model_adoption=0.0)
    eval_startup: PersonaParams = PersonaParams(accounts=0, requests_per_day=150.0, new_model_adoption=0.0)
    #: One tutoring platform's backend accounts (production and a QA account), one verified tenant.
    tutoring_backend: PersonaParams = PersonaParams(
        accounts=0, requests_per_day=9000.0, rate_sigma=0.0, new_model_adoption=0.0, throttle_rate=0.005
    )
    #: A translation company's pipeline accounts (one per project team), one card, one office.
    translation_company: PersonaParams = PersonaParams(
        accounts=0, requests_per_day=700.0, rate_sigma=0.5, new_model_adoption=0.0
    )
    #: A company team whose internal tool sets one system prompt and template (10-60 accounts).
    internal_tool_team: SharedAccountsParams = SharedAccountsParams(
        accounts=0, requests_per_day=35.0, signup_burst_share=0.6, signup_burst_minutes=90.0
    )
    #: A team on its internal tool through its members' personal accounts (aged, own org and card).
    personal_tool_team: SharedAccountsParams = SharedAccountsParams(accounts=0, requests_per_day=35.0)
    #: Honest customers of the world's legitimate router (sub-accounts under the router's tenant).
    router_customers: PersonaParams = PersonaParams(
        accounts=0, requests_per_day=18.0, rate_sigma=1.0, new_model_adoption=0.25
    )
    #: Honest users whose traffic leaves through the residential proxy network's exits (a bandwidth-sharing
    #: app on their device, or a residential VPN subscription).
    residential_vpn: PersonaParams = PersonaParams(accounts=0, requests_per_day=12.0)
    #: A startup's engineers on their in-house client build, opened in one afternoon (3-12 accounts).
    startup_build_team: PersonaParams = PersonaParams(
        accounts=0, requests_per_day=40.0, rate_sigma=0.8, new_model_adoption=0.1
    )
    #: A remote course's participants: sign-ups in its first hour, each at home or on its hosted notebook.
    remote_workshop: PersonaParams = PersonaParams(
        accounts=0, requests_per_day=30.0, rate_sigma=0.8, new_model_adoption=0.0
    )
    #: Exit addresses of the rotating residential proxy network (created only when something uses it).
    proxy_exits: int = Field(default=400, ge=1)

    cot_hydra: FamilyParams = FamilyParams(
        campaigns=2,
        cluster_size=250,
        requests_per_account_day=26.0,
        blend_ratio=0.15,
        cards_per_cluster=6,
        ip_pool_size=80,
        signup_spread_minutes=40.0,
        signup_bursts=4,
        start_offsets=[0.05, 0.4],
        churn_fraction=0.2,
        wave_interval_s=300.0,
        pivot_share=0.2,
        pivot_ramp_hours=24.0,
    )
    agentic_pivot: FamilyParams = FamilyParams(
        cluster_size=200,
        requests_per_account_day=60.0,
        blend_ratio=0.05,
        cards_per_cluster=5,
        ip_pool_size=40,
        signup_spread_minutes=60.0,
        start_offsets=[0.1],
        pivot_share=0.5,
        pivot_ramp_hours=18.0,
    )
    multilingual_coercion: FamilyParams = FamilyParams(
        cluster_size=150,
        requests_per_account_day=30.0,
        blend_ratio=0.1,
        cards_per_cluster=8,
        ip_pool_size=60,
        signup_spread_minutes=90.0,
        start_offsets=[0.25],
    )
    low_and_slow: FamilyParams = FamilyParams(
        cluster_size=60,
        requests_per_account_day=8.0,
        blend_ratio=0.6,
        cards_per_cluster=None,
        ip_pool_size=0,
        signup_spread_minutes=25.0,
        signup_bursts=1,
        start_offsets=[0.15],
        churn_fraction=0.05,
    )
    logprob_harvest: FamilyParams = FamilyParams(
        cluster_size=40,
        requests_per_account_day=50.0,
        blend_ratio=0.05,
        cards_per_cluster=2,
        ip_pool_size=12,
        signup_spread_minutes=15.0,
        signup_bursts=2,
        start_offsets=[0.35],
        wave_interval_s=60.0,
    )


#: Family -> the alert contract's ``campaign_type``.
CAMPAIGN_TYPES: dict[str, str] = {
    "cot_hydra": "chain_of_thought",
    "agentic_pivot": "agentic_coding",
    "multilingual_coercion": "reasoning_trace",
    "low_and_slow": "chain_of_thought",
    "logprob_harvest": "logprob_harvest",
}

PERSONAS: tuple[str, ...] = (
    "casual",
    "app_backend",
    "eval_harness",
    "bulk_synthetic",
    "university_nat",
    "company_card",
    "legit_reseller",
    "agentic_coder",
)
FAMILIES: tuple[str, ...] = tuple(CAMPAIGN_TYPES)
#: Honest look-alikes of issue 17 and their realistic sizes in accounts (after scaling): off in the default
#: run (``accounts=0``), on in the evasion matrix and with ``detector simulate --lookalikes``.
LOOKALIKE_SIZES: dict[str, int] = {
    "hackathon_cohort": 40,
    "eval_startup": 6,
    "tutoring_backend": 2,
    "translation_company": 6,
    "internal_tool_team": 30,
    "router_customers": 150,
    "residential_vpn": 40,
    "startup_build_team": 8,
    "remote_workshop": 30,
    "personal_tool_team": 24,
}
LOOKALIKE_PERSONAS: tuple[str, ...] = tuple(LOOKALIKE_SIZES)
#: With the look-alikes on, up to this share of the coding tool's users came in its adoption waves (a
#: launch brings many developers in a day or two; off in the default run, whose seed tables stay).
CODER_WAVE_SHARE = 0.3
#: ... and up to this many of them are one startup's engineers on the company card (a card across orgs).
CODER_CARD_TEAM_MAX = 8
#: ... and up to this share of them sit in one regional hub (Tokyo, Bengaluru, Sydney: their working day
#: is the UTC night), some of whom opened their accounts in its regional launch (issue 17, round 11).
CODER_HUB_MAX_SHARE = 0.5


def with_lookalikes(params: SimParams, scale: float, sizes: dict[str, int] | None = None) -> SimParams:
    """``params`` with every look-alike switched on at its size (``LOOKALIKE_SIZES`` overridden by
    ``sizes``) whatever ``scale``: a hackathon is 40 people however many casual users are simulated."""
    want = LOOKALIKE_SIZES | (sizes or {})
    update: dict[str, Any] = {
        name: getattr(params, name).model_copy(update={"accounts": max(1, round(n / scale))})
        for name, n in want.items()
    }
    waves = {
        "adoption_wave_share": CODER_WAVE_SHARE,
        "card_team_max": CODER_CARD_TEAM_MAX,
        "regional_hub_max_share": CODER_HUB_MAX_SHARE,
    }
    update["agentic_coder"] = params.agentic_coder.model_copy(update=waves)
    return params.model_copy(update=update)
